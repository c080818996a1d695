"""Global attention over the source (Luong et al., 2015), read by the shared LSTM's
decoder side.

The memory is the encoder's top-layer outputs: the same shared LSTM run over the source,
in natural order. The decoder's recurrence runs first, unchanged (one call over all target
steps in training, so the fast recurrence survives, and Keras's cuDNN kernel where no
role bias is added to the gates); each of its top
states `h_t` then asks the memory for a context `c_t`, and the output projection reads
the attentional state `tanh(W_c [c_t; h_t])`. Scores are `h_t . m_s` ("dot") or
`h_t . (W_a m_s)` ("general"); the memory's side (`W_a m_s`, the *keys*) is computed once
per sentence. Padded source positions get exactly zero weight.
"""

from __future__ import annotations

from keras import backend, layers, ops

KINDS = ("none", "dot", "general")


def _excluded(dtype) -> float:
    """A score no softmax can pick: exp(-1e9 - max) is exactly 0 in float32 and bfloat16.
    float16 (at most 65504) would hold -1e9 as -inf, and a row with no real position
    (-inf - -inf) as NaN; exp(-3e4 - max) is exactly 0 there too."""
    return -3e4 if backend.standardize_dtype(dtype) == "float16" else -1e9


class Attention(layers.Layer):
    """`kind` "dot" or "general"; `hidden_size` the LSTM's. Weights: W_c (2H x H), and
    W_a (H x H) for "general"."""

    def __init__(self, kind: str, hidden_size: int, **kwargs):
        super().__init__(**kwargs)
        if kind not in KINDS[1:]:
            raise ValueError(f"attention must be one of {', '.join(KINDS)}, not {kind!r}")
        self.kind = kind
        self.score_kernel = (
            layers.Dense(hidden_size, use_bias=False, name="score") if kind == "general" else None
        )
        self.combine = layers.Dense(hidden_size, use_bias=False, activation="tanh", name="combine")
        if self.score_kernel is not None:
            self.score_kernel.build((None, None, hidden_size))
        self.combine.build((None, None, 2 * hidden_size))

    def memory(self, outputs, mask) -> dict:
        """What every decoder step reads, per sentence: the memory (batch, source_len,
        hidden), its keys (the same shape) and the mask of real positions (batch,
        source_len)."""
        keys = outputs if self.score_kernel is None else self.score_kernel(outputs)
        return {"memory": outputs, "keys": keys, "mask": mask}

    def call(self, queries, memory: dict):
        """queries (batch, target_len, hidden) -> the attentional states (batch,
        target_len, hidden) and the weights (batch, target_len, source_len)."""
        scores = ops.matmul(queries, ops.transpose(memory["keys"], (0, 2, 1)))  # (b, T, S)
        real = ops.expand_dims(memory["mask"], 1)  # (batch, 1, source_len)
        scores = ops.where(real, scores, _excluded(scores.dtype))
        # The softmax written out: Keras's warns on a one-piece source (an axis of size 1).
        weights = ops.exp(scores - ops.max(scores, axis=-1, keepdims=True))
        weights = weights / ops.sum(weights, axis=-1, keepdims=True)
        context = ops.matmul(weights, memory["memory"])  # (batch, target_len, hidden)
        return self.combine(ops.concatenate([context, queries], axis=-1)), weights


def attention_parameter_count(kind: str, hidden_size: int) -> int:
    """W_c, plus W_a for "general"; none without attention."""
    if kind == "none":
        return 0
    return 2 * hidden_size * hidden_size + (hidden_size * hidden_size if kind == "general" else 0)
