"""The training loss: label-smoothed cross-entropy over the real target tokens.

`Seq2Seq.compute_loss` calls it. In training the model hands over its top decoder states
(`Seq2Seq.call`), and only the real positions are projected to the vocabulary where the
backend gathers them (`backend.gather_real_tokens`); the gradient of the softmax is
kernels.py's.
"""

from __future__ import annotations

from keras import ops

from .. import backend
from ..data.tokenizer import PAD_ID
from .kernels import smoothed_cross_entropy


def masked_loss(model, y, y_pred, sample_weight=None, training: bool = True) -> tuple:
    """Label-smoothed cross-entropy averaged over real target tokens (padding masked);
    returns (loss, the unsmoothed nll summed, the real tokens).

    `y_pred` is the top decoder states in training (see `call`), logits otherwise.
    `sample_weight` (batch,), if given, weights each sentence's tokens in the sum (still
    divided by the number of real tokens): gradient accumulation's weights
    (training/accumulation.py). The nll, a metric, is never weighted."""
    real = ops.not_equal(y, PAD_ID)  # (batch, target_len)
    weights = (
        None
        if sample_weight is None
        # (batch, target_len)
        else ops.broadcast_to(ops.expand_dims(ops.cast(sample_weight, "float32"), 1), ops.shape(y))
    )
    if training:
        width = ops.shape(y_pred)[-1]
        if backend.gather_real_tokens():  # only the real positions: (tokens, hidden)
            rows = ops.nonzero(ops.reshape(real, (-1,)))[0]
            y_pred = ops.take(ops.reshape(y_pred, (-1, width)), rows, axis=0)
            y, real = ops.take(ops.reshape(y, (-1,)), rows), None
            if weights is not None:
                weights = ops.take(ops.reshape(weights, (-1,)), rows)
        y_pred = model.logits(y_pred)
    loss, nll = smoothed_cross_entropy(
        ops.cast(y_pred, "float32"),
        y,
        model.label_smoothing,
        scatter=backend.scatter_label_gradient(),
    )
    if real is None:
        tokens = ops.cast(ops.maximum(ops.shape(nll)[0], 1), "float32")
        total_nll = ops.sum(nll)
    else:
        mask = ops.cast(real, "float32")
        tokens = ops.maximum(ops.sum(mask), 1.0)
        total_nll, loss = ops.sum(nll * mask), loss * mask
    total_loss = ops.sum(loss if weights is None else loss * weights)
    # Each replica's share of the loss over every replica's tokens (data parallel on
    # TensorFlow, whose replicas sum their gradients); the tokens themselves elsewhere.
    return total_loss / backend.summed_over_replicas(tokens), total_nll, tokens
