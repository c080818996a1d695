"""--precision: training under Keras's mixed-precision policies (loss scaling with float16),
validation and translation in float32, and checkpoints that move between precisions.
Tiny runs on the 200-pair corpus: 4 steps per epoch."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from seq2seq_shared.cli import main
from seq2seq_shared.training.run_dir import RunDir

pytestmark = pytest.mark.slow  # trains models or starts processes: the full run only

RUN = [
    "--embedding-dim",
    "16",
    "--hidden-size",
    "32",
    "--vocab-size",
    "120",
    "--batch-tokens",
    "256",
    "--quiet",
    "--no-tensorboard",
]


def train(corpus, model_dir, *options):
    arguments = [
        "train",
        corpus / "train.en",
        corpus / "train.de",
        "--model-dir",
        model_dir,
        "--valid",
        corpus / "train.en",
        corpus / "train.de",
        *RUN,
        *options,
    ]
    result = CliRunner().invoke(main, [str(a) for a in arguments], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return model_dir


def newest_checkpoint(model_dir):
    """(arrays, state) of the newest checkpoint."""
    return RunDir(model_dir).load_latest_checkpoint()


def groups(arrays) -> set[str]:
    return {key.split("/")[0] for key in arrays}


def saved_precision(model_dir) -> str:
    return json.loads((model_dir / "config.json").read_text(encoding="utf-8"))["training"][
        "precision"
    ]


@pytest.fixture(scope="module", params=["mixed_float16", "mixed_bfloat16"])
def mixed_run(request, numbers_corpus, tmp_path_factory):
    """(precision, model directory): one epoch with a validation, under a mixed policy."""
    model_dir = tmp_path_factory.mktemp(request.param) / "model"
    return request.param, train(
        numbers_corpus, model_dir, "--epochs", "1", "--precision", request.param
    )


def test_training_under_a_mixed_policy_gives_finite_losses(mixed_run):
    precision, model_dir = mixed_run
    arrays, state = newest_checkpoint(model_dir)
    assert state["step"] == 4 and state["finished"]
    [row] = state["history"]
    for name in ("train_loss", "valid_loss", "valid_bleu", "valid_chrf"):
        assert math.isfinite(row[name]), (name, row)
    assert all(np.isfinite(value).all() for value in arrays.values() if value.dtype.kind == "f")
    # Only float16 scales its loss; its Adam's variables are where a float32 run has them.
    assert groups(arrays) == (
        {"model", "optimizer", "loss_scale"}
        if precision == "mixed_float16"
        else {"model", "optimizer"}
    )
    assert arrays["optimizer/0000"] == 4  # Adam's step


def test_the_config_records_the_precision_and_the_policy_does_not_leak(mixed_run):
    import keras

    precision, model_dir = mixed_run
    assert saved_precision(model_dir) == precision
    assert keras.config.dtype_policy().name == "float32"  # restored after the run
    from seq2seq_shared.model_dir import ModelDir

    model, _, _ = ModelDir(model_dir).load_model()
    assert model.compute_dtype == "float32"
    assert {variable.dtype for variable in model.trainable_weights} == {"float32"}


def test_a_mixed_precision_model_translates_in_float32(mixed_run):
    """Loaded after the run (the policy restored: see above), it builds in float32 and
    translates, one line per line."""
    from seq2seq_shared.decoding.translator import Translator

    _, model_dir = mixed_run
    translator = Translator.from_model_dir(model_dir)
    assert translator.model.compute_dtype == "float32"
    outputs = translator.translate(["seven", "", "one hundred"])
    assert len(outputs) == 3 and outputs[1] == ""


def test_a_float32_checkpoint_resumes_under_mixed_float16_and_back(numbers_corpus, tmp_path):
    model_dir = tmp_path / "model"
    train(numbers_corpus, model_dir, "--epochs", "1")
    arrays, _ = newest_checkpoint(model_dir)
    assert groups(arrays) == {"model", "optimizer"}  # a plain Adam's, as before --precision

    train(numbers_corpus, model_dir, "--epochs", "2", "--precision", "mixed_float16")
    arrays, state = newest_checkpoint(model_dir)
    assert state["step"] == 8 and saved_precision(model_dir) == "mixed_float16"
    assert arrays["optimizer/0000"] == 8  # the float32 run's Adam, continued
    scale = float(arrays["loss_scale/0000"])
    assert math.isfinite(scale) and scale >= 1  # Keras's 2 ** 15, halved at each overflow
    assert all(
        math.isfinite(row["train_loss"]) and math.isfinite(row["valid_loss"])
        for row in state["history"]
    )

    train(numbers_corpus, model_dir, "--epochs", "3", "--precision", "float32")
    arrays, state = newest_checkpoint(model_dir)
    assert state["step"] == 12 and saved_precision(model_dir) == "float32"
    assert arrays["optimizer/0000"] == 12 and groups(arrays) == {"model", "optimizer"}
    assert "resumed from the checkpoint at step 8" in (model_dir / "train.log").read_text()


def test_precision_is_checked():
    from seq2seq_shared.config import TrainingConfig

    with pytest.raises(
        ValueError,
        match="precision must be one of float32, mixed_bfloat16, mixed_float16, not 'float16'",
    ):
        TrainingConfig(precision="float16")
