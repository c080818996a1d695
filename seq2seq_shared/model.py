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

from . import backend
from .lstm import LSTM
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
        self.first_input_size = embedding_dim + (hidden_size if feed_context else 0)

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

    def encode(self, source, training: bool = False) -> list[list]:
        """The final (h, c) of every layer, each (batch, hidden), read at the last real token."""
        mask = ops.not_equal(source, PAD_ID)  # (batch, source_len)
        # With feed_context the encoder has no context yet: its slot reads zeros, which
        # LSTM skips (the input is narrower than the kernel).
        x = self.dropout(self.source_embedding(source), training=training)
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
        return self.logits(self.decode_states(target_input, states, training=training))

    def decode_states(self, target_input, states: list[list], training: bool = False):
        """Teacher-forced decoding: the top layer's outputs (batch, target_len, hidden)."""
        x = self.dropout(self.target_embedding(target_input), training=training)
        context = self.context(states)  # the same at every step: projected once
        for lstm, state in zip(self.decoder_lstms, states):
            x, _, _ = lstm(x, initial_state=state, training=training, context=context)
            context = None  # only the first layer reads it
            x = self.dropout(x, training=training)
        return x

    def step_context(self, states: list[list]):
        """What `decode_step` needs of the context, computed once per sentence: its share
        of the first layer's input projection (batch, 4 * hidden), or None."""
        context = self.context(states)
        return None if context is None else self.decoder_lstms[0].context_projection(context)

    def input_table(self):
        """The first decoder layer's input projection of every target token, (vocab,
        4 * hidden): constant for given weights, so a greedy step can look its input up
        instead of multiplying it (`decode_step(input_table=...)`)."""
        embeddings = ops.convert_to_tensor(self.target_embedding.embeddings)
        return self.decoder_lstms[0].input_projection(embeddings)

    def decode_step(self, token, states: list[list], context=None, input_table=None):
        """One greedy step: token (batch,) -> logits (batch, vocab) and the next states.

        `context` is `self.step_context(encoder_states)`, fixed for the whole sentence;
        `input_table`, if given, is `self.input_table()`, fixed for the weights."""
        if input_table is None:
            x, projected = self.target_embedding(token), None  # x: (batch, embedding_dim)
        else:
            x, projected = None, ops.take(input_table, token, axis=0)  # (batch, 4 * hidden)
        next_states = []
        for lstm, state in zip(self.decoder_lstms, states):
            # The very layer (weights) `call` runs.
            x, state = lstm.step(x, state, context, projected=projected)
            context = projected = None  # only the first layer reads them
            next_states.append(state)
        return self.logits(x), next_states

    def logits(self, x):
        if self.projection is not None:
            return self.projection(x)
        if self.output_bridge is not None:
            x = self.output_bridge(x)
        return ops.matmul(x, ops.transpose(self.target_embedding.embeddings))

    def call(self, inputs: dict, training: bool = False):
        """Logits (batch, target_len, vocab); in training, the decoder's top states instead.

        Training hands `compute_loss` the states (batch, target_len, hidden), and it
        projects only the real target positions: padding costs no vocabulary-sized matmul.
        """
        states = self.encode(inputs["source"], training=training)
        hidden = self.decode_states(inputs["target_input"], states, training=training)
        return hidden if training else self.logits(hidden)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Label-smoothed cross-entropy averaged over real target tokens (padding masked).

        `y_pred` is the top decoder states in training (see `call`), logits otherwise."""
        real = ops.not_equal(y, PAD_ID)  # (batch, target_len)
        if training:
            width = ops.shape(y_pred)[-1]
            if backend.dynamic_shapes():  # only the real positions: (tokens, hidden)
                rows = ops.nonzero(ops.reshape(real, (-1,)))[0]
                y_pred = ops.take(ops.reshape(y_pred, (-1, width)), rows, axis=0)
                y, real = ops.take(ops.reshape(y, (-1,)), rows), None
            y_pred = self.logits(y_pred)
        loss, nll = smoothed_cross_entropy(ops.cast(y_pred, "float32"), y, self.label_smoothing)
        if real is None:
            tokens = ops.cast(ops.maximum(ops.shape(nll)[0], 1), "float32")
            total_nll, total_loss = ops.sum(nll), ops.sum(loss)
        else:
            mask = ops.cast(real, "float32")
            tokens = ops.maximum(ops.sum(mask), 1.0)
            total_nll, total_loss = ops.sum(nll * mask), ops.sum(loss * mask)
        self.nll_tracker.update_state(total_nll / tokens, sample_weight=tokens)
        return total_loss / tokens


def smoothed_cross_entropy(logits, labels, smoothing: float):
    """Per-row label-smoothed cross-entropy and plain nll, with a hand-written gradient.

    logits (..., vocab), labels (...). loss = (1 - s) * nll + s * (lse - mean(logits)):
    cross-entropy against (1 - s) * one-hot + s * uniform. Its gradient is
    softmax - (1 - s) * one-hot - s / vocab, computed from the forward's exponentials in one
    pass and corrected at the labels; automatic differentiation of logsumexp makes several
    passes over the (rows, vocab) array, which on a CPU cost as much as the projection
    matmul itself.
    """
    @ops.custom_gradient
    def forward(logits):
        shifted = logits - ops.max(logits, axis=-1, keepdims=True)
        exps = ops.exp(shifted)
        sums = ops.sum(exps, axis=-1, keepdims=True)
        log_normalizer = ops.squeeze(ops.log(sums), -1)  # lse - max
        picked = ops.squeeze(ops.take_along_axis(shifted, ops.expand_dims(labels, -1), -1), -1)
        nll = log_normalizer - picked
        loss = nll
        if smoothing:
            loss = (1.0 - smoothing) * nll + smoothing * (
                log_normalizer - ops.mean(shifted, axis=-1))

        def backward(*upstream):
            if len(upstream) == 1:  # JAX passes one tuple, TensorFlow one argument per output
                upstream = upstream[0]
            scale = ops.expand_dims(upstream[0], -1)  # (rows, 1): d total / d loss row
            vocab = ops.shape(logits)[-1]
            gradient = exps * (scale / sums)
            if smoothing:
                gradient = gradient - scale * (smoothing / ops.cast(vocab, logits.dtype))
            # Minus (1 - s) * scale at each row's label: written into those entries alone,
            # where a one-hot target would take more passes over (rows, vocab).
            flat = ops.reshape(gradient, (-1, vocab))
            columns = ops.reshape(labels, (-1,))
            rows = ops.arange(ops.shape(columns)[0], dtype=columns.dtype)
            at_labels = (ops.squeeze(ops.take_along_axis(flat, ops.expand_dims(columns, -1), -1),
                                     -1) - (1.0 - smoothing) * ops.reshape(scale, (-1,)))
            flat = ops.scatter_update(flat, ops.stack([rows, columns], axis=1), at_labels)
            return ops.reshape(flat, ops.shape(logits))

        return (loss, nll), backward

    return forward(logits)


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
