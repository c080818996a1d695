"""The LSTM layer the model shares: Keras's LSTM with a faster recurrence, same weights.

Keras's generic loop multiplies each step's input by the kernel inside the recurrence and
leaves the backward pass to automatic differentiation of the loop, which keeps every
intermediate and does T skinny matmuls for each weight gradient. This `LSTM` instead

- projects the inputs of all time steps in one matmul (`x @ kernel + bias`) before the loop,
  so the loop does only `h @ recurrent_kernel` and the gates;
- runs the recurrence through `kernels.lstm_recurrence`, whose hand-written backward pass
  computes the gates' gradients in one reverse loop and each kernel gradient in ONE matmul.

The maths and the variables (`cell.kernel`, `cell.recurrent_kernel`, `cell.bias`, gate
order i, f, c, o) are Keras's, so `cell(x, states)` still runs one step of the same LSTM,
and the tests check both passes against `keras.layers.LSTM`. It is written in `keras.ops`
alone and runs under TensorFlow and JAX; where `backend.fused_lstm_kernel()` offers one (a
GPU), Keras's fused cuDNN kernel runs instead, under Keras's own conditions for it.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from .. import backend
from .kernels import lstm_gates, lstm_recurrence


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
        return ops.matmul(inputs, kernel[: inputs.shape[-1]]) + self.cell.bias

    def context_projection(self, context):
        """The context's share of the input projection, (batch, 4H): constant per sentence."""
        kernel = ops.convert_to_tensor(self.cell.kernel)
        return ops.matmul(context, kernel[kernel.shape[0] - context.shape[-1] :])

    def step(self, inputs, states, context_projection=None, projected=None, gate_bias=None):
        """One step of the same LSTM (as `cell(x, states)`), for decoding: inputs (batch,
        width), states [h, c]; the context's share comes precomputed, and so may the
        inputs' (`projected`, `input_projection(inputs)`, given instead of the inputs).
        `gate_bias` (4H,), if given, is added to the gates (a role signal, roles.py).
        Returns h, [h, c]."""
        h, c = states
        if projected is None:
            projected = self.input_projection(inputs)
        z = projected + ops.matmul(h, self.cell.recurrent_kernel)
        for extra in (context_projection, gate_bias):
            if extra is not None:
                z = z + extra
        (_, _, _, o), c, tanh_c = lstm_gates(z, c)
        h = o * tanh_c
        return h, [h, c]

    def call(
        self, sequences, initial_state=None, mask=None, training=False, context=None, gate_bias=None
    ):
        fused = backend.fused_lstm_kernel(
            masked=mask is not None, dtype=keras.backend.standardize_dtype(sequences.dtype)
        )
        if fused is not None:
            try:
                return self._fused(fused, sequences, initial_state, mask, context, gate_bias)
            except NotImplementedError:  # Keras declined (its conditions for cuDNN)
                pass
        time_major = ops.transpose(sequences, (1, 0, 2))  # (steps, batch, width)
        projected = self.input_projection(time_major)  # (steps, batch, 4H)
        if context is not None:
            projected += ops.expand_dims(self.context_projection(context), 0)
        if gate_bias is not None:
            projected += gate_bias
        if initial_state is None:
            initial_state = self.get_initial_state(ops.shape(sequences)[0])
        steps_mask = (
            None
            if mask is None
            else ops.expand_dims(ops.cast(ops.transpose(mask), projected.dtype), -1)
        )
        # A read of the variable (a copy), not the variable: the recurrence differentiates
        # with respect to its arguments only.
        recurrent_kernel = ops.copy(self.cell.recurrent_kernel)
        outputs, h, c = lstm_recurrence(
            projected, initial_state[0], initial_state[1], recurrent_kernel, steps_mask
        )
        return ops.transpose(outputs, (1, 0, 2)), h, c

    def _fused(self, kernel_function, sequences, initial_state, mask, context, gate_bias):
        """The same LSTM through Keras's fused kernel (`backend.fused_lstm_kernel`), which
        reads the full input and one bias: the context (or zeros) fills the input's
        missing features, and the role's gate bias joins the layer's bias."""
        batch, steps = ops.shape(sequences)[0], ops.shape(sequences)[1]
        missing = self.cell.kernel.shape[0] - sequences.shape[-1]
        if missing:
            filler = (
                ops.zeros((batch, steps, missing), sequences.dtype)
                if context is None
                else ops.repeat(ops.expand_dims(context, 1), steps, axis=1)
            )
            sequences = ops.concatenate([sequences, filler], -1)  # (batch, steps, width)
        if initial_state is None:
            initial_state = self.get_initial_state(batch)
        bias = ops.convert_to_tensor(self.cell.bias)
        if gate_bias is not None:
            bias = bias + gate_bias
        _, outputs, (h, c) = kernel_function(
            sequences,
            initial_state[0],
            initial_state[1],
            mask,
            kernel=ops.convert_to_tensor(self.cell.kernel),
            recurrent_kernel=ops.convert_to_tensor(self.cell.recurrent_kernel),
            bias=bias,
            activation=self.cell.activation,
            recurrent_activation=self.cell.recurrent_activation,
            return_sequences=True,
        )
        return outputs, h, c
