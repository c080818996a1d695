"""The moving average of the weights (--ema-decay): Keras keeps the average by hand's
formula, validation and the saved model read it while training follows the raw weights,
and without it nothing changes. (Exact resume with it: test_resume.py.)"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from seq2seq_shared.cli import main
from seq2seq_shared.config import TrainingConfig
from seq2seq_shared.model_dir import ModelDir
from seq2seq_shared.training import ema
from seq2seq_shared.training.run_dir import RunDir


def values(model) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v.value) for v in model.trainable_variables]


def trained_dense(ema_decay: float, steps: int = 5):
    """A small Dense model after `steps` Adam steps, with the raw weights after each."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    training = TrainingConfig(ema_decay=ema_decay)
    adam = ema.warmed_up(keras.optimizers.Adam) if ema_decay else keras.optimizers.Adam
    model.compile(optimizer=adam(0.1, **ema.optimizer_options(training)), loss="mse")
    data = np.random.default_rng(0)
    history = []
    for _ in range(steps):
        model.train_on_batch(data.normal(size=(4, 3)), data.normal(size=(4, 2)))
        history.append(values(model))
    return model, history


@pytest.mark.parametrize("ema_decay", [0.2, 0.999])
def test_inside_the_block_the_weights_are_the_moving_average_of_every_steps_weights(ema_decay):
    """By hand: the first update copies the weights, update n keeps min(decay, (1 + n) /
    (10 + n)) of the average (0.2: the decay itself; 0.999: the warm-up's 2/11, 3/12...)."""
    model, history = trained_dense(ema_decay, steps=6)
    expected = history[0]
    for n, weights in enumerate(history[1:], start=1):
        kept = min(ema_decay, (1 + n) / (10 + n))
        expected = [kept * a + (1 - kept) * w for a, w in zip(expected, weights, strict=True)]
    with ema.averaged_weights(model):
        inside = values(model)
    for average, by_hand in zip(inside, expected, strict=True):
        np.testing.assert_allclose(average, by_hand, rtol=1e-5, atol=1e-7)
    assert not np.allclose(inside[0], history[-1][0])  # not the raw weights
    for after, raw in zip(values(model), history[-1], strict=True):  # which come back exactly
        np.testing.assert_array_equal(after, raw)


def test_with_accumulated_batches_the_average_still_decays_by_the_decay_per_update():
    """Keras moves the average at every optimizer call: N calls per update, each by the
    N-th root of the update's decay."""
    rates = [float(ema.decay(n, 0.81, 2)) for n in (0, 1, 1000)]
    assert rates == pytest.approx([0.0, (2 / 11) ** 0.5, 0.9])


def test_the_raw_weights_come_back_when_the_block_raises():
    model, history = trained_dense(0.8)
    with pytest.raises(RuntimeError), ema.averaged_weights(model):
        raise RuntimeError("a diverged validation")
    for after, raw in zip(values(model), history[-1], strict=True):
        np.testing.assert_array_equal(after, raw)


def test_without_a_decay_the_optimizer_keeps_no_average_and_the_block_changes_nothing():
    assert ema.optimizer_options(TrainingConfig()) == {}
    model, history = trained_dense(0.0)
    assert not any("average" in v.path for v in model.optimizer.variables)
    with ema.averaged_weights(model):
        for inside, raw in zip(values(model), history[-1], strict=True):
            np.testing.assert_array_equal(inside, raw)


def test_a_run_saves_the_average_and_checkpoints_the_raw_weights_beside_it(
    numbers_corpus, tmp_path
):
    """Without --valid the run saves its latest weights at each epoch: with --ema-decay
    those are the averages (optimizer variables of the checkpoint), not the raw ones."""
    model_dir = tmp_path / "model"
    arguments = ["train", numbers_corpus / "train.en", numbers_corpus / "train.de"]
    arguments += ["--model-dir", model_dir, "--epochs", "2", "--ema-decay", "0.5", "--quiet"]
    arguments += ["--embedding-dim", "16", "--hidden-size", "32", "--vocab-size", "120"]
    arguments += ["--batch-tokens", "256", "--no-tensorboard"]
    result = CliRunner().invoke(main, [str(a) for a in arguments], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    saved = values(ModelDir(model_dir).load_model()[0])
    arrays, _ = RunDir(model_dir).load_latest_checkpoint()
    averages = [a for key, a in arrays.items() if key.startswith("optimizer/")]
    raw = [a for key, a in arrays.items() if key.startswith("model/")]

    def among(array, candidates):
        return any(c.shape == array.shape and np.array_equal(c, array) for c in candidates)

    assert all(among(array, averages) for array in saved)
    assert not any(among(array, raw) for array in saved if array.size > 1)


@pytest.mark.slow  # a fresh process under JAX
def test_under_jax_validation_reads_the_average_and_the_run_goes_on(numbers_corpus, tmp_path):
    """JAX's compiled steps donate (delete) their input arrays: validation must read
    copies of the averages, or the next checkpoint finds them deleted."""
    pytest.importorskip("jax")
    environment = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    corpus = [numbers_corpus / "train.en", numbers_corpus / "train.de"]
    arguments = ["train", *corpus, "--valid", *corpus, "--model-dir", tmp_path / "m"]
    arguments += ["--epochs", "2", "--ema-decay", "0.9", "--embedding-dim", "16"]
    arguments += ["--hidden-size", "32", "--vocab-size", "120", "--batch-tokens", "512"]
    command = [sys.executable, "-m", "seq2seq_shared.cli", *map(str, arguments), "--quiet"]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "jax" in (tmp_path / "m" / "train.log").read_text()
