"""The network as two ONNX graphs, for ONNX Runtime: an encoder and one decoder step.

Built with the `onnx` package alone, no TensorFlow: the same computations as
`network.py`, op for op. Neither graph holds a weight: both name the arrays of the
release's `weights.npz` (the very file a NumPy release stores, `release.py`) as external
initializers, which `onnx_network.py` hands to ONNX Runtime from memory. So the shared
LSTM and the embedding table are stored once, not once per graph, and what each graph
needs in another layout (ONNX's LSTM wants its gates as i, o, f, c and its matrices
transposed; the tied output wants the table transposed) is spelled as ops over those
arrays, which ONNX Runtime's constant folding computes once, when the graph is loaded.

A third graph, "top", is the step without its output layer, for a vocabulary shortlist
(`shortlist.py`): the shortlisted logits are taken from its top output in NumPy.

The encoder is ONNX's LSTM (`sequence_lens` keeps each row's final state at its last
real piece) and `ReverseSequence` for `reverse_source`; the step spells the cell out,
since the fed context joins the first layer's gates. In an int8 release every weight
matrix is int8 with a float32 scale per output channel, and every product with one is
an int8 product (`DynamicQuantizeMatMul`, and `DynamicQuantizeLSTM` for the encoder's
LSTM: the activations are quantized on the fly); the embedding rows are read as int8 and
scaled; biases, the attention's scores and the softmax stay float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import ModelConfig
from ..model_dir import RELEASE_SCALE as SCALE
from ..model_dir import RELEASE_WEIGHTS
from .network import NEVER, READ, WRITE, lstm_names, target_table_name

OPSET = 17
MICROSOFT = "com.microsoft"  # ONNX Runtime's own ops: the int8 products
ENCODER, STEP, TOP = "encoder", "step", "top"
FLOAT = 1  # onnx.TensorProto.FLOAT


class Graph:
    """A few helpers over `onnx.helper`: each op gets a fresh output name."""

    def __init__(self, stored: dict[str, np.ndarray]):
        import onnx

        self.onnx, self.stored, self.count = onnx, stored, 0
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []
        self.external: set[str] = set()

    def op(self, kind: str, *inputs: str, **attributes) -> str:
        return self.ops(kind, *inputs, outputs=1, **attributes)[0]

    def ops(self, kind: str, *inputs: str, outputs: int, **attributes) -> list[str]:
        self.count += 1
        names = [f"{kind.lower()}_{self.count}_{i}" for i in range(outputs)]
        node = self.onnx.helper.make_node(kind, list(inputs), names, name=names[0], **attributes)
        self.nodes.append(node)
        return names

    def const(self, name: str, value: np.ndarray) -> str:
        """A small array held in the graph itself."""
        self.count += 1
        name = f"{name}_{self.count}"
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(self, *values: int) -> str:
        return self.const("ints", np.array(values, np.int64))

    def weight(self, name: str) -> str:
        """The stored array `name`, by reference: an initializer whose data is external."""
        if name not in self.external:
            array, tensor = self.stored[name], self.onnx.TensorProto()
            tensor.name, tensor.dims[:] = name, array.shape
            tensor.data_type = self.onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
            tensor.data_location = self.onnx.TensorProto.EXTERNAL
            entry = tensor.external_data.add()
            entry.key, entry.value = "location", RELEASE_WEIGHTS
            self.initializers.append(tensor)
            self.external.add(name)
        return name

    def input(self, name: str, dtype: int, shape: list) -> str:
        self.inputs.append(self.onnx.helper.make_tensor_value_info(name, dtype, shape))
        return name

    def output(self, name: str, value: str, dtype: int = FLOAT) -> None:
        self.nodes.append(self.onnx.helper.make_node("Identity", [value], [name]))
        self.outputs.append(self.onnx.helper.make_tensor_value_info(name, dtype, None))

    def model(self, name: str) -> tuple[bytes, list[str]]:
        """The serialized model and the stored arrays it names."""
        helper = self.onnx.helper
        graph = helper.make_graph(self.nodes, name, self.inputs, self.outputs, self.initializers)
        opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(MICROSOFT, 1)]
        model = helper.make_model(graph, opset_imports=opsets)
        model.ir_version = 8
        return model.SerializeToString(), sorted(self.external)


class Weights:
    """The stored arrays as graph values: float32, or int8 products where they are int8."""

    def __init__(self, stored: dict[str, np.ndarray]):
        self.stored = stored

    def quantized(self, name: str) -> bool:
        return name + SCALE in self.stored

    def value(self, g: Graph, name: str) -> str:
        """Array `name` in float32 (an int8 one scaled back; folded when loaded)."""
        if not self.quantized(name):
            return g.weight(name)
        as_float = g.op("Cast", g.weight(name), to=FLOAT)
        return g.op("Mul", as_float, g.weight(name + SCALE))

    def rows(self, g: Graph, tensor: str, start: int, end: int) -> str:
        return g.op("Slice", tensor, g.ints(start), g.ints(end), g.ints(0))

    def matmul(self, g: Graph, x: str, name: str, start: int = 0, end: int = 0) -> str:
        """x @ array[start:end] (all rows by default)."""
        whole = (start, end) in ((0, 0), (0, self.stored[name].shape[0]))
        if not self.quantized(name):
            matrix = self.value(g, name)
            matrix = matrix if whole else self.rows(g, matrix, start, end)
            return g.op("MatMul", x, matrix)
        matrix = g.weight(name) if whole else self.rows(g, g.weight(name), start, end)
        scale = g.op("Reshape", g.weight(name + SCALE), g.ints(-1))  # one per column
        return g.op("DynamicQuantizeMatMul", x, matrix, scale, domain=MICROSOFT)

    def transposed_matmul(self, g: Graph, x: str, name: str) -> str:
        """x @ array.T: the tied output, over the embedding table (a scale per row)."""
        if not self.quantized(name):
            return g.op("MatMul", x, g.op("Transpose", g.weight(name)))
        scale = g.op("Reshape", g.weight(name + SCALE), g.ints(-1))
        matrix = g.op("Transpose", g.weight(name))
        return g.op("DynamicQuantizeMatMul", x, matrix, scale, domain=MICROSOFT)

    def gather(self, g: Graph, name: str, ids: str) -> str:
        """The rows `ids` of the embedding table `name`."""
        if not self.quantized(name):
            return g.op("Gather", g.weight(name), ids)
        rows = g.op("Cast", g.op("Gather", g.weight(name), ids), to=FLOAT)
        return g.op("Mul", rows, g.op("Gather", g.weight(name + SCALE), ids))

    def row(self, g: Graph, name: str, index: int) -> str:
        return g.op("Gather", self.value(g, name), g.const("index", np.array(index, np.int64)))


class Builder:
    """The network's stored arrays (`network.py`'s names) and settings, as two graphs."""

    def __init__(self, stored: dict[str, np.ndarray], config: ModelConfig):
        self.stored, self.config, self.w = stored, config, Weights(stored)
        self.hidden = int(stored[lstm_names(config, "encoder", 0)[1]].shape[0])
        self.table = target_table_name(stored)

    def embedded(self, g: Graph, table: str, ids: str, role: int) -> str:
        x = self.w.gather(g, table, ids)
        if self.config.role_signal == "embedding":
            x = g.op("Add", x, self.w.row(g, "roles/vectors", role))
        return x

    def bias(self, g: Graph, side: str, layer: int, role: int) -> str:
        """The gates' bias on `side` at `layer`, the role's gate bias added."""
        bias = self.w.value(g, lstm_names(self.config, side, layer)[2])
        if self.config.role_signal != "bias":
            return bias
        return g.op("Add", bias, self.w.row(g, f"roles/gate_bias/{layer}", role))

    def encoder(self) -> tuple[bytes, list[str]]:
        import onnx

        g, c = Graph(self.stored), self.config
        source = g.input("source", onnx.TensorProto.INT64, ["batch", "length"])
        mask = g.op("Not", g.op("Equal", source, g.const("pad", np.array(0, np.int64))))
        as_int = g.op("Cast", mask, to=onnx.TensorProto.INT64)
        lengths = g.op("ReduceSum", as_int, g.ints(1), keepdims=0)  # (batch,)
        ids = source
        if c.reverse_source:
            ids = g.op("ReverseSequence", source, lengths, batch_axis=0, time_axis=1)
        embedded = self.embedded(g, "embedding/source", ids, READ)
        memory = self._read(g, embedded, lengths, final=True)
        if c.reverse_source:
            memory = g.op("ReverseSequence", memory, lengths, batch_axis=0, time_axis=1)
        if c.bidirectional:  # the other way too, averaged (as Seq2Seq.encode)
            other_way = g.op("ReverseSequence", embedded, lengths, batch_axis=0, time_axis=1)
            other = self._read(g, other_way, lengths, final=False)
            if not c.reverse_source:
                other = g.op("ReverseSequence", other, lengths, batch_axis=0, time_axis=1)
            half = g.const("half", np.array(0.5, np.float32))
            memory = g.op("Mul", g.op("Add", memory, other), half)
        g.output("mask", mask, onnx.TensorProto.BOOL)
        if c.attention != "none":
            keys = memory
            if c.attention == "general":
                keys = self.w.matmul(g, memory, "attention/score")
            g.output("memory", memory)
            g.output("keys", g.op("Transpose", keys, perm=[0, 2, 1]))  # (batch, H, length)
        if c.feed_context:
            kernel = lstm_names(c, "decoder", 0)[0]
            rows = self.stored[kernel].shape[0]
            last = f"h_{c.num_layers - 1}"
            g.output("context", self.w.matmul(g, last, kernel, rows - self.hidden, rows))
        return g.model(ENCODER)

    def _read(self, g: Graph, embedded: str, lengths: str, final: bool) -> str:
        """The encoder's LSTMs over (batch, length, E): the top outputs (batch, length,
        H); with `final`, every layer's final h and c become the graph's outputs."""
        import onnx

        x = g.op("Transpose", embedded, perm=[1, 0, 2])  # (length, batch, E): ONNX's layout
        lengths32 = g.op("Cast", lengths, to=onnx.TensorProto.INT32)
        for layer in range(self.config.num_layers):
            x = self._encoder_layer(g, x, lengths32, layer, final)
        return g.op("Transpose", x, perm=[1, 0, 2])

    def _encoder_layer(self, g: Graph, x: str, lengths: str, layer: int, final: bool) -> str:
        kernel, recurrent, _ = lstm_names(self.config, "encoder", layer)
        width = int(self.stored["embedding/source"].shape[1]) if layer == 0 else self.hidden
        order = g.const("gate_order", _onnx_gate_order(self.hidden))
        bias = g.op("Gather", self.bias(g, "encoder", layer, READ), order)
        zeros = g.const("zeros", np.zeros(4 * self.hidden, np.float32))  # (no recurrent bias)
        bias = g.op("Unsqueeze", g.op("Concat", bias, zeros, axis=0), g.ints(0))
        if self.w.quantized(kernel):
            w, w_scale, w_zero = self._int8_gates(g, kernel, order, width)
            r, r_scale, r_zero = self._int8_gates(g, recurrent, order, self.hidden)
            inputs = [x, w, r, bias, lengths, "", "", "", w_scale, w_zero, r_scale, r_zero]
            kind, domain = "DynamicQuantizeLSTM", {"domain": MICROSOFT}
        else:
            w = self._float_gates(g, kernel, order, width)
            r = self._float_gates(g, recurrent, order, self.hidden)
            inputs, kind, domain = [x, w, r, bias, lengths], "LSTM", {}
        y, h, cell = g.ops(kind, *inputs, outputs=3, hidden_size=self.hidden, **domain)
        if final:
            g.nodes.append(g.onnx.helper.make_node("Squeeze", [h, g.ints(0)], [f"h_{layer}"]))
            g.output(f"h{layer}", f"h_{layer}")
            g.output(f"c{layer}", g.op("Squeeze", cell, g.ints(0)))
        return g.op("Squeeze", y, g.ints(1))  # (length, batch, H)

    def _float_gates(self, g: Graph, name: str, order: str, width: int) -> str:
        """(1, 4H, width) in ONNX's gate order: ONNX's LSTM's W or R."""
        rows = self.w.rows(g, g.weight(name), 0, width)
        columns = g.op("Gather", rows, order, axis=1)
        return g.op("Unsqueeze", g.op("Transpose", columns), g.ints(0))

    def _int8_gates(self, g: Graph, name: str, order: str, width: int) -> tuple:
        """(1, width, 4H) int8 in ONNX's gate order, its scales and zero points: the W or
        R of ONNX Runtime's DynamicQuantizeLSTM."""
        rows = self.w.rows(g, g.weight(name), 0, width)
        matrix = g.op("Unsqueeze", g.op("Gather", rows, order, axis=1), g.ints(0))
        scale = g.op("Gather", g.weight(name + SCALE), order, axis=1)  # (1, 4H)
        zero = g.const("zero_point", np.zeros((1, 4 * self.hidden), np.int8))
        return matrix, scale, zero

    def step(self, logits: bool = True) -> tuple[bytes, list[str]]:
        """One decoder step: the next states and the log-probabilities over the whole
        vocabulary; without `logits` ("top", for a shortlist), the top output instead."""
        import onnx

        g, c = Graph(self.stored), self.config
        token = g.input("token", onnx.TensorProto.INT64, ["rows"])
        x = self.embedded(g, self.table, token, WRITE)  # (rows, E)
        for layer in range(c.num_layers):
            h = g.input(f"h{layer}", FLOAT, ["rows", self.hidden])
            cell = g.input(f"c{layer}", FLOAT, ["rows", self.hidden])
            x, cell = self._step_layer(g, x, h, cell, layer)
            g.output(f"next_h{layer}", x)
            g.output(f"next_c{layer}", cell)
        if c.attention != "none":
            x = self._attend(g, x)
        if not logits:  # (a shortlist's logits are taken from it: network.py)
            g.output("top", x)
            return g.model(TOP)
        g.output("log_probs", g.op("LogSoftmax", self._logits(g, x), axis=-1))
        return g.model(STEP)

    def _step_layer(self, g: Graph, x: str, h: str, cell: str, layer: int) -> tuple[str, str]:
        kernel, recurrent, _ = lstm_names(self.config, "decoder", layer)
        width = int(self.stored[self.table].shape[1]) if layer == 0 else self.hidden
        z = g.op("Add", self.w.matmul(g, x, kernel, 0, width), self.w.matmul(g, h, recurrent))
        z = g.op("Add", z, self.bias(g, "decoder", layer, WRITE))
        if layer == 0 and self.config.feed_context:
            z = g.op("Add", z, g.input("context", FLOAT, ["rows", None]))
        i, f, u, o = g.ops("Split", z, g.ints(*[self.hidden] * 4), axis=-1, outputs=4)
        cell = g.op("Add", g.op("Mul", g.op("Sigmoid", f), cell),
                    g.op("Mul", g.op("Sigmoid", i), g.op("Tanh", u)))  # fmt: skip
        return g.op("Mul", g.op("Sigmoid", o), g.op("Tanh", cell)), cell

    def _attend(self, g: Graph, query: str) -> str:
        onnx = g.onnx
        keys = g.input("keys", FLOAT, ["rows", self.hidden, "length"])
        memory = g.input("memory", FLOAT, ["rows", "length", self.hidden])
        mask = g.input("mask", onnx.TensorProto.BOOL, ["rows", "length"])
        scores = g.op("MatMul", g.op("Unsqueeze", query, g.ints(1)), keys)  # (rows, 1, length)
        scores = g.op("Where", g.op("Unsqueeze", mask, g.ints(1)), scores,
                      g.const("never", np.array(NEVER, np.float32)))  # fmt: skip
        weights = g.op("Softmax", scores, axis=-1)
        context = g.op("Squeeze", g.op("MatMul", weights, memory), g.ints(1))  # (rows, H)
        both = g.op("Concat", context, query, axis=-1)
        return g.op("Tanh", self.w.matmul(g, both, "attention/combine"))

    def _logits(self, g: Graph, x: str) -> str:
        if "projection/kernel" in self.stored:
            logits = self.w.matmul(g, x, "projection/kernel")
            return g.op("Add", logits, self.w.value(g, "projection/bias"))
        if "output_bridge/kernel" in self.stored:
            x = self.w.matmul(g, x, "output_bridge/kernel")
        return self.w.transposed_matmul(g, x, self.table)


def _onnx_gate_order(hidden: int) -> np.ndarray:
    """Keras's gate columns (i, f, c, o) in ONNX's order (i, o, f, c)."""
    i, f, c, o = (np.arange(hidden) + k * hidden for k in range(4))
    return np.concatenate([i, o, f, c])


def onnx_graphs(
    stored: dict[str, np.ndarray], config: ModelConfig
) -> tuple[dict[str, bytes], dict[str, list[str]]]:
    """The serialized graphs over `stored`, a release's arrays as `release.quantized`
    stores them (float32, or int8 with scales), by graph ("encoder", "step"), and the
    stored arrays each graph names (ONNX Runtime must be given those, no others)."""
    builder = Builder(stored, config)
    built = {ENCODER: builder.encoder(), STEP: builder.step(), TOP: builder.step(logits=False)}
    return {k: v[0] for k, v in built.items()}, {k: v[1] for k, v in built.items()}
