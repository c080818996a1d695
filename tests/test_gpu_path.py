"""The GPU path, checked on a CPU: `backend.on_gpu()` forced true sends the model down every
GPU-only branch (Keras's fused LSTM, the loss without `nonzero` or scatter), which must
compute the same loss and gradients as the CPU path. Keras's fused kernel (cuDNN) cannot
run here, so a reference LSTM with its signature stands in for it, and counts its calls."""

import keras
import keras.src.backend
import numpy as np
import pytest
from keras import ops

from seq2seq_shared import backend
from seq2seq_shared.config import ModelConfig
from seq2seq_shared.model.seq2seq import Seq2Seq


def reference_lstm(calls):
    """A plain-loop LSTM with the signature of `keras.src.backend.lstm` (Keras's fused,
    cuDNN, kernel), recording each call's mask in `calls`."""

    def lstm(
        inputs,
        h,
        c,
        mask,
        kernel,
        recurrent_kernel,
        bias,
        activation,
        recurrent_activation,
        return_sequences=False,
        go_backwards=False,
        unroll=False,
    ):
        calls.append(mask)
        outputs = []
        for t in range(inputs.shape[1]):
            z = ops.matmul(inputs[:, t], kernel) + ops.matmul(h, recurrent_kernel) + bias
            i, f, g, o = ops.split(z, 4, axis=-1)
            c_new = recurrent_activation(f) * c + recurrent_activation(i) * activation(g)
            h_new = recurrent_activation(o) * activation(c_new)
            output = h_new
            if mask is not None:  # a padded step carries the state over, outputs zeros
                real = ops.expand_dims(mask[:, t], -1)
                h_new, c_new = ops.where(real, h_new, h), ops.where(real, c_new, c)
                output = ops.where(real, output, 0.0)  # as cuDNN's does
            h, c = h_new, c_new
            outputs.append(output)
        return h, ops.stack(outputs, axis=1), [h, c]

    return lstm


def _model(role_signal="bias"):
    keras.utils.set_random_seed(11)
    config = ModelConfig(
        vocab_size=40,
        embedding_dim=8,
        hidden_size=12,
        dropout=0.0,
        attention="dot",
        role_signal=role_signal,
        feed_context=True,
        reverse_source=True,
    )
    model = Seq2Seq.from_model_config(config, 40, 40)
    model.label_smoothing = 0.1
    model.build()
    return model


def _batch():
    source = np.array([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0], [13, 0, 0, 0, 0]], "int32")
    target_input = np.array([[2, 14, 15, 16], [2, 17, 0, 0], [2, 18, 19, 0]], "int32")
    target_output = np.array([[14, 15, 16, 3], [17, 3, 0, 0], [18, 19, 3, 0]], "int32")
    return source, target_input, target_output


def _loss_and_gradients(model):
    """The training loss on `_batch()` and its gradients, one per trainable variable."""
    source, target_input, target_output = _batch()
    variables = model.trainable_variables

    def loss():
        states = model({"source": source, "target_input": target_input}, training=True)
        return model.compute_loss(y=target_output, y_pred=states)

    if backend.name() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = loss()
        return float(value), [np.asarray(g) for g in tape.gradient(value, variables)]
    if backend.name() == "jax":
        import jax

        def stateless(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                return loss()

        value, gradients = jax.jit(jax.value_and_grad(stateless))([v.value for v in variables])
        return float(value), [np.asarray(g) for g in gradients]
    pytest.skip("gradients checked on TensorFlow and JAX")


@pytest.mark.parametrize("role_signal", ["bias", "embedding"])
def test_forced_gpu_branch_gives_the_cpu_loss_and_gradients(monkeypatch, role_signal):
    model = _model(role_signal)
    cpu_loss, cpu_gradients = _loss_and_gradients(model)
    calls = []
    monkeypatch.setattr(backend, "accelerator", lambda: "GPU")
    monkeypatch.setattr(keras.src.backend, "lstm", reference_lstm(calls))
    assert backend.on_gpu() and not backend.gather_real_tokens()
    assert backend.scatter_label_gradient() == (backend.name() == "jax")
    gpu_loss, gpu_gradients = _loss_and_gradients(model)
    # TensorFlow hands both passes to the fused kernel; JAX's takes no mask, so only the
    # decoder's (unmasked) pass goes there, the encoder's stays on the project's loop.
    masks = [m is not None for m in calls]
    assert masks and (True in masks) == (backend.name() == "tensorflow") and False in masks
    np.testing.assert_allclose(gpu_loss, cpu_loss, rtol=1e-5)
    assert len(gpu_gradients) == len(cpu_gradients) == len(model.trainable_variables)
    for variable, got, want in zip(
        model.trainable_variables, gpu_gradients, cpu_gradients, strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6, err_msg=variable.path)


def test_forced_gpu_branch_falls_back_where_keras_declines(monkeypatch):
    """Without a GPU, Keras's own fused kernel raises NotImplementedError (its cuDNN
    checks): the model falls back to the project's recurrence, with the same results."""
    model = _model()
    cpu_loss, cpu_gradients = _loss_and_gradients(model)
    monkeypatch.setattr(backend, "accelerator", lambda: "GPU")
    assert backend.fused_lstm_kernel(masked=False) is not None
    original, declined = keras.src.backend.lstm, []

    def spy(*arguments, **keywords):  # Keras's kernel, watched: did it decline?
        try:
            return original(*arguments, **keywords)
        except NotImplementedError:
            declined.append(True)
            raise

    monkeypatch.setattr(keras.src.backend, "lstm", spy)
    gpu_loss, gpu_gradients = _loss_and_gradients(model)
    assert declined, "the fused kernel was never tried, so no fallback was exercised"
    np.testing.assert_allclose(gpu_loss, cpu_loss, rtol=1e-5)
    for got, want in zip(gpu_gradients, cpu_gradients, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)


def test_portable_graph_takes_no_gpu_branch(monkeypatch):
    monkeypatch.setattr(backend, "accelerator", lambda: "GPU")
    assert backend.on_gpu()
    with backend.portable_graph():
        assert not backend.on_gpu() and backend.fused_lstm_kernel(masked=False) is None
        assert backend.scatter_label_gradient()
    assert backend.on_gpu()


def test_export_writes_the_portable_path_on_a_gpu_machine(monkeypatch, trained, tmp_path):
    if backend.name() != "tensorflow":
        pytest.skip("export writes a TensorFlow SavedModel")
    from seq2seq_shared.decoding.export import export_saved_model
    from seq2seq_shared.model_dir import ModelDir

    calls = []
    monkeypatch.setattr(backend, "accelerator", lambda: "GPU")
    monkeypatch.setattr(keras.src.backend, "lstm", reference_lstm(calls))
    model, _, _ = ModelDir(trained).load_model()
    model({"source": np.array([[5, 6]], "int32"), "target_input": np.array([[2]], "int32")})
    assert calls, "the stand-in kernel is not reached: the test would prove nothing"
    calls.clear()
    export_saved_model(trained, tmp_path / "exported")
    assert not calls  # the traced graph holds the project's loop, not the fused kernel
