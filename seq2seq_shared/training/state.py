"""A training run's state, and the schedule's decisions made from it.

Everything a resumed run needs to continue exactly where the interrupted one stopped,
besides the variables: counters, the learning-rate plateau, early stopping, the best score,
the metrics since the last report and the history. Checkpoints save `to_dict()`; a resume
reads it back with `from_dict()` (the same keys as the untyped dict of earlier versions, so
their checkpoints resume too). Pure Python: the decisions are tested by hand.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from ..config import TrainingConfig

logger = logging.getLogger(__name__)


@dataclass
class Best:
    """The best validation score so far and the step that reached it."""

    metric: str  # "bleu" (higher is better) or "loss" (lower is better)
    value: float | None = None
    step: int | None = None

    def improved_by(self, value: float) -> bool:
        if self.value is None:
            return True
        return value > self.value if self.metric == "bleu" else value < self.value


@dataclass
class Window:
    """Training figures since the last report, summed per target token."""

    loss: float = 0.0  # label-smoothed loss x tokens
    nll: float = 0.0  # negative log-likelihood x tokens
    tokens: int = 0  # real target tokens (eos included)
    seconds: float = 0.0  # time in steps (validation and checkpoints excluded)

    def add(self, loss: float, nll: float, tokens: int, seconds: float) -> None:
        self.loss += loss * tokens
        self.nll += nll * tokens
        self.tokens += tokens
        self.seconds += seconds


@dataclass
class RunState:
    best: Best  # by best_metric: picks model.weights.h5, early stopping
    plateau_best: Best  # by plateau_metric: the learning-rate plateau
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches completed in the epoch in progress
    step: int = 0  # optimizer steps taken
    seconds: float = 0.0  # training time so far, resumes included
    finished: str | None = None  # why the run stopped, once it has
    lr_scale: float = 1.0  # product of the plateau decays so far
    bad_validations: int = 0  # since the best, for early stopping
    plateau_validations: int = 0  # since the plateau's best or the last decay
    window: Window = field(default_factory=Window)
    data_sha256: dict[str, str] = field(default_factory=dict)
    # How the training batches were planned (`ParallelBatches(fixed_shapes=...)`, JAX's
    # one shape per width): a resume keeps the plan its batch index counts in. Runs saved
    # before it had free shapes.
    fixed_shapes: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def fresh(cls, training: TrainingConfig, data_sha256: dict[str, str]) -> RunState:
        return cls(
            best=Best(training.best_metric),
            plateau_best=Best(training.plateau_metric),
            data_sha256=data_sha256,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        values = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        # Before plateau_metric, the plateau watched the best score itself.
        plateau = data.get("plateau_best", data["best"])
        return cls(
            **{
                **values,
                "best": Best(**data["best"]),
                "plateau_best": Best(**plateau),
                "window": Window(**data["window"]),
            }
        )

    def summary(self) -> dict[str, Any]:
        """What `train` returns: the last metrics row, why the run stopped, the best score."""
        last = self.history[-1] if self.history else {}
        return {**last, "finished": self.finished, "best": dataclasses.asdict(self.best)}

    # The schedule's decisions -----------------------------------------------------------

    def learning_rate(self, training: TrainingConfig, step: int | None = None) -> float:
        """The rate for the next step (or for step `step` + 1): linear warm-up, then the base
        rate scaled on plateaus."""
        rate = max(training.learning_rate * self.lr_scale, training.min_learning_rate)
        if training.warmup_steps:
            rate *= min(1.0, ((self.step if step is None else step) + 1) / training.warmup_steps)
        return rate

    def record(
        self, training: TrainingConfig, scores: dict[str, float], epochs_done: float | None = None
    ) -> bool:
        """Note a validation's scores ({"bleu": ..., "loss": ...}) at `epochs_done` (a
        fraction of an epoch counts; default: the epochs completed); True if it is the best
        so far by best_metric (higher BLEU, lower loss). The plateau watches plateau_metric:
        validation loss moves smoothly where BLEU dips by chance (issue 14: one such dip
        halved the rate and six more halvings followed, wasting a third of an hour). In the
        last `anneal_fraction` of the run's budget every validation decays the rate (none
        once the budget is spent: that validation ends the run)."""
        improved = self.best.improved_by(scores[self.best.metric])
        if improved:
            self.best.value, self.best.step = scores[self.best.metric], self.step
            self.bad_validations = 0
        else:
            self.bad_validations += 1
        plateau = self.plateau_best
        if plateau.improved_by(scores[plateau.metric]):
            plateau.value, plateau.step = scores[plateau.metric], self.step
            self.plateau_validations = 0
        else:
            self.plateau_validations += 1
            if training.lr_patience and self.plateau_validations >= training.lr_patience:
                self._decay(
                    training,
                    f"validation {plateau.metric} has not improved for "
                    f"{training.lr_patience} validation(s)",
                )
                return improved
        progress = self.progress(training, epochs_done)
        if training.anneal_fraction and 1 - training.anneal_fraction <= progress + 1e-9 < 1:
            self._decay(training, f"{progress:.0%} of the run's budget used")
        return improved

    def _decay(self, training: TrainingConfig, why: str) -> None:
        self.lr_scale *= training.lr_decay
        self.plateau_validations = 0
        rate = max(training.learning_rate * self.lr_scale, training.min_learning_rate)
        logger.info("%s: learning rate now %g", why, rate)

    def progress(self, training: TrainingConfig, epochs_done: float | None = None) -> float:
        """How far the run is towards its nearer limit: the epochs done (`epochs_done`, or
        the completed ones) of --epochs, or the training time of --max-minutes (0 to 1)."""
        done = (self.epoch if epochs_done is None else epochs_done) / training.epochs
        if training.max_minutes:
            done = max(done, self.seconds / (60 * training.max_minutes))
        return min(done, 1.0)

    def stop_reason(self, training: TrainingConfig, validating: bool) -> str | None:
        """Why training should stop now, or None to go on."""
        if self.epoch >= training.epochs:
            return f"{training.epochs} epochs done"
        if training.max_minutes and self.seconds >= 60 * training.max_minutes:
            return f"time limit of {training.max_minutes:g} minutes reached"
        if training.patience and validating and self.bad_validations >= training.patience:
            return f"no improvement in {training.patience} validations (early stopping)"
        return None
