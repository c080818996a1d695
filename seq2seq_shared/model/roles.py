"""The role signal: the shared LSTM learns whether it is reading the source or writing
the target.

One LSTM does both jobs; without a signal, the only thing telling it which one is the
input (source or target pieces, the decoder's seeded state). Two ways to say it:

- "bias": a learned bias per role and layer, added to the LSTM's gates (4 * hidden
  parameters per role and layer);
- "embedding": a learned role vector per role, added to every input embedding of the
  first layer, as BERT adds its segment embeddings (embedding_dim parameters per role).

Both start at zero (the model starts as one without a signal) and cost nothing in
decoding: they fold into constants computed once.
"""

from __future__ import annotations

from keras import layers, ops

KINDS = ("none", "bias", "embedding")
READ, WRITE = 0, 1  # the roles: the encoder reads the source, the decoder writes the target


class RoleSignal(layers.Layer):
    def __init__(self, kind: str, num_layers: int, embedding_dim: int, hidden_size: int, **kwargs):
        super().__init__(**kwargs)
        if kind not in KINDS[1:]:
            raise ValueError(f"role_signal must be one of {', '.join(KINDS)}, not {kind!r}")
        self.kind = kind
        if kind == "bias":
            self.gate_biases = [
                self.add_weight(
                    shape=(2, 4 * hidden_size), initializer="zeros", name=f"gate_bias_{i}"
                )
                for i in range(num_layers)
            ]
        else:
            self.vectors = self.add_weight(
                shape=(2, embedding_dim), initializer="zeros", name="vectors"
            )
        self.built = True

    def embedded(self, embeddings, role: int):
        """Embeddings (..., embedding_dim) as the first layer reads them in `role`."""
        if self.kind != "embedding":
            return embeddings
        return embeddings + ops.convert_to_tensor(self.vectors)[role]

    def gate_bias(self, role: int, layer: int):
        """The bias added to layer `layer`'s gates in `role`, (4 * hidden,), or None."""
        if self.kind != "bias":
            return None
        return ops.convert_to_tensor(self.gate_biases[layer])[role]


def role_parameter_count(kind: str, num_layers: int, embedding_dim: int, hidden_size: int) -> int:
    """Two roles: 4 * hidden per layer ("bias") or embedding_dim ("embedding") each."""
    if kind == "bias":
        return 2 * num_layers * 4 * hidden_size
    return 2 * embedding_dim if kind == "embedding" else 0
