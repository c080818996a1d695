"""The network as two ONNX graphs, for ONNX Runtime: an encoder and one decoder step.

Built from a release's float32 arrays (`release.py`) with the `onnx` package alone, no
TensorFlow: the same computations as `network.py`, op for op. The encoder is ONNX's LSTM
(its gates reordered from Keras's i, f, c, o to ONNX's i, o, f, c; `sequence_lens` keeps
each row's final state at its last real piece) and `ReverseSequence` for
`reverse_source`. The step spells the LSTM cell out, since the fed context joins the
first layer's gates. `int8` runs ONNX Runtime's dynamic quantization over both graphs:
every weight matrix int8 per output channel, each product an int8 product of the
activations quantized on the fly (`MatMul` becomes `DynamicQuantizeMatMul`, the encoder's
`LSTM` `DynamicQuantizeLSTM`, the embedding `Gather` reads int8 rows); the softmax, the
attention's scores and every bias stay float32.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from .network import NEVER, READ, WRITE, Network

OPSET = 17
ENCODER, STEP = "encoder", "step"


class Graph:
    """A few helpers over `onnx.helper`: each op gets a fresh output name."""

    def __init__(self):
        import onnx

        self.onnx, self.nodes, self.initializers, self.count = onnx, [], [], 0
        self.inputs, self.outputs = [], []

    def op(self, kind: str, *inputs: str, **attributes) -> str:
        return self.ops(kind, *inputs, outputs=1, **attributes)[0]

    def ops(self, kind: str, *inputs: str, outputs: int, **attributes) -> list[str]:
        self.count += 1
        names = [f"{kind.lower()}_{self.count}_{i}" for i in range(outputs)]
        node = self.onnx.helper.make_node(kind, list(inputs), names, name=names[0], **attributes)
        self.nodes.append(node)
        return names

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(self, *values: int) -> str:
        self.count += 1
        return self.const(f"ints_{self.count}", np.array(values, np.int64))

    def input(self, name: str, dtype: int, shape: list) -> str:
        self.inputs.append(self.onnx.helper.make_tensor_value_info(name, dtype, shape))
        return name

    def output(self, name: str, value: str, dtype: int = 1) -> None:  # (1: float32)
        self.nodes.append(self.onnx.helper.make_node("Identity", [value], [name]))
        self.outputs.append(self.onnx.helper.make_tensor_value_info(name, dtype, None))

    def model(self, name: str) -> bytes:
        helper = self.onnx.helper
        graph = helper.make_graph(self.nodes, name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        return model.SerializeToString()


class Builder:
    """The network's arrays (`network.py`'s names) and settings, as graph pieces."""

    def __init__(self, arrays: dict[str, np.ndarray], config: ModelConfig):
        self.a, self.config = arrays, config
        self.hidden = arrays["encoder/0/recurrent_kernel"].shape[0]
        # Which arrays each side and role reads: the NumPy network's rules, not a copy.
        network = Network(arrays, config)
        self._lstm, self._gate_bias = network._lstm, network._gate_bias
        self._table = network._target_table

    def embedded(self, g: Graph, table: str, ids: str, role: int) -> str:
        x = g.op("Gather", table, ids)
        if self.config.role_signal == "embedding":
            x = g.op("Add", x, g.const(f"roles/vector/{role}", self.a["roles/vectors"][role]))
        return x

    def encoder(self) -> bytes:
        import onnx

        g, c = Graph(), self.config
        source = g.input("source", onnx.TensorProto.INT64, ["batch", "length"])
        mask = g.op("Not", g.op("Equal", source, g.const("pad", np.array(0, np.int64))))
        as_int = g.op("Cast", mask, to=onnx.TensorProto.INT64)
        lengths = g.op("ReduceSum", as_int, g.ints(1), keepdims=0)  # (batch,)
        ids = source
        if c.reverse_source:
            ids = g.op("ReverseSequence", source, lengths, batch_axis=0, time_axis=1)
        x = self.embedded(g, g.const("embedding/source", self.a["embedding/source"]), ids, READ)
        x = g.op("Transpose", x, perm=[1, 0, 2])  # (length, batch, E): ONNX's LSTM layout
        lengths32 = g.op("Cast", lengths, to=onnx.TensorProto.INT32)
        for layer in range(c.num_layers):
            x = self._encoder_layer(g, x, lengths32, layer)
        memory = g.op("Transpose", x, perm=[1, 0, 2])  # (batch, length, H)
        if c.reverse_source:
            memory = g.op("ReverseSequence", memory, lengths, batch_axis=0, time_axis=1)
        g.output("mask", mask, onnx.TensorProto.BOOL)
        if c.attention != "none":
            keys = memory
            if c.attention == "general":
                keys = g.op("MatMul", memory, g.const("attention/score", self.a["attention/score"]))
            g.output("memory", memory)
            g.output("keys", g.op("Transpose", keys, perm=[0, 2, 1]))  # (batch, H, length)
        if c.feed_context:
            kernel = self._lstm("decoder", 0)[0]
            share = g.const("context/kernel", kernel[kernel.shape[0] - self.hidden :])
            g.output("context", g.op("MatMul", f"h_{c.num_layers - 1}", share))
        return g.model(ENCODER)

    def _encoder_layer(self, g: Graph, x: str, lengths: str, layer: int) -> str:
        kernel, recurrent, bias = self._lstm("encoder", layer)
        width = int(self.a["embedding/source"].shape[1]) if layer == 0 else self.hidden
        order = _onnx_gate_order(self.hidden)
        w = kernel[:width].T[order][None]  # (1, 4H, input)
        r = recurrent.T[order][None]
        b = np.concatenate([(bias + self._gate_bias(READ, layer))[order], np.zeros_like(bias)])
        y, h, cell = g.ops(
            "LSTM", x, g.const(f"lstm/{layer}/W", w), g.const(f"lstm/{layer}/R", r),
            g.const(f"lstm/{layer}/B", b[None].astype(np.float32)), lengths,
            outputs=3, hidden_size=self.hidden,
        )  # fmt: skip
        g.nodes.append(g.onnx.helper.make_node("Squeeze", [h, g.ints(0)], [f"h_{layer}"]))
        g.output(f"h{layer}", f"h_{layer}")
        g.output(f"c{layer}", g.op("Squeeze", cell, g.ints(0)))
        return g.op("Squeeze", y, g.ints(1))  # (length, batch, H)

    def step(self) -> bytes:
        import onnx

        g, c, float_ = Graph(), self.config, onnx.TensorProto.FLOAT
        token = g.input("token", onnx.TensorProto.INT64, ["rows"])
        table = g.const("embedding/target", self._table())
        x = self.embedded(g, table, token, WRITE)  # (rows, E)
        for layer in range(c.num_layers):
            h = g.input(f"h{layer}", float_, ["rows", self.hidden])
            cell = g.input(f"c{layer}", float_, ["rows", self.hidden])
            x, cell = self._step_layer(g, x, h, cell, layer)
            g.output(f"next_h{layer}", x)
            g.output(f"next_c{layer}", cell)
        if c.attention != "none":
            x = self._attend(g, x)
        g.output("log_probs", g.op("LogSoftmax", self._logits(g, x, table), axis=-1))
        return g.model(STEP)

    def _step_layer(self, g: Graph, x: str, h: str, cell: str, layer: int) -> tuple[str, str]:
        kernel, recurrent, bias = self._lstm("decoder", layer)
        width = int(self._table().shape[1]) if layer == 0 else self.hidden
        z = g.op("Add", g.op("MatMul", x, g.const(f"step/{layer}/kernel", kernel[:width])),
                 g.op("MatMul", h, g.const(f"step/{layer}/recurrent", recurrent)))  # fmt: skip
        z = g.op("Add", z, g.const(f"step/{layer}/bias", bias + self._gate_bias(WRITE, layer)))
        if layer == 0 and self.config.feed_context:
            z = g.op("Add", z, g.input("context", g.onnx.TensorProto.FLOAT, ["rows", None]))
        i, f, u, o = g.ops("Split", z, g.ints(*[self.hidden] * 4), axis=-1, outputs=4)
        cell = g.op("Add", g.op("Mul", g.op("Sigmoid", f), cell),
                    g.op("Mul", g.op("Sigmoid", i), g.op("Tanh", u)))  # fmt: skip
        return g.op("Mul", g.op("Sigmoid", o), g.op("Tanh", cell)), cell

    def _attend(self, g: Graph, query: str) -> str:
        onnx = g.onnx
        keys = g.input("keys", onnx.TensorProto.FLOAT, ["rows", self.hidden, "length"])
        memory = g.input("memory", onnx.TensorProto.FLOAT, ["rows", "length", self.hidden])
        mask = g.input("mask", onnx.TensorProto.BOOL, ["rows", "length"])
        scores = g.op("MatMul", g.op("Unsqueeze", query, g.ints(1)), keys)  # (rows, 1, length)
        scores = g.op("Where", g.op("Unsqueeze", mask, g.ints(1)), scores,
                      g.const("never", np.array(NEVER, np.float32)))  # fmt: skip
        weights = g.op("Softmax", scores, axis=-1)
        context = g.op("Squeeze", g.op("MatMul", weights, memory), g.ints(1))  # (rows, H)
        both = g.op("Concat", context, query, axis=-1)
        combine = g.const("attention/combine", self.a["attention/combine"])
        return g.op("Tanh", g.op("MatMul", both, combine))

    def _logits(self, g: Graph, x: str, table: str) -> str:
        if "projection/kernel" in self.a:
            logits = g.op("MatMul", x, g.const("projection/kernel", self.a["projection/kernel"]))
            return g.op("Add", logits, g.const("projection/bias", self.a["projection/bias"]))
        if "output_bridge/kernel" in self.a:
            x = g.op("MatMul", x, g.const("output_bridge", self.a["output_bridge/kernel"]))
        return g.op("MatMul", x, g.const("output/kernel", np.ascontiguousarray(self._table().T)))


def _onnx_gate_order(hidden: int) -> np.ndarray:
    """Keras's gate rows (i, f, c, o) in ONNX's order (i, o, f, c)."""
    i, f, c, o = (np.arange(hidden) + k * hidden for k in range(4))
    return np.concatenate([i, o, f, c])


def onnx_graphs(
    arrays: dict[str, np.ndarray], config: ModelConfig, precision: str
) -> dict[str, bytes]:
    """{"encoder": ..., "step": ...}: the serialized graphs at `precision` (float32, or
    int8 by dynamic quantization; float16 is stored as float32, see `release.py`)."""
    builder = Builder(arrays, config)
    graphs = {ENCODER: builder.encoder(), STEP: builder.step()}
    if precision == "int8":
        graphs = {name: _quantized(model) for name, model in graphs.items()}
    return graphs


def _quantized(model: bytes) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
        source.write_bytes(model)
        logging.disable(logging.WARNING)  # (its advice to pre-process is for image models)
        try:
            quantize_dynamic(source, target, per_channel=True, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        return target.read_bytes()
