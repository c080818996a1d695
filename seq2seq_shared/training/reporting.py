"""A run's reports: a metrics row per validation (or epoch), the best model kept, the
metrics file and TensorBoard written."""

from __future__ import annotations

import logging
import time
from typing import Any

from . import parallel
from .state import RunState, Window

logger = logging.getLogger(__name__)


class UnreadLosses:
    """Batches whose loss is still on the device: (logs, loss weight, target tokens,
    step, seconds), read back in groups, so a GPU does not wait for the host at every
    step."""

    def __init__(self):
        self.rows: list[tuple[dict, float, int, int, float]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, logs: dict, weight: float, tokens: int, step: int, seconds: float) -> None:
        self.rows.append((logs, weight, tokens, step, seconds))

    def read(self) -> list[tuple[float, float, int, int, float]]:
        """(loss, nll, target tokens, step, seconds) of each unread batch, now on the
        host; the wait for the device counts as the last batch's training time."""
        if not self.rows:
            return []
        started = time.perf_counter()
        rows = [
            (float(logs["loss"]) / weight, float(logs["nll"]), tokens, step, seconds)
            for logs, weight, tokens, step, seconds in self.rows
        ]
        self.rows = []
        rows[-1] = (*rows[-1][:4], rows[-1][4] + time.perf_counter() - started)
        return rows


class Reporter:
    """Makes and records the rows of one run; `row()` validates, `record()` keeps."""

    def __init__(self, run):
        """`run`: the TrainingRun (its state, settings, directory, model and validator)."""
        self.run = run

    def row(self) -> dict[str, Any]:
        """The metrics row of now: the training window's figures and the validation's."""
        run = self.run
        state = run.state
        # The rate of the last step, also in a resumed process that has not stepped yet.
        last_rate = run.learning_rate or state.learning_rate(
            run.training, step=max(0, state.step - 1)
        )
        row = _training_row(state, len(run.batches), last_rate)
        if run.validator:
            row.update(run.validator.validate())
        return row

    def record(self, row: dict[str, Any]) -> None:
        """The row into the history, the log, the metrics file and TensorBoard; the
        weights saved where they are the best (or, without validation, the latest)."""
        run, state = self.run, self.run.state
        row["minutes"] = round(state.seconds / 60, 2)
        state.history.append(row)
        state.window = Window()
        logger.info("step %d: %s", state.step, ", ".join(f"{k}={v}" for k, v in row.items()))
        self._track_best(row)
        run.directory.save_metrics(state.history)
        if run.tensorboard is not None:
            run.tensorboard.scalars(
                state.step, {k: float(v) for k, v in row.items() if k not in ("epoch", "step")}
            )

    def _save_weights(self) -> None:
        with parallel.outside():  # the chief alone writes
            self.run.directory.save_weights(self.run.model)

    def _track_best(self, row: dict[str, Any]) -> None:
        run = self.run
        if not run.validator:
            self._save_weights()  # the latest is the one to use
            return
        scores = {"bleu": row["valid_bleu"], "loss": row["valid_loss"]}
        if run.state.record(run.training, scores, epochs_done=row["epoch"]):
            self._save_weights()
            logger.info(
                "new best validation %s: %s (saved)", run.state.best.metric, run.state.best.value
            )


def _training_row(state: RunState, batches_per_epoch: int, learning_rate: float) -> dict[str, Any]:
    """The training half of a metrics row: where the run is, and the window's figures."""
    from ..decoding.evaluate import perplexity

    window = state.window
    row: dict[str, Any] = {
        "epoch": round(state.epoch + state.batch / batches_per_epoch, 3),
        "step": state.step,
        "learning_rate": learning_rate,
    }
    if window.tokens:
        row.update(
            train_loss=round(window.loss / window.tokens, 4),
            train_ppl=perplexity(window.nll / window.tokens),
            target_tokens_per_second=round(window.tokens / window.seconds),
        )
    return row
