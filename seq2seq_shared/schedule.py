"""When to change the learning rate and when to stop: warm-up, plateaus, early stopping, limits.

Pure Python over the run's state dict (which checkpoints save), so a resumed run continues
the very same schedule.
"""
from __future__ import annotations

import logging
from typing import Any

from .config import TrainingConfig

logger = logging.getLogger(__name__)


class Schedule:
    def __init__(self, training: TrainingConfig, validating: bool):
        self.training, self.validating = training, validating

    def initial_state(self) -> dict[str, Any]:
        return {"lr_scale": 1.0,                # product of the plateau decays so far
                "bad_validations": 0,           # since the best, for early stopping
                "plateau_validations": 0,       # since the best or the last decay
                "best": {"metric": self.training.best_metric, "value": None, "step": None}}

    def learning_rate(self, state: dict[str, Any]) -> float:
        """The rate for the next step: linear warm-up, then the base rate scaled on plateaus."""
        training = self.training
        rate = max(training.learning_rate * state["lr_scale"], training.min_learning_rate)
        if training.warmup_steps:
            rate *= min(1.0, (state["step"] + 1) / training.warmup_steps)
        return rate

    def record(self, state: dict[str, Any], value: float) -> bool:
        """Note a validation score; True if it is the best so far (higher BLEU, lower loss)."""
        training, best = self.training, state["best"]
        higher_is_better = training.best_metric == "bleu"
        if best["value"] is None or (value > best["value"] if higher_is_better
                                     else value < best["value"]):
            best.update(value=value, step=state["step"])
            state["bad_validations"] = state["plateau_validations"] = 0
            return True
        state["bad_validations"] += 1
        state["plateau_validations"] += 1
        if training.lr_patience and state["plateau_validations"] >= training.lr_patience:
            state["lr_scale"] *= training.lr_decay
            state["plateau_validations"] = 0
            logger.info("validation %s has not improved for %d validation(s): learning rate "
                        "now %g", training.best_metric, training.lr_patience,
                        max(training.learning_rate * state["lr_scale"], training.min_learning_rate))
        return False

    def stop_reason(self, state: dict[str, Any], elapsed_seconds: float) -> str | None:
        """Why training should stop now, or None to go on."""
        training = self.training
        if state["epoch"] >= training.epochs:
            return f"{training.epochs} epochs done"
        if training.max_minutes and elapsed_seconds >= 60 * training.max_minutes:
            return f"time limit of {training.max_minutes:g} minutes reached"
        if training.patience and self.validating and state["bad_validations"] >= training.patience:
            return f"no improvement in {training.patience} validations (early stopping)"
        return None
