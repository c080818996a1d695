"""The network on ONNX Runtime: `network.py`'s interface over the graphs of
`onnx_graphs.py`, so greedy and beam search (`search.py`, `beam.py`) run on either."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..config import ModelConfig
from .network import ShortlistedOutput, log_softmax
from .release import dequantized


def usable_cores() -> int:
    """The cores this process may run on (its affinity), where the system says."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # (macOS, Windows: no affinity call; ONNX Runtime decides)
        return 0


class OnnxNetwork:
    """`encode` a batch of sources; `decode_step` one piece for every row."""

    def __init__(
        self,
        graphs: dict[str, bytes],
        weights: dict[str, dict[str, np.ndarray]] | None,
        config: ModelConfig,
        target_vocab_size: int,
        where: str = "",
    ):
        """`weights`: by graph, the weights.npz arrays it names as external initializers
        (None for graphs that hold their own, as releases before `shared_weights` did)."""
        try:
            import onnxruntime
        except ImportError:
            raise ValueError(
                f"{where or 'this release'} runs on ONNX Runtime, which is not installed: "
                f"pip install onnxruntime (or the checkout's extra: pip install -e '.[onnx]')"
            ) from None

        self.arrays: list[np.ndarray] = []  # (ONNX Runtime reads them in place: kept alive)

        def session(graph: str):
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3  # (warnings about unused initializers: not ours)
            # ONNX Runtime sizes and pins its threads to every core the machine has, past
            # a `taskset` or a container's CPU set: as many as this process may use.
            options.intra_op_num_threads = usable_cores()
            if weights is not None:
                arrays = [np.ascontiguousarray(a) for a in weights[graph].values()]
                self.arrays += arrays
                values = [onnxruntime.OrtValue.ortvalue_from_numpy(a) for a in arrays]
                options.add_external_initializers(list(weights[graph]), values)
            try:
                return onnxruntime.InferenceSession(
                    graphs[graph], options, providers=["CPUExecutionProvider"]
                )
            except Exception as error:  # (ONNX Runtime's own error types, by build)
                raise ValueError(f"{where}: an ONNX graph cannot be loaded ({error}); "
                                 f"release again") from None  # fmt: skip

        self.encoder, self.step = session("encoder"), session("step")
        self.top = session("top") if "top" in graphs else None  # (a shortlist's step)
        self.weights = weights
        self.output_arrays: dict[str, np.ndarray] = {}  # (a shortlist's, made when asked)
        self.shortlisted = ShortlistedOutput()
        self.layers, self.target_vocab_size = config.num_layers, target_vocab_size
        self.attention = None if config.attention == "none" else config.attention
        self.step_inputs = {i.name for i in self.step.get_inputs()}
        self.top_inputs = {i.name for i in self.top.get_inputs()} if self.top else set()
        self.outputs = {s: [o.name for o in s.get_outputs()] for s in (self.step, self.top) if s}
        self.encoder_outputs = [o.name for o in self.encoder.get_outputs()]

    def encode(self, source: np.ndarray) -> dict[str, Any]:
        """As `Network.encode`; "keys" are transposed (batch, H, length), "context" is the
        first layer's share of the fed context."""
        found = dict(
            zip(self.encoder_outputs, self.encoder.run(None, {"source": source}), strict=True)
        )
        encoded = {k: v for k, v in found.items() if k[0] not in "hc" or not k[1:].isdigit()}
        encoded["states"] = [[found[f"h{n}"], found[f"c{n}"]] for n in range(self.layers)]
        return encoded

    def constants(self, encoded: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in encoded.items() if k in self.step_inputs}

    def _output_arrays(self) -> dict[str, np.ndarray]:
        """A shortlist's logits are the top graph's output against the output layer's
        arrays, taken in NumPy: those arrays in float32."""
        if self.weights is None or self.top is None:
            raise ValueError("this ONNX release predates shortlists; release it again")
        if not self.output_arrays:
            step = self.weights["step"]
            tied = "projection/kernel" not in step
            names = ("output_bridge/", "embedding/") if tied else ("projection/",)
            self.output_arrays = dequantized({k: v for k, v in step.items() if k.startswith(names)})
        return self.output_arrays

    def decode_step(
        self, token: np.ndarray, states: list, constants: dict, candidates=None
    ) -> tuple:
        """token (rows,) -> log-probabilities (rows, vocab) and the next states; with
        `candidates` (a shortlist), over those pieces alone."""
        feeds = {"token": np.asarray(token, np.int64), **constants}
        for layer, (h, c) in enumerate(states):
            feeds[f"h{layer}"], feeds[f"c{layer}"] = h, c
        session: Any = self.step if candidates is None else self.top
        if candidates is not None:
            output_arrays = self._output_arrays()
            feeds = {k: v for k, v in feeds.items() if k in self.top_inputs}
        found = dict(zip(self.outputs[session], session.run(None, feeds), strict=True))
        next_states = [[found[f"next_h{n}"], found[f"next_c{n}"]] for n in range(self.layers)]
        if candidates is not None:
            logits = self.shortlisted.logits(output_arrays, found["top"], candidates)
            return log_softmax(logits), next_states
        return found["log_probs"], next_states
