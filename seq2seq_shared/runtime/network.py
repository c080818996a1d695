"""The network in NumPy: the model's maths over a release's arrays, no TensorFlow.

The same computations as `model/seq2seq.py` (and `lstm.py`, `attention.py`, `roles.py`):
embeddings (one shared table or two), the shared LSTM stack read over the source (its
final states at each sentence's last real piece; padded steps carry the state over),
`reverse_source`, the context fed to the first decoder layer, Luong attention, the role
signal, the output projection or the tied embedding table. Arrays are float32 in
computation whatever precision they were stored in (`release.py`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import ModelConfig
from ..data.tokenizer import PAD_ID

READ, WRITE = 0, 1  # the roles (model/roles.py)
NEVER = -1e9  # a score no softmax picks (model/attention.py)


def target_table_name(arrays: dict[str, Any]) -> str:
    """The array the decoder embeds (and, tied, projects) with: its own or the shared one."""
    return "embedding/target" if "embedding/target" in arrays else "embedding/source"


def lstm_names(config: ModelConfig, side: str, layer: int) -> tuple[str, str, str]:
    """The kernel, recurrent kernel and bias that `side` reads at `layer`: the encoder's
    for both sides when the LSTM is shared."""
    shared = config.share_lstm or side == "encoder"
    prefix = f"{'encoder' if shared else 'decoder'}/{layer}"
    return f"{prefix}/kernel", f"{prefix}/recurrent_kernel", f"{prefix}/bias"


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # (overflow-free)


class Network:
    """`encode` a batch of sources; `decode_step` one piece for every row."""

    def __init__(self, arrays: dict[str, np.ndarray], config: ModelConfig):
        self.a, self.config = arrays, config
        self.layers = config.num_layers
        self.attention = None if config.attention == "none" else config.attention
        self.target_vocab_size = int(self._target_table().shape[0])
        self.shortlisted = ShortlistedOutput()

    def _target_table(self) -> np.ndarray:
        return self.a[target_table_name(self.a)]

    def _lstm(self, side: str, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        kernel, recurrent, bias = lstm_names(self.config, side, layer)
        return self.a[kernel], self.a[recurrent], self.a[bias]

    def _gate_bias(self, role: int, layer: int) -> np.ndarray | float:
        if self.config.role_signal != "bias":
            return 0.0
        return self.a[f"roles/gate_bias/{layer}"][role]

    def _embedded(self, table: np.ndarray, ids: np.ndarray, role: int) -> np.ndarray:
        x = table[ids]
        if self.config.role_signal == "embedding":
            x = x + self.a["roles/vectors"][role]
        return x

    @staticmethod
    def _cell(z: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One LSTM step from the gates' pre-activations (Keras's order i, f, c, o)."""
        i, f, g, o = np.split(z, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c

    def encode(self, source: np.ndarray) -> dict[str, Any]:
        """source (batch, length) right-padded ids -> {"states": [[h, c]] per layer,
        "memory", "keys", "mask"}, as `Seq2Seq.encode`."""
        mask = source != PAD_ID  # (batch, length)
        lengths = mask.sum(axis=1)
        if self.config.reverse_source:
            source = _reversed(source, lengths)
        x = self._embedded(self.a["embedding/source"], source, READ)  # (batch, length, E)
        top, states = self._read(x, mask)
        encoded: dict[str, Any] = {"states": states, "mask": mask}
        if self.attention is not None:
            memory = _reversed(top, lengths) if self.config.reverse_source else top
            if self.config.bidirectional:  # the other way too, averaged (as Seq2Seq.encode)
                other, _ = self._read(_reversed(x, lengths), mask)
                other = other if self.config.reverse_source else _reversed(other, lengths)
                memory = (memory + other) * np.float32(0.5)
            keys = memory @ self.a["attention/score"] if self.attention == "general" else memory
            encoded.update(memory=memory, keys=keys)
        return encoded

    def _read(self, x: np.ndarray, mask: np.ndarray) -> tuple:
        """The encoder's LSTMs over embedded x: the top outputs, every layer's [h, c]."""
        states = []
        for layer in range(self.layers):
            kernel, recurrent, bias = self._lstm("encoder", layer)
            projected = x @ kernel[: x.shape[-1]] + bias + self._gate_bias(READ, layer)
            x, h, c = _recurrence(projected, recurrent, mask)
            states.append([h, c])
        return x, states

    def constants(self, encoded: dict[str, Any]) -> dict[str, Any]:
        """What every step reads, per sentence: the context's share of the first layer's
        input projection (feed_context), the memory (attention)."""
        constants: dict[str, Any] = {
            k: encoded[k] for k in ("memory", "keys", "mask") if k in encoded
        }
        if self.config.feed_context:
            kernel = self._lstm("decoder", 0)[0]
            context = encoded["states"][-1][0]  # (batch, H)
            constants["context"] = context @ kernel[kernel.shape[0] - context.shape[-1] :]
        return constants

    def decode_step(
        self, token: np.ndarray, states: list, constants: dict, candidates=None
    ) -> tuple:
        """token (rows,) -> log-probabilities (rows, vocab) and the next states; with
        `candidates` (sorted target ids: a shortlist), over those pieces alone."""
        x = self._embedded(self._target_table(), token, WRITE)  # (rows, E)
        next_states = []
        for layer in range(self.layers):
            kernel, recurrent, bias = self._lstm("decoder", layer)
            h, c = states[layer]
            z = x @ kernel[: x.shape[-1]] + bias + h @ recurrent + self._gate_bias(WRITE, layer)
            if layer == 0 and "context" in constants:
                z = z + constants["context"]
            x, c = self._cell(z, c)
            next_states.append([x, c])
        if self.attention is not None:
            x = self._attend(x, constants)
        if candidates is not None:
            return log_softmax(self.shortlisted.logits(self.a, x, candidates)), next_states
        return log_softmax(self._logits(x)), next_states

    def _attend(self, query: np.ndarray, constants: dict) -> np.ndarray:
        scores = np.einsum("rh,rsh->rs", query, constants["keys"])  # (rows, source_len)
        scores = np.where(constants["mask"], scores, NEVER)
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        weights /= weights.sum(axis=-1, keepdims=True)
        context = np.einsum("rs,rsh->rh", weights, constants["memory"])
        return np.tanh(np.concatenate([context, query], axis=-1) @ self.a["attention/combine"])

    def _logits(self, x: np.ndarray) -> np.ndarray:
        if "projection/kernel" in self.a:
            return x @ self.a["projection/kernel"] + self.a["projection/bias"]
        if "output_bridge/kernel" in self.a:
            x = x @ self.a["output_bridge/kernel"]
        return x @ self._target_table().T


def shortlist_arrays(arrays: dict, candidates: np.ndarray) -> dict[str, np.ndarray]:
    """The output layer's arrays cut to the `candidates` pieces (the table transposed)."""
    if "projection/kernel" in arrays:
        kernel, bias = arrays["projection/kernel"], arrays["projection/bias"]
        return {"kernel": np.ascontiguousarray(kernel[:, candidates]), "bias": bias[candidates]}
    cut = {"kernel": np.ascontiguousarray(arrays[target_table_name(arrays)][candidates].T)}
    if "output_bridge/kernel" in arrays:
        cut["bridge"] = arrays["output_bridge/kernel"]
    return cut


class ShortlistedOutput:
    """The output layer over a shortlist's pieces alone, its arrays cut once per batch
    (the searches pass the same candidates array at every step of a batch)."""

    def __init__(self):
        self.candidates: np.ndarray | None = None
        self.cut: dict[str, np.ndarray] = {}

    def logits(self, arrays: dict, x: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """The logits of the `candidates` pieces, from the decoder's top output `x`."""
        if self.candidates is not candidates:
            self.candidates, self.cut = candidates, shortlist_arrays(arrays, candidates)
        if "bridge" in self.cut:
            x = x @ self.cut["bridge"]
        logits = x @ self.cut["kernel"]
        return logits + self.cut["bias"] if "bias" in self.cut else logits


def _recurrence(projected: np.ndarray, recurrent: np.ndarray, mask: np.ndarray) -> tuple:
    """The LSTM over (batch, length, 4H) projected inputs: outputs (batch, length, H) and
    the final h, c (a padded step carries the state over)."""
    batch, length, width = projected.shape
    h = np.zeros((batch, width // 4), np.float32)
    c = np.zeros_like(h)
    outputs = np.zeros((batch, length, width // 4), np.float32)
    for t in range(length):
        h_new, c_new = Network._cell(projected[:, t] + h @ recurrent, c)
        real = mask[:, t : t + 1]
        h, c = np.where(real, h_new, h), np.where(real, c_new, c)
        outputs[:, t] = h
    return outputs, h, c


def _reversed(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each row's first `length` items reversed, the padding after them left in place."""
    positions = np.arange(x.shape[1])[None, :]
    last = lengths[:, None] - 1
    index = np.where(positions <= last, last - positions, positions)  # (batch, length)
    if x.ndim == 3:
        index = index[:, :, None]
    return np.take_along_axis(x, index, axis=1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
