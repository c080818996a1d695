"""The hand-written gradients: LSTM against keras.layers.LSTM (outputs, states,
gradients), and the cross-entropy against automatic differentiation."""

import keras
import numpy as np
import pytest
from keras import ops

from seq2seq_shared.model.lstm import LSTM


def _gradients(function, variables, inputs):
    """d(function)/d(variables and inputs), on whichever backend runs."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        inputs = [tf.convert_to_tensor(x) for x in inputs]
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            value = function(*inputs)
        return [np.asarray(g) for g in tape.gradient(value, list(variables) + inputs)]
    if keras.backend.backend() == "jax":
        import jax

        def stateless(values, *xs):
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                return function(*xs)

        grads = jax.grad(stateless, argnums=tuple(range(len(inputs) + 1)))(
            [v.value for v in variables], *inputs
        )
        return [np.asarray(g) for g in list(grads[0]) + list(grads[1:])]
    pytest.skip("gradients checked on TensorFlow and JAX")


@pytest.mark.parametrize("masked", [False, True])
def test_shared_lstm_matches_keras_lstm_forward_and_backward(masked):
    keras.utils.set_random_seed(3)
    batch, steps, width, units = 3, 5, 4, 6
    ours = LSTM(units)
    ours.build((None, None, width))
    reference = keras.layers.LSTM(units, return_sequences=True, return_state=True)
    reference.build((None, None, width))
    reference.set_weights(ours.get_weights())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, steps, width)).astype("float32")
    h0, c0 = (rng.normal(size=(batch, units)).astype("float32") for _ in range(2))
    mask = (np.arange(steps)[None] < np.array([[5], [3], [1]])) if masked else None
    # Weights on every output, so every gradient path (outputs, final h, final c) counts.
    w_out, w_h, w_c = (
        rng.normal(size=s).astype("float32")
        for s in [(batch, steps, units), (batch, units), (batch, units)]
    )

    def objective(layer):
        def value(x, h0, c0):
            outputs, h, c = layer(x, initial_state=[h0, c0], mask=mask)
            if masked:  # Keras leaves masked outputs unspecified; compare real steps only
                outputs = outputs * ops.expand_dims(ops.cast(mask, "float32"), -1)
            return ops.sum(outputs * w_out) + ops.sum(h * w_h) + ops.sum(c * w_c)

        return value

    for got, want in zip(
        ours(x, initial_state=[h0, c0], mask=mask),
        reference(x, initial_state=[h0, c0], mask=mask),
        strict=True,
    ):
        if masked and got.ndim == 3:
            got, want = (np.asarray(a) * mask[..., None] for a in (got, want))
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    got = _gradients(objective(ours), ours.trainable_variables, [x, h0, c0])
    want = _gradients(objective(reference), reference.trainable_variables, [x, h0, c0])
    assert len(got) == len(want) == 6  # kernel, recurrent kernel, bias, x, h0, c0
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_context_and_missing_inputs_equal_the_full_input():
    """A context vector stands for the last input features at every step; no context
    stands for zeros there."""
    keras.utils.set_random_seed(4)
    ours = LSTM(5)
    ours.build((None, None, 3 + 5))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 4, 3)).astype("float32")
    context = rng.normal(size=(2, 5)).astype("float32")
    tiled = np.concatenate([x, np.repeat(context[:, None], 4, axis=1)], -1)
    np.testing.assert_allclose(
        np.asarray(ours(x, context=context)[0]), np.asarray(ours(tiled)[0]), rtol=1e-5, atol=1e-6
    )
    zeros = np.concatenate([x, np.zeros((2, 4, 5), "float32")], -1)
    np.testing.assert_allclose(
        np.asarray(ours(x)[0]), np.asarray(ours(zeros)[0]), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("scatter", [True, False])  # the CPU's correction, and the GPU's
@pytest.mark.parametrize("rows", [(6,), (2, 3)])  # training's shape on TF, and on JAX
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_gradient_matches_automatic_differentiation(smoothing, rows, scatter):
    from seq2seq_shared.model.kernels import smoothed_cross_entropy

    rng = np.random.default_rng(2)
    logits = rng.normal(size=(*rows, 11)).astype("float32") * 3
    labels = rng.integers(0, 11, size=rows).astype("int32")
    weights = rng.normal(size=rows).astype("float32")  # distinct upstream per row

    def ours(x):
        loss, _ = smoothed_cross_entropy(x, labels, smoothing, scatter=scatter)
        return ops.sum(loss * weights)

    def reference(x):
        log_probs = ops.log_softmax(x, axis=-1)
        nll = -ops.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
        loss = (1 - smoothing) * nll - smoothing * ops.mean(log_probs, axis=-1)
        return ops.sum(loss * weights)

    np.testing.assert_allclose(float(ours(logits)), float(reference(logits)), rtol=1e-5)
    np.testing.assert_allclose(
        _gradients(ours, [], [logits])[0],
        _gradients(reference, [], [logits])[0],
        rtol=1e-4,
        atol=1e-6,
    )


def test_step_is_one_step_of_the_keras_cell():
    """Decoding's `step` (with the context's projection precomputed) is the cell's step."""
    keras.utils.set_random_seed(5)
    ours = LSTM(5)
    ours.build((None, None, 3 + 5))
    rng = np.random.default_rng(2)
    x, context = (
        rng.normal(size=(2, 3)).astype("float32"),
        rng.normal(size=(2, 5)).astype("float32"),
    )
    states = [rng.normal(size=(2, 5)).astype("float32") for _ in range(2)]
    got_h, (_, got_c) = ours.step(x, states, ours.context_projection(context))
    want_h, (_, want_c) = ours.cell(np.concatenate([x, context], -1), states)
    np.testing.assert_allclose(np.asarray(got_h), np.asarray(want_h), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got_c), np.asarray(want_c), rtol=1e-5, atol=1e-6)
