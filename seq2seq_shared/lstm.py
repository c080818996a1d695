"""The LSTM layer the model shares: Keras's LSTM with a faster recurrence, same weights.

Keras's generic loop multiplies each step's input by the kernel inside the recurrence and
leaves the backward pass to automatic differentiation of the loop, which keeps every
intermediate and does T skinny matmuls for each weight gradient. This `LSTM` instead

- projects the inputs of all time steps in one matmul (`x @ kernel + bias`) before the loop,
  so the loop does only `h @ recurrent_kernel` and the gates;
- has a hand-written backward pass (`lstm_recurrence`): one reverse loop computes the
  gates' gradients, and the kernel gradients are then ONE matmul each over all steps.

The maths and the variables (`cell.kernel`, `cell.recurrent_kernel`, `cell.bias`, gate
order i, f, c, o) are Keras's, so `cell(x, states)` still runs one step of the same LSTM,
and the tests check both passes against `keras.layers.LSTM`. It is written in `keras.ops`
alone and runs under TensorFlow and JAX; where TensorFlow sees a GPU, Keras's fused cuDNN
kernel runs instead, under Keras's own conditions for it.
"""
from __future__ import annotations

from keras import layers, ops

from . import backend


def _sigmoid_grad(y):
    return y * (1.0 - y)


def _gates(z, c):
    """One LSTM step from its gate pre-activations z (batch, 4H), Keras's order i, f, c, o:
    the activated gates (i, f, g, o), the new cell state and its tanh."""
    i, f, g, o = ops.split(z, 4, axis=-1)
    i, f, g, o = ops.sigmoid(i), ops.sigmoid(f), ops.tanh(g), ops.sigmoid(o)
    c_new = f * c + i * g
    return (i, f, g, o), c_new, ops.tanh(c_new)


def lstm_recurrence(projected, h0, c0, recurrent_kernel, mask=None):
    """Run the recurrence over time-major inputs already projected by the input kernel.

    projected: (steps, batch, 4H), `x @ kernel + bias`; h0, c0: (batch, H);
    mask: None (every step is real), or (steps, batch, 1), 1.0 at real steps and 0.0 where
    the state is carried over. Returns outputs (steps, batch, H) and the final h and c.
    """
    if mask is None:
        return _recurrence(projected, h0, c0, recurrent_kernel)
    return _masked_recurrence(projected, h0, c0, recurrent_kernel, mask)


def _recurrence_with_gradient(masked: bool):
    """The recurrence and its backward pass, with or without a mask. Without one (the
    decoder in training), no step pays for masking: every op saved runs once per step."""

    @ops.custom_gradient
    def recurrence(projected, h0, c0, recurrent_kernel, *mask):
        real = (ops.greater(mask[0], 0.0),) if masked else ()  # (steps, batch, 1), bool

        def forward_step(carry, inputs):
            h, c = carry
            gates, c_new, tanh_c = _gates(inputs[0] + ops.matmul(h, recurrent_kernel), c)
            h_new = gates[3] * tanh_c
            if masked:  # a padded step carries the state over
                h_new, c_new = ops.where(inputs[1], h_new, h), ops.where(inputs[1], c_new, c)
            return (h_new, c_new), (h_new, c_new, ops.concatenate(gates, -1), tanh_c)

        (h_last, c_last), (hs, cs, gates, tanh_cs) = backend.scan(
            forward_step, (h0, c0), (projected, *real), outputs=4)

        def backward(*upstream):
            if len(upstream) == 1:  # JAX passes one tuple, TensorFlow one argument per output
                upstream = upstream[0]
            d_outputs, d_h, d_c = (ops.zeros_like(x) if u is None else u
                                   for u, x in zip(upstream, (hs, h_last, c_last)))
            c_before = ops.concatenate([ops.expand_dims(c0, 0), cs[:-1]], 0)
            h_before = ops.concatenate([ops.expand_dims(h0, 0), hs[:-1]], 0)
            kernel_t = ops.transpose(recurrent_kernel)

            def backward_step(carry, inputs):
                d_h, d_c = carry
                d_out, gate, tanh_c, c_prev = inputs[:4]
                d_h = d_h + d_out
                i, f, g, o = ops.split(gate, 4, axis=-1)
                # A padded step gets no gradient and passes its carry on untouched.
                d_h_new, d_c_new = ((ops.where(inputs[4], d_h, 0.0),
                                     ops.where(inputs[4], d_c, 0.0)) if masked else (d_h, d_c))
                d_c_new = d_c_new + d_h_new * o * (1.0 - tanh_c * tanh_c)
                d_z = ops.concatenate([d_c_new * g * _sigmoid_grad(i),
                                       d_c_new * c_prev * _sigmoid_grad(f),
                                       d_c_new * i * (1.0 - g * g),
                                       d_h_new * tanh_c * _sigmoid_grad(o)], -1)
                d_h_before, d_c_before = ops.matmul(d_z, kernel_t), d_c_new * f
                if masked:
                    d_h_before = ops.where(inputs[4], d_h_before, d_h)
                    d_c_before = ops.where(inputs[4], d_c_before, d_c)
                return (d_h_before, d_c_before), (d_z,)

            (d_h0, d_c0), (d_projected,) = backend.scan(
                backward_step, (d_h, d_c), (d_outputs, gates, tanh_cs, c_before, *real),
                outputs=1, reverse=True)
            hidden = ops.shape(h0)[-1]
            d_recurrent_kernel = ops.matmul(ops.transpose(ops.reshape(h_before, (-1, hidden))),
                                            ops.reshape(d_projected, (-1, 4 * hidden)))
            return (d_projected, d_h0, d_c0, d_recurrent_kernel,
                    *(ops.zeros_like(m) for m in mask))

        return (hs, h_last, c_last), backward

    return recurrence


_recurrence = _recurrence_with_gradient(masked=False)
_masked_recurrence = _recurrence_with_gradient(masked=True)


class LSTM(layers.LSTM):
    """`keras.layers.LSTM` (return_sequences and return_state) with the recurrence above.

    Its class name is Keras's on purpose: Keras names a layer's weights in a weights file
    after its class, so model directories trained with `keras.layers.LSTM` still load.

    `context` (batch, width), when given, stands for the last `width` input features, the
    same at every step: its share of the input projection is computed once per sentence.
    Inputs narrower than the kernel with no context read zeros there, at no cost.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(units, return_sequences=True, return_state=True, **kwargs)

    def input_projection(self, inputs):
        """`inputs @ kernel + bias` for inputs (..., width), width <= the kernel's rows."""
        kernel = ops.convert_to_tensor(self.cell.kernel)
        return ops.matmul(inputs, kernel[:inputs.shape[-1]]) + self.cell.bias

    def context_projection(self, context):
        """The context's share of the input projection, (batch, 4H): constant per sentence."""
        kernel = ops.convert_to_tensor(self.cell.kernel)
        return ops.matmul(context, kernel[kernel.shape[0] - context.shape[-1]:])

    def step(self, inputs, states, context_projection=None, projected=None):
        """One step of the same LSTM (as `cell(x, states)`), for decoding: inputs (batch,
        width), states [h, c]; the context's share comes precomputed, and so may the
        inputs' (`projected`, `input_projection(inputs)`, given instead of the inputs).
        Returns h, [h, c]."""
        h, c = states
        if projected is None:
            projected = self.input_projection(inputs)
        z = projected + ops.matmul(h, self.cell.recurrent_kernel)
        if context_projection is not None:
            z = z + context_projection
        (_, _, _, o), c, tanh_c = _gates(z, c)
        h = o * tanh_c
        return h, [h, c]

    def call(self, sequences, initial_state=None, mask=None, training=False, context=None):
        if backend.name() == "tensorflow" and backend.accelerator() == "GPU":  # cuDNN
            missing = self.cell.kernel.shape[0] - sequences.shape[-1]
            if missing:
                batch, steps = ops.shape(sequences)[0], ops.shape(sequences)[1]
                filler = (ops.zeros((batch, steps, missing), sequences.dtype) if context is None
                          else ops.repeat(ops.expand_dims(context, 1), steps, axis=1))
                sequences = ops.concatenate([sequences, filler], -1)
            return super().call(sequences, initial_state, mask=mask, training=training)
        time_major = ops.transpose(sequences, (1, 0, 2))  # (steps, batch, width)
        projected = self.input_projection(time_major)  # (steps, batch, 4H)
        if context is not None:
            projected += ops.expand_dims(self.context_projection(context), 0)
        if initial_state is None:
            initial_state = self.get_initial_state(ops.shape(sequences)[0])
        steps_mask = (None if mask is None else
                      ops.expand_dims(ops.cast(ops.transpose(mask), projected.dtype), -1))
        # A read of the variable (a copy), not the variable: the recurrence differentiates
        # with respect to its arguments only.
        recurrent_kernel = ops.copy(self.cell.recurrent_kernel)
        outputs, h, c = lstm_recurrence(projected, initial_state[0], initial_state[1],
                                        recurrent_kernel, steps_mask)
        return ops.transpose(outputs, (1, 0, 2)), h, c
