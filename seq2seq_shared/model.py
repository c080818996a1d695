"""The Seq2Seq model: ONE LSTM per layer, shared by the encoder and the decoder.

    source ──embed──▶ LSTM ──final (h, c)──┐
                                           ▼
    bos + target ──embed──▶ the same LSTM ──▶ projection ──▶ logits

`call` (teacher forcing), `encode` and `decode_step` all use the same layer objects, so
training and inference can never drift apart, and nothing is looked up by index after
loading. With `share_lstm=False` the decoder gets its own LSTMs (the sharing ablation).

With `feed_context`, the first layer's input is [embedding; context] (Cho et al., 2014):
the decoder reads the encoder's final top-layer state at every step, so the source is
not forgotten over a long target. The encoder, which has no context yet, reads zeros
there; it is still the same LSTM, with one kernel for both.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from .tokenizer import PAD_ID


class Seq2Seq(keras.Model):
    def __init__(self, source_vocab_size: int, target_vocab_size: int, embedding_dim: int,
                 hidden_size: int, num_layers: int = 1, share_lstm: bool = True,
                 share_embeddings: bool = True, tie_output: bool = False, dropout: float = 0.0,
                 label_smoothing: float = 0.0, feed_context: bool = False, **kwargs):
        super().__init__(**kwargs)
        if share_embeddings and source_vocab_size != target_vocab_size:
            raise ValueError("share_embeddings needs one vocabulary for source and target")
        self.target_vocab_size = target_vocab_size
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.share_lstm, self.share_embeddings = share_lstm, share_embeddings
        self.label_smoothing, self.feed_context = label_smoothing, feed_context

        self.source_embedding = layers.Embedding(source_vocab_size, embedding_dim,
                                                 name="embedding" if share_embeddings
                                                 else "source_embedding")
        if not share_embeddings:
            self._target_embedding = layers.Embedding(target_vocab_size, embedding_dim,
                                                      name="target_embedding")
        self.encoder_lstms = [self._lstm("lstm" if share_lstm else "encoder_lstm", i)
                              for i in range(num_layers)]
        if not share_lstm:
            self._decoder_lstms = [self._lstm("decoder_lstm", i) for i in range(num_layers)]
        self.dropout = layers.Dropout(dropout)
        if tie_output:
            # Logits are scores against the target embedding table, through a bridge
            # when the LSTM and the embedding differ in size.
            self.output_bridge = (layers.Dense(embedding_dim, use_bias=False, name="output_bridge")
                                  if hidden_size != embedding_dim else None)
            self.projection = None
        else:
            self.projection = layers.Dense(target_vocab_size, name="projection")
        self.nll_tracker = keras.metrics.Mean(name="nll")  # per real target token, no smoothing

    def _lstm(self, prefix: str, index: int) -> layers.LSTM:
        # Defaults (tanh, sigmoid, no recurrent dropout, unroll=False) keep cuDNN usable on GPU.
        return layers.LSTM(self.hidden_size, return_sequences=True, return_state=True,
                           name=f"{prefix}_{index}")

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

    def encode(self, source, training: bool = False) -> list[list]:
        """The final (h, c) of every layer, each (batch, hidden), read at the last real token."""
        mask = ops.not_equal(source, PAD_ID)  # (batch, source_len)
        x = self.dropout(self.source_embedding(source), training=training)
        if self.feed_context:  # no context yet: zeros in its place
            batch, length = ops.shape(source)[0], ops.shape(source)[1]
            x = ops.concatenate([x, ops.zeros((batch, length, self.hidden_size), x.dtype)], -1)
        states = []
        for lstm in self.encoder_lstms:
            x, h, c = lstm(x, mask=mask, training=training)  # x: (batch, source_len, hidden)
            x = self.dropout(x, training=training)
            states.append([h, c])
        return states

    def context(self, states: list[list]):
        """What `feed_context` gives every decoder step: the encoder's top final h, or None."""
        return states[-1][0] if self.feed_context else None  # (batch, hidden)

    def decode(self, target_input, states: list[list], training: bool = False):
        """Teacher-forced decoding from encoder states: logits (batch, target_len, vocab)."""
        x = self.dropout(self.target_embedding(target_input), training=training)
        if self.feed_context:
            context = ops.expand_dims(self.context(states), 1)  # (batch, 1, hidden)
            context = ops.repeat(context, ops.shape(target_input)[1], axis=1)
            x = ops.concatenate([x, context], -1)  # (batch, target_len, embedding + hidden)
        for lstm, state in zip(self.decoder_lstms, states):
            x, _, _ = lstm(x, initial_state=state, training=training)
            x = self.dropout(x, training=training)
        return self.logits(x)

    def decode_step(self, token, states: list[list], context=None):
        """One greedy step: token (batch,) -> logits (batch, vocab) and the next states.

        `context` is `self.context(encoder_states)`, fixed for the whole sentence."""
        x = self.target_embedding(token)  # (batch, embedding_dim)
        if self.feed_context:
            x = ops.concatenate([x, context], -1)  # (batch, embedding + hidden)
        next_states = []
        for lstm, state in zip(self.decoder_lstms, states):
            x, state = lstm.cell(x, state)  # the very cell (weights) that `call` runs
            next_states.append(state)
        return self.logits(x), next_states

    def logits(self, x):
        if self.projection is not None:
            return self.projection(x)
        if self.output_bridge is not None:
            x = self.output_bridge(x)
        return ops.matmul(x, ops.transpose(self.target_embedding.embeddings))

    def call(self, inputs: dict, training: bool = False):
        states = self.encode(inputs["source"], training=training)
        return self.decode(inputs["target_input"], states, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Label-smoothed cross-entropy averaged over real target tokens (padding masked)."""
        mask = ops.cast(ops.not_equal(y, PAD_ID), "float32")  # (batch, target_len)
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        nll = -ops.squeeze(ops.take_along_axis(log_probs, ops.expand_dims(y, -1), axis=-1), -1)
        loss = nll
        if self.label_smoothing:
            smooth = -ops.mean(log_probs, axis=-1)
            loss = (1.0 - self.label_smoothing) * nll + self.label_smoothing * smooth
        tokens = ops.maximum(ops.sum(mask), 1.0)
        self.nll_tracker.update_state(ops.sum(nll * mask) / tokens, sample_weight=tokens)
        return ops.sum(loss * mask) / tokens


def lstm_parameter_count(input_size: int, hidden_size: int) -> int:
    """Keras LSTM: input kernel, recurrent kernel and one bias, for 4 gates."""
    return 4 * (input_size * hidden_size + hidden_size * hidden_size + hidden_size)


def expected_parameter_count(source_vocab_size: int, target_vocab_size: int, embedding_dim: int,
                             hidden_size: int, num_layers: int, share_lstm: bool = True,
                             share_embeddings: bool = True, tie_output: bool = False,
                             feed_context: bool = False) -> int:
    """The parameter count by formula; with sharing each LSTM layer is counted once."""
    embeddings = source_vocab_size * embedding_dim
    if not share_embeddings:
        embeddings += target_vocab_size * embedding_dim
    first_input = embedding_dim + (hidden_size if feed_context else 0)
    stack = sum(lstm_parameter_count(first_input if i == 0 else hidden_size, hidden_size)
                for i in range(num_layers))
    lstms = stack if share_lstm else 2 * stack
    if tie_output:  # only the bridge, if any: the scores reuse the embedding table
        output = hidden_size * embedding_dim if hidden_size != embedding_dim else 0
    else:
        output = hidden_size * target_vocab_size + target_vocab_size
    return embeddings + lstms + output
