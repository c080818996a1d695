"""The Seq2Seq model: ONE LSTM per layer, shared by the encoder and the decoder.

    source ──embed──▶ LSTM ──final (h, c)──┐
                                           ▼
    bos + target ──embed──▶ the same LSTM ──▶ projection ──▶ logits

`call` (teacher forcing), `encode` and `decode_step` all use the same layer objects, so
training and inference can never drift apart, and nothing is looked up by index after
loading. With `share_lstm=False` the decoder gets its own LSTMs (the sharing ablation).

With `feed_context`, the first layer's input is [embedding; context] (Cho et al., 2014):
the decoder reads the *context*, the encoder's final top-layer h, at every step, so the
source is not forgotten over a long target. The encoder, which has no context yet, reads
zeros there; it is still the same LSTM, with one kernel for both. The context's share of
that layer's input projection, the same at every step, is its *context projection*.

With `attention` ("dot" or "general", attention.py) the decoder's top states also read
the encoder's top-layer outputs, the memory, through Luong global attention; with
`role_signal` ("bias" or "embedding", roles.py) the shared LSTM is told which job it is
doing. Both add weights only when on, so model directories without them load as before.

`encode` returns the *encoded* source, a dict: "states", the final (h, c) of every layer,
and with attention "memory", "keys" and "mask". `decoder_constants` turns it into what
every decoding step reads, per sentence (each value (batch, ...), so a search can drop
finished rows or repeat rows for a beam).

How it is made fast lives elsewhere: the recurrence and the loss's gradient in
kernels.py, the loss in loss.py, the step-by-step interface of the searches in
stepwise.py, the greedy search in decoding/greedy.py.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from ..config import ModelConfig
from ..data.tokenizer import PAD_ID
from .attention import Attention
from .loss import masked_loss
from .lstm import LSTM
from .roles import READ, WRITE, RoleSignal
from .stepwise import Stepwise

# The settings that fix the network's shape, besides the vocabularies' sizes.
SHAPE_SETTINGS = (
    "embedding_dim",
    "hidden_size",
    "num_layers",
    "share_lstm",
    "share_embeddings",
    "tie_output",
    "feed_context",
    "attention",
    "role_signal",
)


def shape_arguments(
    config: ModelConfig, source_vocab_size: int, target_vocab_size: int
) -> dict[str, Any]:
    """The keyword arguments of `Seq2Seq` and `expected_parameter_count` that fix the
    shape, from the saved config: its defaults are the only ones (config.py)."""
    return dict(
        source_vocab_size=source_vocab_size,
        target_vocab_size=target_vocab_size,
        **{name: getattr(config, name) for name in SHAPE_SETTINGS},
    )


class Seq2Seq(Stepwise, keras.Model):
    """The translation model. Its shape is given in full, by keyword (`from_model_config`
    reads it from a `ModelConfig`), so no default here can drift from config.py's;
    `dropout` and `label_smoothing` act in training only, and default to off."""

    def __init__(
        self,
        *,
        source_vocab_size: int,
        target_vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        share_lstm: bool,
        share_embeddings: bool,
        tie_output: bool,
        feed_context: bool,
        attention: str,
        role_signal: str,
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
        reverse_source: bool = False,
        bidirectional: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if share_embeddings and source_vocab_size != target_vocab_size:
            raise ValueError("share_embeddings needs one vocabulary for source and target")
        self.target_vocab_size = target_vocab_size
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.share_lstm, self.share_embeddings = share_lstm, share_embeddings
        self.label_smoothing, self.feed_context = label_smoothing, feed_context
        self.reverse_source, self.bidirectional = reverse_source, bidirectional
        self.first_input_size = embedding_dim + (hidden_size if feed_context else 0)
        self.source_embedding = layers.Embedding(
            source_vocab_size,
            embedding_dim,
            name="embedding" if share_embeddings else "source_embedding",
        )
        if not share_embeddings:
            self._target_embedding = layers.Embedding(
                target_vocab_size, embedding_dim, name="target_embedding"
            )
        self.encoder_lstms = [
            self._lstm("lstm" if share_lstm else "encoder_lstm", i) for i in range(num_layers)
        ]
        if not share_lstm:
            self._decoder_lstms = [self._lstm("decoder_lstm", i) for i in range(num_layers)]
        self.dropout = layers.Dropout(dropout)
        self.attention = _attention(attention, hidden_size, bidirectional)
        self.roles = _roles(role_signal, num_layers, embedding_dim, hidden_size)
        self.output_bridge, self.projection = _output_layers(
            tie_output, embedding_dim, hidden_size, target_vocab_size
        )
        self.nll_tracker = keras.metrics.Mean(name="nll")  # per real target token, no smoothing

    @classmethod
    def from_model_config(
        cls, config: ModelConfig, source_vocab_size: int, target_vocab_size: int
    ) -> Seq2Seq:
        """The model `config` describes (unbuilt), for vocabularies of the given sizes.
        Training sets `label_smoothing` when it compiles the model."""
        return cls(
            **shape_arguments(config, source_vocab_size, target_vocab_size),
            dropout=config.dropout,
            reverse_source=config.reverse_source,
            bidirectional=config.bidirectional,
        )

    def _lstm(self, prefix: str, index: int) -> LSTM:
        # Defaults (tanh, sigmoid, no recurrent dropout, unroll=False) keep cuDNN usable on GPU.
        lstm = LSTM(self.hidden_size, name=f"{prefix}_{index}")
        # Built for its full input: layer 0 reads [embedding; context] with feed_context.
        width = self.hidden_size if index else self.first_input_size
        lstm.build((None, None, width))
        return lstm

    # The shared objects: properties, so Keras tracks each layer (and its weights) once.
    @property
    def target_embedding(self) -> layers.Embedding:
        return self.source_embedding if self.share_embeddings else self._target_embedding

    @property
    def decoder_lstms(self) -> list[layers.LSTM]:
        return self.encoder_lstms if self.share_lstm else self._decoder_lstms

    def build(self, input_shape=None) -> None:
        source = ops.ones((1, 1), dtype="int32")
        self.call({"source": source, "target_input": source})
        self.built = True

    def encode(self, source, training: bool = False) -> dict:
        """The encoded source: {"states": the final [h, c] of every layer, each (batch,
        hidden), read at the last real token}, and with attention the memory
        (`Attention.memory`: "memory", "keys", "mask"), in natural order.

        `source` holds right-padded ids in natural order; with `reverse_source` the model
        reads each sentence backwards (Sutskever et al., 2014), whoever calls it: training,
        validation, `translate` and the SavedModel alike. With `bidirectional`, the memory
        also holds a second read in the other order (no new weights); the states are the
        first read's."""
        mask = ops.not_equal(source, PAD_ID)  # (batch, source_len)
        lengths = ops.sum(ops.cast(mask, "int32"), axis=1)  # (batch,)
        if self.reverse_source:
            source = reverse_sentences(source, lengths)
        # With feed_context the encoder has no context yet: its slot reads zeros, which
        # LSTM skips (the input is narrower than the kernel).
        x = self.dropout(self._embedded(self.source_embedding(source), READ), training=training)
        top, states = self._read(x, mask, training)
        encoded = {"states": states}
        if self.attention is not None:
            memory = reverse_sentences(top, lengths) if self.reverse_source else top
            if self.bidirectional:
                # The same LSTM reads each sentence the other way too; its outputs, back
                # in natural order, are averaged with the first read's.
                other, _ = self._read(reverse_sentences(x, lengths), mask, training)
                other = other if self.reverse_source else reverse_sentences(other, lengths)
                memory = (memory + other) * 0.5
            encoded.update(self.attention.memory(memory, mask))
        return encoded

    def _read(self, x, mask, training: bool) -> tuple:
        """The encoder's LSTMs over embedded `x`: the top layer's outputs (batch, len,
        hidden) and every layer's final [h, c]."""
        states = []
        for layer, lstm in enumerate(self.encoder_lstms):
            x, h, c = lstm(x, mask=mask, training=training, **self._role_bias(READ, layer))
            x = self.dropout(x, training=training)
            states.append([h, c])
        return x, states

    def _embedded(self, embeddings, role: int):
        return embeddings if self.roles is None else self.roles.embedded(embeddings, role)

    def _gate_bias(self, role: int, layer: int):
        return None if self.roles is None else self.roles.gate_bias(role, layer)

    def _role_bias(self, role: int, layer: int) -> dict:
        """`gate_bias=...` for a layer's call when there is one (a bias role signal)."""
        bias = self._gate_bias(role, layer)
        return {} if bias is None else {"gate_bias": bias}

    def decoder_states(
        self, target_input, encoded: dict, training: bool = False, return_attention: bool = False
    ):
        """The decoder under teacher forcing, from the `encoded` source: the states the
        output projection reads (batch, target_len, hidden), one per target position; with
        `return_attention`, also the attention weights (batch, target_len, source_len)."""
        x = self._embedded(self.target_embedding(target_input), WRITE)
        x = self.dropout(x, training=training)
        context = self.context(encoded)  # the same at every step: projected once
        for layer, (lstm, state) in enumerate(zip(self.decoder_lstms, encoded["states"])):
            x, _, _ = lstm(
                x,
                initial_state=state,
                training=training,
                context=context,
                **self._role_bias(WRITE, layer),
            )
            context = None  # only the first layer reads it
            x = self.dropout(x, training=training)
        weights = None
        if self.attention is not None:
            x, weights = self.attention(x, encoded)
            x = self.dropout(x, training=training)
        return (x, weights) if return_attention else x

    def logits(self, x):
        if self.projection is not None:
            return self.projection(x)
        if self.output_bridge is not None:
            x = self.output_bridge(x)
        # The table in x's dtype: under a mixed policy `compute_loss` calls this outside the
        # model's call, where Keras's autocasting does not reach, and a float32 table would
        # make the largest matmul float32.
        table = ops.cast(self.target_embedding.embeddings, x.dtype)  # (vocab, embedding_dim)
        return ops.matmul(x, ops.transpose(table))

    def call(self, inputs: dict, training: bool = False):
        """Logits (batch, target_len, vocab); in training, the decoder's top states instead.

        Training hands `compute_loss` the states (batch, target_len, hidden), and it
        projects only the real target positions: padding costs no vocabulary-sized matmul.
        """
        encoded = self.encode(inputs["source"], training=training)
        hidden = self.decoder_states(inputs["target_input"], encoded, training=training)
        return hidden if training else self.logits(hidden)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Label-smoothed cross-entropy averaged over real target tokens (loss.py); the
        nll per token, unsmoothed and unweighted, is tracked as a metric."""
        loss, total_nll, tokens = masked_loss(self, y, y_pred, sample_weight, training)
        self.nll_tracker.update_state(total_nll / tokens, sample_weight=tokens)
        return loss


def _output_layers(tie_output: bool, embedding_dim: int, hidden_size: int, vocab_size: int):
    """(output bridge, projection). Tied: logits are scores against the target embedding
    table, through a bridge when the LSTM and the embedding differ in size."""
    if not tie_output:
        return None, layers.Dense(vocab_size, name="projection")
    if hidden_size == embedding_dim:
        return None, None
    return layers.Dense(embedding_dim, use_bias=False, name="output_bridge"), None


def _attention(kind: str, hidden_size: int, bidirectional: bool) -> Attention | None:
    if bidirectional and kind == "none":
        raise ValueError("a bidirectional read is for attention to read: set attention")
    return None if kind == "none" else Attention(kind, hidden_size, name="attention")


def _roles(kind: str, num_layers: int, embedding_dim: int, hidden_size: int):
    if kind == "none":
        return None
    return RoleSignal(kind, num_layers, embedding_dim, hidden_size, name="role_signal")


def reverse_sentences(sequences, lengths):
    """Each row's first `length` items in reverse order; the padding after them stays.
    sequences (batch, len) or (batch, len, features), lengths (batch,)."""
    positions = ops.expand_dims(ops.arange(ops.shape(sequences)[1], dtype="int32"), 0)  # (1, len)
    last = ops.expand_dims(lengths, 1) - 1  # (batch, 1)
    index = ops.where(positions <= last, last - positions, positions)  # (batch, len)
    if len(sequences.shape) == 3:
        index = ops.expand_dims(index, -1)  # (batch, len, 1): the same for every feature
    return ops.take_along_axis(sequences, index, axis=1)
