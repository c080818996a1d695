"""--accumulate-steps N: one optimizer step over N batches equals one step on the batch N
times larger; a run accumulates, counts updates as steps and resumes exactly mid-group."""

import json
import signal

import keras
import numpy as np
import pytest
from test_resume import assert_same_run, invoke, train_arguments

from seq2seq_shared.config import ModelConfig, TrainingConfig
from seq2seq_shared.data.batches import Batch, pad
from seq2seq_shared.model.seq2seq import Seq2Seq
from seq2seq_shared.training.run import TrainingRun
from seq2seq_shared.training.steps import compile_for_training, train_step

pytestmark = pytest.mark.slow  # trains models or starts processes: the full run only

# Two batches of very different sizes (3 and 9 target tokens), so the mean of the two
# batch means is far from the mean over all 12 tokens.
SOURCES = [[[5, 6, 7], [8, 9]], [[10, 11, 12, 13], [14], [15, 16]]]
TARGETS = [[[17], []], [[18, 19, 20], [21], [22, 23]]]


def _batch(sources, targets):
    return Batch(
        source=pad(sources, 1),
        target_input=pad([[2, *t] for t in targets], 1),
        target_output=pad([[*t, 3] for t in targets], 1),
    )


def _trained(accumulate_steps, batches, weights):
    """The trainable weights after feeding `batches` with their loss `weights`."""
    keras.utils.set_random_seed(5)
    config = ModelConfig(vocab_size=30, embedding_dim=8, hidden_size=12, dropout=0.0)
    model = Seq2Seq.from_model_config(config, 30, 30)
    model.build()
    compile_for_training(
        model, TrainingConfig(accumulate_steps=accumulate_steps, learning_rate=0.01)
    )
    for batch, weight in zip(batches, weights, strict=True):
        train_step(model, batch, weight)
    return [np.asarray(v) for v in model.trainable_variables]


def test_mixed_float16_cannot_accumulate():
    with pytest.raises(ValueError, match="accumulate_steps above 1 needs --precision"):
        TrainingConfig(accumulate_steps=2, precision="mixed_float16")
    assert TrainingConfig(accumulate_steps=2, precision="mixed_bfloat16").accumulate_steps == 2


def test_two_accumulated_batches_equal_one_batch_twice_as_large():
    small = [_batch(s, t) for s, t in zip(SOURCES, TARGETS, strict=True)]
    tokens = [b.num_target_tokens for b in small]
    assert tokens == [3, 9]
    large = _batch(SOURCES[0] + SOURCES[1], TARGETS[0] + TARGETS[1])
    want = _trained(1, [large], [None])
    # The weights accumulation.py gives: N x each batch's share of the group's tokens.
    got = _trained(2, small, [2 * n / sum(tokens) for n in tokens])
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
    start = _trained(1, [], [])
    assert any(
        not np.allclose(s, w) for s, w in zip(start, want, strict=True)
    )  # the step moved them
    # Keras's plain accumulation (the mean of the batch means) is another step.
    plain = _trained(2, small, [None, None])
    assert any(
        not np.allclose(p, w, rtol=1e-5, atol=1e-7) for p, w in zip(plain, want, strict=True)
    )


def test_groups_weights_and_fillers_of_an_epoch():
    """7 batches in groups of 3: [0 1 2] [3 4 5] [6] + 2 empty calls; each group's weights
    sum to 3 (N x shares of the group's tokens)."""
    from seq2seq_shared.data.batches import ParallelBatches
    from seq2seq_shared.training.accumulation import Accumulation

    rng = np.random.default_rng(4)
    sources = [[5] * int(n) for n in rng.integers(1, 12, 70)]
    targets = [[6] * int(n) for n in rng.integers(1, 12, 70)]
    batches = ParallelBatches.from_lists(sources, targets, batch_tokens=128, seed=2)
    batches.set_epoch(3)
    assert len(batches) == 7
    accumulation = Accumulation(batches, 3)
    assert [accumulation.ends_step(i) for i in range(7)] == [False, False, True] * 2 + [True]
    assert [accumulation.filler_calls(i) for i in range(7)] == [0] * 6 + [2]
    tokens = [batches.batch(i).num_target_tokens for i in range(7)]
    assert [batches.target_tokens(i) for i in range(7)] == tokens
    for group in ([0, 1, 2], [3, 4, 5], [6]):
        weights = [accumulation.loss_weight(i) for i in group]
        assert sum(weights) == pytest.approx(3)
        assert weights == pytest.approx(
            [3 * tokens[i] / sum(tokens[j] for j in group) for i in group]
        )
    filler = accumulation.filler()
    assert filler.num_target_tokens == 0 and filler.source.shape[0] == 1


@pytest.fixture(scope="module")
def accumulated(numbers_corpus, tmp_path_factory):
    """2 epochs of 4 batches in groups of 3: per epoch a whole group and one of 1 batch."""
    model_dir = tmp_path_factory.mktemp("accumulated") / "model"
    result = invoke(
        train_arguments(numbers_corpus, model_dir, "--epochs", "2", "--accumulate-steps", "3")
    )
    assert result.exit_code == 0, result.output
    return model_dir


def test_a_run_counts_optimizer_updates_as_steps(accumulated):
    from seq2seq_shared.training.run_dir import RunDir

    arrays, state = RunDir(accumulated).load_latest_checkpoint()
    assert state["step"] == 4 and [row["step"] for row in state["history"]] == [2, 4]
    assert int(arrays["optimizer/0000"]) == 12  # Keras's calls: 3 per update, fillers too
    assert all(np.isfinite(row["train_loss"]) for row in state["history"])
    saved = json.loads((accumulated / "config.json").read_text())["training"]
    assert saved["accumulate_steps"] == 3


def test_interrupted_inside_a_group_then_resumed_equals_the_uninterrupted_run(
    accumulated, numbers_corpus, tmp_path, monkeypatch
):
    step = TrainingRun._step

    def step_then_signal(self, batch, index):
        stepped = step(self, batch, index)
        if self.state.epoch == 1 and index == 1:  # inside the 2nd epoch's first group
            signal.raise_signal(signal.SIGTERM)
        return stepped

    monkeypatch.setattr(TrainingRun, "_step", step_then_signal)
    model_dir = tmp_path / "model"
    arguments = train_arguments(
        numbers_corpus, model_dir, "--epochs", "2", "--accumulate-steps", "3"
    )
    result = invoke(arguments)
    assert result.exit_code == 128 + signal.SIGTERM
    monkeypatch.undo()
    result = invoke(arguments)
    assert result.exit_code == 0, result.output
    assert_same_run(model_dir, accumulated)
