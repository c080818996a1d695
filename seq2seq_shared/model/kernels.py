"""The hand-written kernels: the LSTM recurrence and the label-smoothed cross-entropy,
each with its own backward pass.

They are here, apart from the model, because they exist for speed, not to define the
network: `LSTM` (lstm.py) and `Seq2Seq.compute_loss` (model.py) say what is computed;
these say how to compute it, and its gradient, in fewer passes than automatic
differentiation would. Written in `keras.ops` alone (the loop through `backend.scan`), so
they run under TensorFlow and JAX; the tests check both against automatic differentiation.
"""

from __future__ import annotations

from keras import ops

from .. import backend


def lstm_recurrence(projected, h0, c0, recurrent_kernel, mask=None):
    """Run the recurrence over time-major inputs already projected by the input kernel.

    projected: (steps, batch, 4H), `x @ kernel + bias`; h0, c0: (batch, H);
    mask: None (every step is real), or (steps, batch, 1), 1.0 at real steps and 0.0 where
    the state is carried over. Returns outputs (steps, batch, H) and the final h and c.

    Its backward pass runs one reverse loop for the gates' gradients, then ONE matmul for
    the recurrent kernel's gradient over all steps (automatic differentiation of the loop
    keeps every intermediate and does T skinny matmuls).
    """
    if mask is None:
        return _recurrence(projected, h0, c0, recurrent_kernel)
    return _masked_recurrence(projected, h0, c0, recurrent_kernel, mask)


def lstm_gates(z, c):
    """One LSTM step from its gate pre-activations z (batch, 4H), Keras's order i, f, c, o:
    the activated gates (i, f, g, o), the new cell state and its tanh."""
    i, f, g, o = ops.split(z, 4, axis=-1)
    i, f, g, o = ops.sigmoid(i), ops.sigmoid(f), ops.tanh(g), ops.sigmoid(o)
    c_new = f * c + i * g
    return (i, f, g, o), c_new, ops.tanh(c_new)


def _sigmoid_grad(y):
    return y * (1.0 - y)


def _recurrence_with_gradient(masked: bool):
    """The recurrence and its backward pass, with or without a mask. Without one (the
    decoder in training), no step pays for masking: every op saved runs once per step."""

    @ops.custom_gradient
    def recurrence(projected, h0, c0, recurrent_kernel, *mask):
        real = (ops.greater(mask[0], 0.0),) if masked else ()  # (steps, batch, 1), bool
        (h_last, c_last), saved = _forward(projected, h0, c0, recurrent_kernel, real)

        def backward(*upstream):
            d_outputs, d_h, d_c = (
                ops.zeros_like(x) if u is None else u
                for u, x in zip(backend.gradients_per_output(upstream), (saved[0], h_last, c_last))
            )
            gradients = _backward(d_outputs, d_h, d_c, saved, h0, c0, recurrent_kernel, real)
            return (*gradients, *(ops.zeros_like(m) for m in mask))

        return (saved[0], h_last, c_last), backward

    return recurrence


def _forward(projected, h0, c0, recurrent_kernel, real: tuple):
    """The forward loop: the final (h, c), and per step what the backward pass reads
    (outputs, cell states, activated gates, tanh of the cell states)."""

    def forward_step(carry, inputs):
        h, c = carry
        gates, c_new, tanh_c = lstm_gates(inputs[0] + ops.matmul(h, recurrent_kernel), c)
        h_new = gates[3] * tanh_c
        if real:  # a padded step carries the state over
            h_new, c_new = ops.where(inputs[1], h_new, h), ops.where(inputs[1], c_new, c)
        return (h_new, c_new), (h_new, c_new, ops.concatenate(gates, -1), tanh_c)

    return backend.scan(forward_step, (h0, c0), (projected, *real), outputs=4)


def _backward(d_outputs, d_h, d_c, saved, h0, c0, recurrent_kernel, real: tuple):
    """Gradients of the projected inputs, h0, c0 and the recurrent kernel."""
    hs, cs, gates, tanh_cs = saved
    c_before = ops.concatenate([ops.expand_dims(c0, 0), cs[:-1]], 0)  # (steps, batch, H)
    h_before = ops.concatenate([ops.expand_dims(h0, 0), hs[:-1]], 0)  # (steps, batch, H)
    kernel_t = ops.transpose(recurrent_kernel)

    def backward_step(carry, inputs):
        d_h, d_c = carry
        d_out, gate, tanh_c, c_prev = inputs[:4]
        d_h = d_h + d_out
        i, f, g, o = ops.split(gate, 4, axis=-1)
        # A padded step gets no gradient and passes its carry on untouched.
        d_h_new, d_c_new = (
            (ops.where(inputs[4], d_h, 0.0), ops.where(inputs[4], d_c, 0.0)) if real else (d_h, d_c)
        )
        d_c_new = d_c_new + d_h_new * o * (1.0 - tanh_c * tanh_c)
        d_z = ops.concatenate(
            [
                d_c_new * g * _sigmoid_grad(i),
                d_c_new * c_prev * _sigmoid_grad(f),
                d_c_new * i * (1.0 - g * g),
                d_h_new * tanh_c * _sigmoid_grad(o),
            ],
            -1,
        )  # (batch, 4H)
        d_h_before, d_c_before = ops.matmul(d_z, kernel_t), d_c_new * f
        if real:
            d_h_before = ops.where(inputs[4], d_h_before, d_h)
            d_c_before = ops.where(inputs[4], d_c_before, d_c)
        return (d_h_before, d_c_before), (d_z,)

    (d_h0, d_c0), (d_projected,) = backend.scan(
        backward_step,
        (d_h, d_c),
        (d_outputs, gates, tanh_cs, c_before, *real),
        outputs=1,
        reverse=True,
    )  # d_projected: (steps, batch, 4H)
    hidden = ops.shape(h0)[-1]
    d_recurrent_kernel = ops.matmul(
        ops.transpose(ops.reshape(h_before, (-1, hidden))),
        ops.reshape(d_projected, (-1, 4 * hidden)),
    )  # (H, 4H)
    return d_projected, d_h0, d_c0, d_recurrent_kernel


_recurrence = _recurrence_with_gradient(masked=False)
_masked_recurrence = _recurrence_with_gradient(masked=True)


def smoothed_cross_entropy(logits, labels, smoothing: float, scatter: bool = True):
    """Per-row label-smoothed cross-entropy and plain nll, with a hand-written gradient.

    logits (..., vocab), labels (...). loss = (1 - s) * nll + s * (lse - mean(logits)):
    cross-entropy against (1 - s) * one-hot + s * uniform. Its gradient is
    softmax - (1 - s) * one-hot - s / vocab, computed from the forward's exponentials in one
    pass and corrected at the labels; automatic differentiation of logsumexp makes several
    passes over the (rows, vocab) array, which on a CPU cost as much as the projection
    matmul itself. `scatter=False` makes that correction by subtracting a one-hot array
    instead (`backend.scatter_label_gradient()` says which: the same values, no scatter op).
    """

    @ops.custom_gradient
    def forward(logits):
        shifted = logits - ops.max(logits, axis=-1, keepdims=True)  # (..., vocab)
        exps = ops.exp(shifted)
        sums = ops.sum(exps, axis=-1, keepdims=True)  # (..., 1)
        log_normalizer = ops.squeeze(ops.log(sums), -1)  # lse - max
        picked = ops.squeeze(ops.take_along_axis(shifted, ops.expand_dims(labels, -1), -1), -1)
        nll = log_normalizer - picked
        loss = nll
        if smoothing:
            loss = (1.0 - smoothing) * nll + smoothing * (
                log_normalizer - ops.mean(shifted, axis=-1)
            )

        def backward(*upstream):
            scale = ops.expand_dims(backend.gradients_per_output(upstream)[0], -1)  # (rows, 1)
            return _cross_entropy_gradient(logits, labels, smoothing, exps, sums, scale, scatter)

        return (loss, nll), backward

    return forward(logits)


def _cross_entropy_gradient(logits, labels, smoothing: float, exps, sums, scale, scatter: bool):
    """`scale * (softmax - (1 - s) * one-hot - s / vocab)`, shaped like `logits`."""
    vocab = ops.shape(logits)[-1]
    gradient = exps * (scale / sums)
    if smoothing:
        gradient = gradient - scale * (smoothing / ops.cast(vocab, logits.dtype))
    if not scatter:  # one more pass over (rows, vocab), all on the device
        one_hot = ops.one_hot(labels, logits.shape[-1], dtype=logits.dtype)  # (..., vocab)
        return gradient - one_hot * ((1.0 - smoothing) * scale)
    # Minus (1 - s) * scale at each row's label: written into those entries alone,
    # where a one-hot target would take more passes over (rows, vocab).
    flat = ops.reshape(gradient, (-1, vocab))  # (rows, vocab)
    columns = ops.reshape(labels, (-1,))
    rows = ops.arange(ops.shape(columns)[0], dtype=columns.dtype)
    at_labels = ops.squeeze(ops.take_along_axis(flat, ops.expand_dims(columns, -1), -1), -1) - (
        1.0 - smoothing
    ) * ops.reshape(scale, (-1,))
    flat = ops.scatter_update(flat, ops.stack([rows, columns], axis=1), at_labels)
    return ops.reshape(flat, ops.shape(logits))
