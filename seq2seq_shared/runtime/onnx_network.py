"""The network on ONNX Runtime: `network.py`'s interface over the graphs of
`onnx_graphs.py`, so greedy and beam search (`search.py`, `beam.py`) run on either."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import ModelConfig


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
        self.layers, self.target_vocab_size = config.num_layers, target_vocab_size
        self.attention = None if config.attention == "none" else config.attention
        self.step_inputs = {i.name for i in self.step.get_inputs()}
        self.step_outputs = [o.name for o in self.step.get_outputs()]
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

    def decode_step(self, token: np.ndarray, states: list, constants: dict) -> tuple:
        """token (rows,) -> log-probabilities (rows, vocab) and the next states."""
        feeds = {"token": np.asarray(token, np.int64), **constants}
        for layer, (h, c) in enumerate(states):
            feeds[f"h{layer}"], feeds[f"c{layer}"] = h, c
        found = dict(zip(self.step_outputs, self.step.run(None, feeds), strict=True))
        next_states = [[found[f"next_h{n}"], found[f"next_c{n}"]] for n in range(self.layers)]
        return found["log_probs"], next_states
