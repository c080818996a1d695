"""The step-by-step interface the searches use (greedy, beam, the export): the same
layer objects as `Seq2Seq.call`, one target piece at a time.

A mixin of `Seq2Seq` (model/seq2seq.py), which provides the layers it reads:
`decoder_lstms`, `target_embedding`, `attention`, `feed_context`, `logits` and the role
helpers `_embedded` / `_gate_bias`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keras import ops

from .roles import WRITE


class Stepwise:
    """Decoding one piece at a time with the model's own layers."""

    if TYPE_CHECKING:  # what Seq2Seq provides
        feed_context: bool
        attention: Any

        @property
        def decoder_lstms(self) -> list[Any]: ...

        @property
        def target_embedding(self) -> Any: ...

        def _embedded(self, embeddings: Any, role: int) -> Any: ...

        def _gate_bias(self, role: int, layer: int) -> Any: ...

        def logits(self, x: Any) -> Any: ...

    def context(self, encoded: dict):
        """What `feed_context` gives every decoder step: the encoder's top final h, or None."""
        return encoded["states"][-1][0] if self.feed_context else None  # (batch, hidden)

    def decoder_constants(self, encoded: dict) -> dict:
        """What every decoding step reads, fixed per sentence, each (batch, ...): the
        context's share of the first layer's input projection, (batch, 4 * hidden), with
        `feed_context`; the memory with attention."""
        constants = {}
        context = self.context(encoded)
        if context is not None:
            constants["context_projection"] = self.decoder_lstms[0].context_projection(context)
        if self.attention is not None:
            constants.update({key: encoded[key] for key in ("memory", "keys", "mask")})
        return constants

    def input_table(self):
        """The first decoder layer's input projection of every target token, (vocab,
        4 * hidden): constant for given weights, so a greedy step can look its input up
        instead of multiplying it (`decode_step(input_table=...)`)."""
        embeddings = self._embedded(ops.convert_to_tensor(self.target_embedding.embeddings), WRITE)
        return self.decoder_lstms[0].input_projection(embeddings)

    def decode_step(
        self,
        token,
        states: list[list],
        constants: dict,
        input_table=None,
        return_attention: bool = False,
    ):
        """One decoding step: token (batch,) -> logits (batch, vocab) and the next states;
        with `return_attention`, also the attention weights (batch, source_len).

        `constants` is `self.decoder_constants(encoded)`, fixed for the whole sentence;
        `input_table`, if given, is `self.input_table()`, fixed for the weights."""
        if input_table is None:  # x: (batch, embedding_dim)
            x, projected = self._embedded(self.target_embedding(token), WRITE), None
        else:
            x, projected = None, ops.take(input_table, token, axis=0)  # (batch, 4 * hidden)
        context_projection = constants.get("context_projection")
        next_states = []
        for layer, (lstm, state) in enumerate(zip(self.decoder_lstms, states)):
            # The very layer (weights) `call` runs.
            x, state = lstm.step(
                x,
                state,
                context_projection,
                projected=projected,
                gate_bias=self._gate_bias(WRITE, layer),
            )
            context_projection = projected = None  # only the first layer reads them
            next_states.append(state)
        weights = None
        if self.attention is not None:
            x, weights = self.attention(ops.expand_dims(x, 1), constants)
            x, weights = x[:, 0], weights[:, 0]  # (batch, hidden), (batch, source_len)
        logits = self.logits(x)
        return (logits, next_states, weights) if return_attention else (logits, next_states)
