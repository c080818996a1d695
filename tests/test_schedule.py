"""The learning-rate schedule and the stop conditions, by hand (pure Python)."""
import pytest

from seq2seq_shared.config import TrainingConfig
from seq2seq_shared.schedule import Schedule


def state_at(schedule, step=0, epoch=0):
    return {"step": step, "epoch": epoch, **schedule.initial_state()}


def test_warm_up_is_linear_then_flat():
    schedule = Schedule(TrainingConfig(learning_rate=0.01, warmup_steps=4), validating=True)
    rates = [schedule.learning_rate(state_at(schedule, step)) for step in range(6)]
    assert rates == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])


def test_plateaus_halve_the_rate_down_to_the_floor_and_patience_stops():
    training = TrainingConfig(learning_rate=0.01, warmup_steps=0, lr_patience=2, lr_decay=0.5,
                              min_learning_rate=0.003, patience=5, best_metric="bleu")
    schedule = Schedule(training, validating=True)
    state = state_at(schedule)
    assert schedule.record(state, 10.0) and state["best"]["value"] == 10.0
    assert not schedule.record(state, 9.0) and schedule.learning_rate(state) == 0.01
    assert not schedule.record(state, 10.0)  # equal is not better
    assert schedule.learning_rate(state) == pytest.approx(0.005)
    assert schedule.record(state, 11.0) and state["bad_validations"] == 0
    for _ in range(4):
        schedule.record(state, 1.0)
    assert schedule.learning_rate(state) == pytest.approx(0.003)  # 0.0025, floored
    assert schedule.stop_reason(state, 0.0) is None
    schedule.record(state, 1.0)
    assert "early stopping" in schedule.stop_reason(state, 0.0)


def test_loss_is_better_when_lower_and_limits_stop_the_run():
    schedule = Schedule(TrainingConfig(best_metric="loss", epochs=3, max_minutes=2),
                        validating=True)
    state = state_at(schedule)
    assert schedule.record(state, 3.0) and schedule.record(state, 2.5)
    assert not schedule.record(state, 2.6)
    assert schedule.stop_reason(state, 119.0) is None
    assert schedule.stop_reason(state, 120.0) == "time limit of 2 minutes reached"
    assert schedule.stop_reason({**state, "epoch": 3}, 0.0) == "3 epochs done"
    no_validation = Schedule(TrainingConfig(patience=1), validating=False)
    assert no_validation.stop_reason({**state, "bad_validations": 9}, 0.0) is None
