"""The run state and the schedule's decisions made from it, by hand (pure Python)."""

import json

import pytest

from seq2seq_shared.config import TrainingConfig
from seq2seq_shared.training.state import RunState


def state_at(training, step=0, epoch=0):
    state = RunState.fresh(training, {"train_source": "abc"})
    state.step, state.epoch = step, epoch
    return state


def test_warm_up_is_linear_then_flat():
    training = TrainingConfig(learning_rate=0.01, warmup_steps=4)
    rates = [state_at(training, step).learning_rate(training) for step in range(6)]
    assert rates == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])


def test_plateaus_halve_the_rate_down_to_the_floor_and_patience_stops():
    training = TrainingConfig(
        learning_rate=0.01,
        warmup_steps=0,
        lr_patience=2,
        lr_decay=0.5,
        min_learning_rate=0.003,
        patience=5,
        best_metric="bleu",
        plateau_metric="bleu",
    )
    state = state_at(training)
    assert state.record(training, {"bleu": 10.0, "loss": 0.0}) and state.best.value == 10.0
    assert (
        not state.record(training, {"bleu": 9.0, "loss": 0.0})
        and state.learning_rate(training) == 0.01
    )
    assert not state.record(training, {"bleu": 10.0, "loss": 0.0})  # equal is not better
    assert state.learning_rate(training) == pytest.approx(0.005)
    assert state.record(training, {"bleu": 11.0, "loss": 0.0}) and state.bad_validations == 0
    for _ in range(4):
        state.record(training, {"bleu": 1.0, "loss": 0.0})
    assert state.learning_rate(training) == pytest.approx(0.003)  # 0.0025, floored
    assert state.stop_reason(training, validating=True) is None
    state.record(training, {"bleu": 1.0, "loss": 0.0})
    assert "early stopping" in state.stop_reason(training, validating=True)


def test_loss_is_better_when_lower_and_limits_stop_the_run():
    training = TrainingConfig(best_metric="loss", epochs=3, max_minutes=2, patience=1)
    state = state_at(training)
    assert state.record(training, {"bleu": 0.0, "loss": 3.0}) and state.record(
        training, {"bleu": 0.0, "loss": 2.5}
    )
    assert state.best.step == 0 and state.best.metric == "loss"
    state.seconds = 119.0
    assert state.stop_reason(training, validating=False) is None
    assert not state.record(training, {"bleu": 0.0, "loss": 2.6})
    assert state.stop_reason(training, validating=False) is None  # no validation: no patience
    state.seconds = 120.0
    assert state.stop_reason(training, validating=True) == "time limit of 2 minutes reached"
    state.epoch = 3
    assert state.stop_reason(training, validating=True) == "3 epochs done"


def test_the_state_survives_json_and_reads_the_untyped_dicts_of_format_1():
    training = TrainingConfig()
    state = state_at(training, step=7, epoch=1)
    state.window.add(loss=2.0, nll=1.5, tokens=10, seconds=0.5)
    state.record(training, {"bleu": 12.5, "loss": 2.0})
    state.history.append({"step": 7, "valid_bleu": 12.5})
    assert RunState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    old = {
        "epoch": 1,
        "batch": 3,
        "step": 7,
        "seconds": 4.0,
        "finished": None,
        "lr_scale": 0.5,
        "bad_validations": 1,
        "plateau_validations": 0,
        "best": {"metric": "bleu", "value": 3.0, "step": 4},
        "window": {"loss": 1.0, "nll": 1.0, "tokens": 2, "seconds": 0.1},
        "data_sha256": {"train_source": "x"},
        "history": [],
        "checkpoint": "checkpoints/x",
    }
    restored = RunState.from_dict(old)
    assert restored.lr_scale == 0.5 and restored.best.step == 4 and restored.window.tokens == 2
    # Before plateau_metric the plateau watched the best score: its best is that one.
    assert restored.plateau_best == restored.best
    # A run saved before the batch plan was recorded had free shapes: its batch index
    # counts in that plan, which a resume (even under JAX) keeps.
    assert restored.fixed_shapes is False
    assert restored.to_dict() == {
        **{k: v for k, v in old.items() if k != "checkpoint"},
        "plateau_best": old["best"],
        "fixed_shapes": False,
    }


def test_a_chance_dip_of_bleu_does_not_decay_the_rate_when_the_plateau_watches_loss():
    """The recipe's failure on a faster host: one noisy BLEU dip (13.36 -> 12.74) while
    validation loss still fell halved the rate. Watching loss, the rate holds until loss
    itself stops improving; BLEU still picks the best model."""
    rates = {}
    for plateau_metric in ("bleu", "loss"):
        training = TrainingConfig(
            learning_rate=0.01,
            warmup_steps=0,
            lr_patience=1,
            best_metric="bleu",
            plateau_metric=plateau_metric,
        )
        state = state_at(training)
        for bleu, loss in ((12.0, 2.10), (13.36, 2.05), (12.74, 2.02), (14.0, 2.00)):
            state.record(training, {"bleu": bleu, "loss": loss})
        assert state.best.value == 14.0
        rates[plateau_metric] = state.learning_rate(training)
        state.record(training, {"bleu": 14.5, "loss": 2.01})  # loss turns: overfitting
        rates[plateau_metric + " after loss rose"] = state.learning_rate(training)
    assert rates == pytest.approx(
        {"bleu": 0.005, "bleu after loss rose": 0.005, "loss": 0.01, "loss after loss rose": 0.005}
    )


def test_in_the_last_part_of_the_budget_every_validation_decays_the_rate_once():
    """--anneal-fraction 0.25 with a 60-minute limit: from minute 45 each validation halves
    the rate (once, also where the plateau halves it too); before, only plateaus do."""
    training = TrainingConfig(
        learning_rate=0.01, warmup_steps=0, lr_patience=1, max_minutes=60, anneal_fraction=0.25
    )
    state = state_at(training)
    rates = []
    for minutes, loss in ((30, 2.0), (44.9, 1.9), (45, 1.8), (50, 1.85), (55, 1.7), (60, 1.6)):
        state.seconds = 60 * minutes
        state.record(training, {"bleu": 0.0, "loss": loss})
        rates.append(state.learning_rate(training))
    # minute 60, the time limit: that validation ends the run, so it decays nothing
    assert rates == pytest.approx([0.01, 0.01, 0.005, 0.0025, 0.00125, 0.00125])
    untimed = TrainingConfig(warmup_steps=0, epochs=10, anneal_fraction=0.7)
    state = state_at(untimed, epoch=2)  # without a time limit: the epochs done of 10
    state.record(untimed, {"bleu": 0.0, "loss": 1.0}, epochs_done=2.99)
    assert state.lr_scale == 1.0
    state.record(untimed, {"bleu": 0.0, "loss": 0.9}, epochs_done=3.0)  # 1 - 0.7, to 1e-9
    assert state.lr_scale == 0.5
    state.record(untimed, {"bleu": 0.0, "loss": 0.8})  # the completed epochs: 2 of 10
    assert state.lr_scale == 0.5
    off = TrainingConfig(warmup_steps=0, epochs=8)
    state = state_at(off, epoch=8)
    state.record(off, {"bleu": 0.0, "loss": 1.0})
    assert state.lr_scale == 1.0
