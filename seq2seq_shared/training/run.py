"""A training run: the loop of teacher-forced steps, reports and checkpoints.

Runs are resumable and exact. A checkpoint (`checkpoint.py`) holds every variable and the
run's state (`state.py`): counters, learning-rate scale, best score, early stopping.
The batch order of epoch k is a function of (seed, k), so a resumed run skips the batches
already seen and then meets the same batches, with the same random numbers, as an
uninterrupted run. Validation is `validation.py`'s, the rows `reporting.py`'s.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import keras

from .. import backend
from ..config import Config
from ..data.batches import Batch, ParallelBatches, encode_pairs
from ..data.prepared import PreparedCorpus
from ..data.sampling import SubwordSampler
from ..data.tokenizer import Tokenizer
from . import checkpoint, compile_cache, parallel
from .accumulation import Accumulation
from .context import TrainingInterrupted, progress_bar, stop_requests
from .ema import averaged_weights
from .reporting import Reporter, UnreadLosses
from .run_dir import RunDir
from .state import RunState
from .steps import compile_for_training, make_batches, precision_policy, train_step
from .tensorboard import tensorboard_writer

logger = logging.getLogger(__name__)


class TrainingRun:
    """One run in one process; `run()` starts it, or resumes it from the newest checkpoint."""

    # Made by `_set_up`, before the loop reads them.
    model: Any
    batches: ParallelBatches
    reporter: Reporter
    tensorboard: Any

    def __init__(
        self,
        directory: RunDir,
        config: Config,
        prepared: PreparedCorpus,
        valid_pairs: tuple[list[str], list[str]] | None,
        data_sha256: dict[str, str],
        progress: bool,
    ):
        self.directory, self.config, self.training = directory, config, config.training
        self.prepared, self.valid_pairs = prepared, valid_pairs
        self.progress = progress
        self.state = RunState.fresh(config.training, data_sha256)
        self.stop_requests: list[int] = []
        self.tokenizer: Tokenizer | None = None
        self.validator: Any = None  # with a validation set
        self.accumulation: Accumulation | None = None  # with --accumulate-steps 2 or more
        self.checkpointed_step: int | None = None  # the last good checkpoint, for messages
        self.learning_rate: float | None = None  # the rate the optimizer holds now
        self.unread = UnreadLosses()  # read back every `sync_every` batches
        self.sync_every = 1
        self.started = time.perf_counter()  # minus the seconds of earlier processes

    # Set-up ------------------------------------------------------------------------------

    def run(self, resuming: bool) -> dict[str, Any]:
        self.sync_every = self.training.log_every or (50 if backend.on_gpu() else 1)
        self._set_up(resuming)
        self.tensorboard = (
            tensorboard_writer(self.directory.tensorboard_path)
            if self.training.tensorboard and self.directory.writes
            else None
        )
        self.started = time.perf_counter() - self.state.seconds
        try:
            with stop_requests() as self.stop_requests:
                self._train()
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()
        return self.state.summary()

    def _set_up(self, resuming: bool) -> None:
        """Seed, tokenizer, batches, model, optimizer and, when resuming, the checkpoint."""
        parts = set_up(self.directory, self.config, self.prepared, self.state, resuming)
        self.tokenizer, self.batches, self.model = parts.tokenizer, parts.batches, parts.model
        self.state, self.checkpointed_step = parts.state, parts.checkpointed_step
        if self.training.accumulate_steps > 1:
            self.accumulation = Accumulation(self.batches, self.training.accumulate_steps)
        if self.valid_pairs:
            self.validator = make_validator(
                self.directory, self.config, self.model, self.tokenizer, self.valid_pairs
            )
        self.reporter = Reporter(self)

    # The loop ----------------------------------------------------------------------------

    def _update_seconds(self) -> None:  # training time so far, earlier processes' included
        self.state.seconds = time.perf_counter() - self.started

    def _stop_reason(self) -> str | None:
        self._update_seconds()
        reason = self.state.stop_reason(self.training, validating=self.validator is not None)
        replicas = parallel.current()  # several processes stop together
        if replicas is not None and replicas.agreed(reason is not None) and reason is None:
            reason = "another process of the run stopped (its time limit)"
        return reason

    def _train(self) -> None:
        reason = self._stop_reason()
        while reason is None:
            if self._train_epoch():
                self.state.epoch += 1
                self.state.batch = 0
                if not (self.training.validate_every and self.validator):
                    self._report()
            reason = self._stop_reason()
        self._read_losses()
        if self.state.window.tokens:  # steps since the last report (a time limit hit)
            self._report()
        self.state.finished = reason
        self._checkpoint()
        _log_finish(reason, self.state, self.directory)

    def _train_epoch(self) -> bool:
        """Train until the epoch ends (True) or a stop condition holds (False)."""
        training, state = self.training, self.state
        epoch = state.epoch + 1
        self.batches.set_epoch(epoch)
        bar = progress_bar(
            len(self.batches), state.batch, f"epoch {epoch}/{training.epochs}", self.progress
        )
        try:
            for index in range(state.batch, len(self.batches)):
                self._check_stop_requests()
                stepped = self._step(self.batches.batch(index), index)
                state.batch = index + 1
                if len(self.unread) >= self.sync_every:
                    self._read_losses()
                    window = state.window
                    bar.set_postfix(
                        loss=f"{window.loss / window.tokens:.3f}",
                        tok_s=f"{window.tokens / window.seconds:.0f}",
                        refresh=False,
                    )
                bar.update()
                if not stepped:  # a batch inside an accumulation group
                    continue
                if (
                    training.validate_every
                    and self.validator
                    and state.step % training.validate_every == 0
                ):
                    self._report()
                elif training.checkpoint_every and state.step % training.checkpoint_every == 0:
                    self._checkpoint()
                if self._stop_reason() is not None and index + 1 < len(self.batches):
                    return False
            self._read_losses()
            return True
        finally:
            bar.close()

    def _step(self, batch: Batch, index: int) -> bool:
        """Train on the epoch's `index`-th batch; True if the optimizer stepped (always,
        unless batches are accumulated: then at the last batch of each group)."""
        started = time.perf_counter()
        rate = self.state.learning_rate(self.training)
        if rate != self.learning_rate:  # assigned only when it changes
            self.model.optimizer.learning_rate.assign(rate)
            self.learning_rate = rate
        accumulation = self.accumulation
        weight = None if accumulation is None else accumulation.loss_weight(index)
        logs = train_step(self.model, batch, weight)
        stepped = accumulation is None or accumulation.ends_step(index)
        if accumulation is not None:  # an epoch's last group, made whole
            for _ in range(accumulation.filler_calls(index)):
                train_step(self.model, accumulation.filler(), 0.0)
        seconds = time.perf_counter() - started
        self.unread.add(logs, weight or 1.0, batch.num_target_tokens, self.state.step + 1, seconds)
        self.state.step += stepped
        return stepped

    def _read_losses(self) -> None:
        """Read the unread batches' losses back from the device into the report window;
        the wait for the device counts as training time. A non-finite loss stops the run."""
        for loss, nll, tokens, step, seconds in self.unread.read():
            if not math.isfinite(loss):
                self._diverged(f"at epoch {self.state.epoch + 1}, step {step}: the loss is {loss}")
            self.state.window.add(loss, nll, tokens, seconds)

    def _checkpoint(self) -> None:
        self._read_losses()
        self._update_seconds()
        arrays = checkpoint.arrays_of(self.model)
        if not checkpoint.all_finite(arrays):
            self._diverged(f"by step {self.state.step}: the weights hold NaN or Inf")
        self.directory.save_checkpoint(arrays, self.state, keep=self.training.keep_checkpoints)
        self.checkpointed_step = self.state.step

    def _diverged(self, what: str) -> None:
        rate = self.state.learning_rate(self.training)
        raise _divergence(what, self.checkpointed_step, self.directory, rate, self.training)

    def _check_stop_requests(self) -> None:
        replicas = parallel.current()  # a signal to one process stops them all
        requested = bool(self.stop_requests)
        if not (requested if replicas is None else replicas.agreed(requested)):
            return
        number = self.stop_requests[0] if requested else signal.SIGTERM
        if self.state.step:
            self._checkpoint()
            saved = f"saved a checkpoint at step {self.state.step} in {self.directory}"
        else:
            saved = "no step was taken, so there is nothing to save"
        raise _interruption(number, saved)

    # Reports: validation, best model, learning-rate plateau, early stopping -------------

    def _report(self) -> None:
        self._read_losses()
        with averaged_weights(self.model):  # what validation scores and the run saves
            row = self.reporter.row()
            loss = row.get("valid_loss", 0.0)
            if not math.isfinite(loss):
                self._diverged(f"by step {self.state.step}: the validation loss is {loss}")
            self._update_seconds()
            self.reporter.record(row)
        self._checkpoint()  # the raw weights and the averages, to resume from


def _interruption(number: int, saved: str) -> TrainingInterrupted:
    return TrainingInterrupted(
        f"interrupted by {signal.Signals(number).name}; {saved}. Run the same "
        f"`seq2seq-shared train` command again to resume",
        number,
    )


def _divergence(
    what: str, checkpointed_step: int | None, directory: RunDir, rate: float, training
) -> FloatingPointError:
    good = (
        f"the last good checkpoint (step {checkpointed_step}) is kept in {directory}"
        if checkpointed_step
        else "no checkpoint was saved yet"
    )
    return FloatingPointError(
        f"training diverged {what}; {good}. Retry with a lower --learning-rate (now "
        f"{rate:g}), more --warmup-steps, or a smaller --clip-norm (now "
        f"{training.clip_norm:g}); the run resumes from that checkpoint"
    )


def _log_finish(reason: str, state: RunState, directory: RunDir) -> None:
    best = state.best
    counts = compile_cache.compile_counts()
    if counts:
        logger.info(
            "XLA programs this process: %d compiled, %d loaded from %s",
            counts["compiled"],
            counts["cached"],
            directory.compile_cache_path,
        )
    logger.info(
        "training finished: %s.%s Model: %s",
        reason,
        f" Best validation {best.metric} {best.value} at step {best.step}."
        if best.value is not None
        else "",
        directory,
    )


@dataclass
class RunParts:
    """What a run trains with, made by `set_up`."""

    tokenizer: Tokenizer
    batches: ParallelBatches
    model: Any
    state: RunState
    checkpointed_step: int | None


def set_up(
    directory: RunDir, config: Config, prepared: PreparedCorpus, state: RunState, resuming: bool
) -> RunParts:
    """Seed, tokenizer, batches, model and optimizer; when resuming, the checkpoint's
    values and state (`state` otherwise: the fresh one)."""
    training = config.training
    keras.utils.set_random_seed(training.seed)
    if training.deterministic:
        backend.enable_determinism()
    compile_cache.use_compile_cache(directory.compile_cache_path)
    logger.info(
        "%s on %d pairs with %s on %s (Keras backend %s)",
        "resuming training" if resuming else "training",
        len(prepared),
        config.to_dict(),
        backend.accelerator(),
        backend.name(),
    )
    tokenizer = prepared.tokenizer()
    directory.check_tokenizer(tokenizer, prepared.path, resuming)
    directory.save_run_config(config, tokenizer)  # unchanged on resume
    batches = make_batches(config, prepared.pairs(), shuffle=True)
    if training.subword_alpha:
        batches.sampler = SubwordSampler(
            tokenizer, training.subword_alpha, training.subword_nbest, training.seed
        )
    logger.info(
        "batches: %.1f%% of padded target slots hold real tokens",
        100 * batches.padding_efficiency,
    )
    model = _build_model(directory, config)
    logger.info("model: %d parameters, %d batches per epoch", model.count_params(), len(batches))
    checkpointed_step = None
    if resuming:
        state = directory.restore_checkpoint(model, state.data_sha256)
        checkpointed_step = state.step
        logger.info(
            "resumed from the checkpoint at step %d (epoch %d, batch %d)",
            state.step,
            state.epoch + 1,
            state.batch,
        )
        if state.fixed_shapes != batches.fixed_shapes:  # the run's own plan
            batches = batches.planned(state.fixed_shapes)
    replicas = parallel.current()
    if replicas is not None:  # followers resume on their own: the same point as the chief?
        replicas.check_same(state.step, "the step the run resumes from")
        replicas.check_same(len(batches), "the batches per epoch")
    state.fixed_shapes = batches.fixed_shapes
    return RunParts(tokenizer, batches, model, state, checkpointed_step)


def _build_model(directory: RunDir, config: Config):
    """The model of `config`, compiled for training in its precision (and, data parallel,
    in the strategy's scope)."""
    replicas = parallel.current()
    with (
        precision_policy(config.training.precision),
        replicas.scope() if replicas is not None else nullcontext(),
    ):
        model = directory.build_model(config)
        compile_for_training(model, config.training)
    return model


def make_validator(directory: RunDir, config: Config, model, tokenizer, valid_pairs):
    """The run's Validator. Validation runs in float32, as `translate` will: under a mixed
    policy, on a float32 copy of the model (decoding calls its layers' methods directly,
    where Keras's autocasting does not reach)."""
    from .validation import Validator

    float32_copy = None if config.training.precision == "float32" else directory.build_model(config)
    batches = make_batches(config, encode_pairs(tokenizer, *valid_pairs))
    sources, references = valid_pairs
    return Validator(
        model, tokenizer, config, sources, references, batches, float32_copy=float32_copy
    )
