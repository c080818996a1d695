"""Nothing lost: exact resume after Ctrl-C, SIGTERM and kill -9; divergence; refusals."""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seq2seq_shared.cli import main
from seq2seq_shared.model_dir import ModelDir
from seq2seq_shared.training.run import TrainingRun
from seq2seq_shared.training.run_dir import RunDir

pytestmark = pytest.mark.slow  # trains models or starts processes: the full run only

ROOT = Path(__file__).resolve().parent.parent

# 4 batches per epoch on the 200-pair corpus; a checkpoint every 3 steps and every epoch.
RUN = [
    "--embedding-dim",
    "16",
    "--hidden-size",
    "32",
    "--vocab-size",
    "120",
    "--batch-tokens",
    "256",
    "--dropout",
    "0.2",
    "--checkpoint-every",
    "3",
    "--quiet",
    "--no-tensorboard",
]


def train_arguments(corpus, model_dir, *extra):
    return [
        str(a)
        for a in (
            "train",
            corpus / "train.en",
            corpus / "train.de",
            "--model-dir",
            model_dir,
            "--valid",
            corpus / "train.en",
            corpus / "train.de",
            *RUN,
            *extra,
        )
    ]


def invoke(arguments):
    return CliRunner().invoke(main, arguments, catch_exceptions=False)


def final_state(model_dir):
    """(arrays, state) of the newest checkpoint: every model and optimizer variable."""
    return RunDir(model_dir).load_latest_checkpoint()


def assert_same_run(model_dir, reference_dir):
    arrays, state = final_state(model_dir)
    reference_arrays, reference_state = final_state(reference_dir)
    assert state["step"] == reference_state["step"] and state["finished"]
    assert sorted(arrays) == sorted(reference_arrays)
    for key in arrays:  # bitwise: TensorFlow runs with deterministic kernels
        np.testing.assert_array_equal(arrays[key], reference_arrays[key], err_msg=key)
    timing = {"minutes", "target_tokens_per_second"}
    rows = [{k: v for k, v in row.items() if k not in timing} for row in state["history"]]
    assert rows == [
        {k: v for k, v in row.items() if k not in timing} for row in reference_state["history"]
    ]


def signal_at(monkeypatch, at_step: int, signal_number: int) -> None:
    """Deliver `signal_number` to this process right after optimizer step `at_step`."""
    step = TrainingRun._step

    def step_then_signal(self, batch, index):
        stepped = step(self, batch, index)
        if self.state.step == at_step:
            signal.raise_signal(signal_number)  # what Ctrl-C or `kill` delivers
        return stepped

    monkeypatch.setattr(TrainingRun, "_step", step_then_signal)


def kill_9_at(at_step: int, moment: str, arguments: list[str]) -> None:
    """Run `seq2seq-shared arguments` in a process that kill -9s itself (tests/kill_at.py)."""
    killed = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "kill_at.py"), str(at_step), moment, *arguments],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr


def resume_in_a_new_process(arguments: list[str]) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "seq2seq_shared.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stderr


@pytest.fixture(scope="module")
def reference(numbers_corpus, tmp_path_factory):
    """An uninterrupted 3-epoch run (12 steps)."""
    model_dir = tmp_path_factory.mktemp("reference") / "model"
    result = invoke(train_arguments(numbers_corpus, model_dir, "--epochs", "3"))
    assert result.exit_code == 0, result.output
    return model_dir


# With --log-every 3 the losses are read back in threes (as on a GPU): the same run.
@pytest.mark.parametrize(
    "signal_number, at_step, options",
    [(signal.SIGINT, 5, []), (signal.SIGTERM, 8, ["--log-every", "3"])],
)
def test_interrupted_then_resumed_run_equals_an_uninterrupted_one(
    signal_number, at_step, options, reference, numbers_corpus, tmp_path, monkeypatch
):
    signal_at(monkeypatch, at_step, signal_number)
    model_dir = tmp_path / "model"
    arguments = train_arguments(numbers_corpus, model_dir, "--epochs", "3", *options)
    result = invoke(arguments)
    assert result.exit_code == 128 + signal_number
    assert f"saved a checkpoint at step {at_step}" in result.output
    assert "Run the same `seq2seq-shared train` command again to resume" in result.output
    assert json.loads((model_dir / "training_state.json").read_text())["step"] == at_step

    monkeypatch.undo()
    result = invoke(arguments)
    assert result.exit_code == 0, result.output
    assert f"resumed from the checkpoint at step {at_step}" in (model_dir / "train.log").read_text()
    assert_same_run(model_dir, reference)


def test_kill_9_at_random_moments_then_resume_ends_as_an_uninterrupted_run(
    reference, numbers_corpus, tmp_path
):
    model_dir = tmp_path / "model"
    arguments = train_arguments(numbers_corpus, model_dir, "--epochs", "3")
    command = [sys.executable, "-m", "seq2seq_shared.cli", *arguments]
    moments = random.Random(4).sample([x / 2 for x in range(4, 24)], 4)  # 2-12 s after start
    kills = after_a_checkpoint = 0
    for moment in moments:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(moment)
        if process.poll() is None:
            process.kill()
            kills += 1
        process.wait()
        directory = RunDir(model_dir)
        if directory.checkpoints():  # the newest published checkpoint is complete and loads
            assert directory.load_latest_checkpoint()[1]["step"] == directory.checkpoints()[-1][0]
            after_a_checkpoint += 1
    assert kills >= 2, "the runs ended before they could be killed; lengthen them"
    # (On a slow host every kill could land before the first checkpoint: then the resume
    # from one was not exercised.)
    assert after_a_checkpoint >= 1, "no kill came after a checkpoint; kill later"
    resume_in_a_new_process(arguments)
    assert_same_run(model_dir, reference)
    assert not [p for p in model_dir.rglob(".*.tmp-*")], "temporary files left behind"

    from seq2seq_shared.decoding.translator import Translator

    assert len(Translator.from_model_dir(model_dir).translate(["seven", "", "twelve"])) == 3


@pytest.mark.parametrize(
    "poisoned_after, message, good_step, options",
    [
        (5, "at epoch 2, step 6: the loss is nan", 4, []),  # caught by the next step's loss
        # Losses read back every 2 steps (as on a GPU): the same step is named.
        (5, "at epoch 2, step 6: the loss is nan", 4, ["--log-every", "2"]),
        (4, "by step 4: the validation loss is nan", 3, []),
    ],
)  # caught by the epoch's validation
def test_divergence_stops_with_advice_and_keeps_the_last_good_checkpoint(
    poisoned_after, message, good_step, options, numbers_corpus, tmp_path, monkeypatch
):
    step = TrainingRun._step

    def step_then_poison(self, batch, index):
        stepped = step(self, batch, index)
        if self.state.step == poisoned_after:  # as if an update had blown the weights up
            embeddings = self.model.source_embedding.embeddings
            embeddings.assign(np.full(embeddings.shape, np.nan, dtype="float32"))
        return stepped

    monkeypatch.setattr(TrainingRun, "_step", step_then_poison)
    model_dir = tmp_path / "model"
    result = CliRunner().invoke(
        main, train_arguments(numbers_corpus, model_dir, "--epochs", "3", *options)
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"training diverged {message}" in result.output
    assert f"last good checkpoint (step {good_step})" in result.output
    assert "--learning-rate" in result.output and "--clip-norm" in result.output
    arrays, state = final_state(model_dir)
    assert state["step"] == good_step
    assert all(np.isfinite(value).all() for value in arrays.values() if value.dtype.kind == "f")


def test_a_different_run_in_the_model_directory_is_refused_with_the_way_out(
    reference, numbers_corpus, tmp_path
):
    result = CliRunner().invoke(
        main, train_arguments(numbers_corpus, reference, "--epochs", "3", "--hidden-size", "24")
    )
    assert result.exit_code == 1
    assert "hidden_size is 32 there, 24 now" in result.output
    assert "--overwrite" in result.output and "new --model-dir" in result.output

    other = tmp_path / "other.en"
    other.write_text((numbers_corpus / "train.en").read_text().replace("seven", "eight"))
    changed = train_arguments(numbers_corpus, reference, "--epochs", "3")
    changed[1] = str(other)
    result = CliRunner().invoke(main, changed)
    assert result.exit_code == 1 and "trained on other data (train_source" in result.output

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    result = CliRunner().invoke(main, train_arguments(numbers_corpus, foreign, "--epochs", "1"))
    assert result.exit_code == 1 and "not a seq2seq-shared model directory" in result.output
    assert (foreign / "holiday.jpg").exists()


def test_finished_run_is_not_retrained_more_epochs_extend_it_and_overwrite_restarts(
    reference, numbers_corpus, tmp_path
):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(reference, model_dir)
    result = invoke(train_arguments(numbers_corpus, model_dir, "--epochs", "3"))
    assert result.exit_code == 0 and json.loads(result.stdout.splitlines()[-1])["step"] == 12
    result = invoke(train_arguments(numbers_corpus, model_dir, "--epochs", "4"))
    assert result.exit_code == 0 and json.loads(result.stdout.splitlines()[-1])["step"] == 16
    assert len(RunDir(model_dir).checkpoints()) == 3  # --keep-checkpoints
    result = invoke(train_arguments(numbers_corpus, model_dir, "--epochs", "1", "--overwrite"))
    assert result.exit_code == 0 and json.loads(result.stdout.splitlines()[-1])["step"] == 4


def test_damaged_model_directories_are_refused_naming_the_file(reference, numbers_corpus, tmp_path):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(reference, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    for command in (
        ["translate", "--model-dir", str(model_dir)],
        train_arguments(numbers_corpus, model_dir, "--epochs", "4"),
    ):
        result = CliRunner().invoke(main, command, input="seven\n")
        assert result.exit_code == 1
        assert "config.json: model directory format 99" in result.output
    (model_dir / "config.json").write_text('{"format_version": 1, "model": ')
    result = CliRunner().invoke(main, ["translate", "--model-dir", str(model_dir)], input="x\n")
    assert result.exit_code == 1 and "config.json: corrupt" in result.output


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(
    reference, numbers_corpus, tmp_path, caplog
):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(reference, model_dir)
    (step, newest), (previous, _) = (
        RunDir(model_dir).checkpoints()[-1],
        RunDir(model_dir).checkpoints()[-2],
    )
    newest.write_bytes(newest.read_bytes()[:1000])  # e.g. a disk that lost the tail
    result = invoke(train_arguments(numbers_corpus, model_dir, "--epochs", "3"))
    assert result.exit_code == 0, result.output
    assert f"{newest.name}: unreadable" in caplog.text
    assert f"resumed from the checkpoint at step {previous}" in caplog.text
    assert json.loads(result.stdout.splitlines()[-1])["step"] == step == 12


@pytest.mark.parametrize(
    "at_step, moment", [(4, "after-save"), (8, "during-save"), (6, "during-save")]
)
def test_kill_9_at_a_validation_or_checkpoint_boundary_then_resume_is_exact(
    at_step, moment, reference, numbers_corpus, tmp_path
):
    """Steps 4 and 8 end epochs: validation, best weights, then the checkpoint; step 6 is a
    periodic checkpoint. The resumed run must end bit-identical all the same."""
    model_dir = tmp_path / "model"
    arguments = train_arguments(numbers_corpus, model_dir, "--epochs", "3")
    kill_9_at(at_step, moment, arguments)
    newest = RunDir(model_dir).checkpoints()[-1][0]
    assert newest == at_step if moment == "after-save" else newest < at_step
    resume_in_a_new_process(arguments)
    assert_same_run(model_dir, reference)
    assert not [p for p in model_dir.rglob(".*.tmp-*")], "temporary files left behind"


@pytest.fixture(scope="module")
def averaged_reference(numbers_corpus, tmp_path_factory):
    """An uninterrupted 3-epoch run with --ema-decay."""
    model_dir = tmp_path_factory.mktemp("averaged") / "model"
    result = invoke(train_arguments(numbers_corpus, model_dir, *AVERAGED))
    assert result.exit_code == 0, result.output
    return model_dir


AVERAGED = ("--epochs", "3", "--ema-decay", "0.7")


def assert_same_saved_model(model_dir, reference_dir):
    saved, reference = (
        ModelDir(directory).load_model()[0].get_weights()
        for directory in (model_dir, reference_dir)
    )
    for value, expected in zip(saved, reference, strict=True):
        np.testing.assert_array_equal(value, expected)


def test_a_run_with_a_moving_average_resumes_exactly(
    averaged_reference, numbers_corpus, tmp_path, monkeypatch
):
    """--ema-decay: the averages are optimizer variables, so the checkpoint carries them
    and validation (which reads them) and the saved model go on as if never stopped."""
    signal_at(monkeypatch, 5, signal.SIGINT)
    model_dir = tmp_path / "model"
    arguments = train_arguments(numbers_corpus, model_dir, *AVERAGED)
    assert invoke(arguments).exit_code == 128 + signal.SIGINT
    monkeypatch.undo()
    assert invoke(arguments).exit_code == 0
    assert_same_run(model_dir, averaged_reference)
    assert_same_saved_model(model_dir, averaged_reference)


def test_kill_9_right_after_a_validation_with_a_moving_average_then_resume_is_exact(
    averaged_reference, numbers_corpus, tmp_path
):
    """Step 8 ends epoch 2: validation on the averages, then the checkpoint, which must
    hold the raw weights (not the averages validation swapped in)."""
    model_dir = tmp_path / "model"
    arguments = train_arguments(numbers_corpus, model_dir, *AVERAGED)
    kill_9_at(8, "after-save", arguments)
    resume_in_a_new_process(arguments)
    assert_same_run(model_dir, averaged_reference)
    assert_same_saved_model(model_dir, averaged_reference)
