"""A training run: the loop of teacher-forced steps, reports and checkpoints, and its set-up.

Runs are resumable and exact. A checkpoint (`checkpoint.py`) holds every variable and the
run's state (`run_state.py`): counters, learning-rate scale, best score, early stopping.
The batch order of epoch k is a function of (seed, k), so a resumed run skips the batches
already seen and then meets the same batches, with the same random numbers, as an
uninterrupted run. Validation is `validation.py`'s; the directory's files `model_dir.py`'s.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from ..config import Config, TrainingConfig
from ..data.batches import Batch, ParallelBatches, encode_pairs, read_parallel, within_lengths
from ..data.encoded import EncodedPairs
from ..data.files import file_sha256
from ..data.prepared import PreparedCorpus, PrepareSettings, prepare
from ..data.tokenizer import Tokenizer
from . import checkpoint, parallel
from .accumulation import Accumulation
from .context import TrainingInterrupted, log_to, progress_bar, stop_requests
from .parallel import Cluster
from .run_dir import FollowerDir, RunDir
from .state import RunState, Window

logger = logging.getLogger(__name__)


def train(
    source_path: Path,
    target_path: Path | None,
    model_dir: Path | str,
    config: Config,
    valid_source_path: Path | None = None,
    valid_target_path: Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    cluster: Cluster | None = None,
) -> dict[str, Any]:
    """Train a model into `model_dir`, resuming the run already there; returns the last metrics.

    The corpus: text files `source_path` / `target_path`, which are prepared into the model
    directory first (`prepared.py`: checked, tokenized, encoded once), or with
    `target_path=None`, a directory that `prepare` wrote. `cluster`: data parallel over
    several devices or processes (`parallel.py`).
    """
    valid_paths = (
        (valid_source_path, valid_target_path)
        if valid_source_path is not None and valid_target_path is not None
        else None
    )
    replicas = parallel.start(cluster or Cluster())  # before any model
    try:
        if replicas is not None and replicas.processes > 1 and target_path is not None:
            raise ValueError(
                "several processes train on a prepared corpus, which each reads: "
                "run `seq2seq-shared prepare SOURCE TARGET PREPARED` once, then "
                "`seq2seq-shared train PREPARED ...` in every process"
            )
        if (
            replicas is not None
            and replicas.strategy is not None
            and (config.training.accumulate_steps > 1 or config.training.precision != "float32")
        ):
            raise ValueError(
                "--devices under TensorFlow trains in float32 without "
                "--accumulate-steps (those combinations are untested there); "
                "use KERAS_BACKEND=jax for them"
            )
        directory = (
            RunDir(model_dir) if replicas is None or replicas.chief else FollowerDir(model_dir)
        )  # only the chief writes
        created = directory.create()  # fail now, not after the work
        try:
            with directory.lock():
                directory.remove_temporaries()
                return _run(
                    directory, config, source_path, target_path, valid_paths, overwrite, progress
                )
        except BaseException:
            if created is not None:
                directory.remove_if_unused(created)
            raise
    finally:
        parallel.stop()


def _run(
    directory: RunDir,
    config: Config,
    source_path: Path,
    target_path: Path | None,
    valid_paths: tuple[Path, Path] | None,
    overwrite: bool,
    progress: bool,
) -> dict[str, Any]:
    """Check the data, prepare the directory (resume, refuse or start), run."""
    prepared = None
    if target_path is None:
        prepared = PreparedCorpus(source_path)
        config = _with_vocabulary_of(prepared, config)
    valid_pairs = read_parallel(*valid_paths) if valid_paths else None
    resuming = directory.prepare(config, overwrite)
    with log_to(directory.log_path):
        if prepared is None:
            prepared = _prepare_text(directory, source_path, target_path, config, resuming)
        data_sha256 = dict(prepared.data_sha256)
        if valid_paths:
            data_sha256.update(
                valid_source=file_sha256(Path(valid_paths[0])),
                valid_target=file_sha256(Path(valid_paths[1])),
            )
        run = TrainingRun(directory, config, prepared, valid_pairs, data_sha256, progress)
        return run.run(resuming)


def _prepare_text(
    directory: RunDir, source_path: Path, target_path: Path, config: Config, resuming: bool
) -> PreparedCorpus:
    """The text corpus prepared into the model directory, or already there: a resume, or
    a restart before the first checkpoint, reads it instead of the corpus."""
    settings = PrepareSettings.of(config)
    path = directory.prepared_path
    if path.exists() and not PreparedCorpus.is_prepared(path):
        raise ValueError(
            f"{path}: in the way of the run's prepared corpus, and not one "
            f"itself; move it out of the model directory"
        )
    existing = None
    if PreparedCorpus.is_prepared(path):
        try:
            existing = PreparedCorpus(path)
        except ValueError as error:  # damaged: prepared again below
            logger.warning("%s; preparing the corpus again", error)
    # A resume may pass another sample size: the run's SentencePiece model exists.
    if existing is not None and existing.settings == (
        dataclasses.replace(settings, sample_lines=existing.settings.sample_lines)
        if resuming
        else settings
    ):
        changed = existing.changed(source_path, target_path)
        if not changed:
            logger.info("reading the corpus as prepared in %s (%d pairs)", path, len(existing))
            return existing
        if resuming:  # refused before its prepared data is replaced
            raise ValueError(
                f"{directory} was trained on other data ({', '.join(changed)} "
                f"changed since the run began); pass the same files to "
                f"resume, --overwrite to start over, or a new --model-dir"
            )
    # A run saved before prepared data existed resumes with its own tokenizer.
    tokenizer = directory.load_tokenizer() if resuming else None
    logger.info("preparing %s / %s in %s", source_path, target_path, path)
    return prepare(source_path, target_path, path, settings, tokenizer=tokenizer, overwrite=True)


def _with_vocabulary_of(prepared: PreparedCorpus, config: Config) -> Config:
    """`config` with the vocabulary settings the prepared corpus was encoded with."""
    settings = prepared.settings
    vocabulary = {
        "vocab_size": settings.vocab_size,
        "joint_vocab": settings.joint_vocab,
        "sentencepiece_model_type": settings.model_type,
        "sentencepiece_sample_lines": settings.sample_lines,
    }
    if not settings.joint_vocab:
        vocabulary["share_embeddings"] = False
    overridden = {
        name: value
        for name, value in vocabulary.items()
        if getattr(config.model, name, getattr(config.training, name, None)) != value
    }
    if overridden:
        logger.warning(
            "%s was prepared with %s: the run uses them (prepare again to change them)",
            prepared.path,
            ", ".join(f"{k}={v}" for k, v in overridden.items()),
        )
    return config.updated(vocabulary)


@contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Keras's global dtype policy set to `precision` (config.PRECISIONS) inside the block,
    restored after it. A layer keeps the policy current when it is made, and `compile`
    wraps the optimizer for loss scaling by the model's, so building and compiling the
    model in the block is enough; outside it, models (a float32 copy for validation,
    the next run in the process, tests) are built as usual."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def compile_for_training(model, training: TrainingConfig) -> None:
    """Adam with global-norm clipping, built now so checkpoints can hold its variables; the
    loss's label smoothing (a training setting, not part of the model's shape). Under
    mixed_float16 Keras wraps the Adam in a `LossScaleOptimizer` (checkpoint.py)."""
    import keras

    model.label_smoothing = training.label_smoothing
    replicas = parallel.current()
    adam = (
        keras.optimizers.Adam
        if replicas is None or replicas.strategy is None
        else parallel.mirrored_adam()
    )  # clips the replicas' summed gradient
    model.compile(
        optimizer=adam(
            learning_rate=training.learning_rate,
            global_clipnorm=training.clip_norm or None,
            gradient_accumulation_steps=(
                training.accumulate_steps if training.accumulate_steps > 1 else None
            ),
        )
    )
    model.optimizer.build(model.trainable_variables)


def train_step(model, batch: Batch, loss_weight: float | None = None) -> dict[str, Any]:
    """One optimizer call on one batch (the compiled step), its loss scaled by
    `loss_weight` if given (accumulation.py); returns loss and nll."""
    from .. import backend

    step = backend.compiled_step(model, training=True, replicas=parallel.current())
    return step(batch.source, batch.target_input, batch.target_output, loss_weight)


def _batches(config: Config, pairs: EncodedPairs, shuffle: bool = False) -> ParallelBatches:
    """Training or validation batches: pairs over the length limits (pieces) dropped;
    with one shape per width where the backend compiles per shape."""
    from .. import backend

    training = config.training
    index = within_lengths(pairs, (config.model.max_source_length, training.max_target_length))
    batches = ParallelBatches(
        pairs,
        batch_tokens=training.batch_tokens,
        multiple=backend.shape_multiple(),
        seed=training.seed,
        shuffle=shuffle,
        fixed_shapes=not backend.dynamic_shapes(),
        index=index,
    )
    replicas = parallel.current()
    if replicas is not None:  # every device gets rows
        batches.row_multiple = replicas.devices
    return batches


class TrainingRun:
    """One run in one process; `run()` starts it, or resumes it from the newest checkpoint."""

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
        self.model = self.batches = self.validator = self.tensorboard = None
        self.accumulation: Accumulation | None = None  # with --accumulate-steps 2 or more
        self.checkpointed_step: int | None = None  # the last good checkpoint, for messages
        self.learning_rate: float | None = None  # the rate the optimizer holds now
        # Batches whose loss is still on the device: (logs, loss weight, target tokens,
        # step, seconds), read back every `sync_every` batches, so a GPU does not wait for
        # the host at every step.
        self.unread: list[tuple[dict, float, int, int, float]] = []
        self.sync_every = 1
        self.started = time.perf_counter()  # minus the seconds of earlier processes

    # Set-up ------------------------------------------------------------------------------

    def run(self, resuming: bool) -> dict[str, Any]:
        from .. import backend

        self._set_up(resuming)
        self.tensorboard = (
            backend.tensorboard_writer(self.directory.tensorboard_path)
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
        import keras

        from .. import backend

        training = self.training
        self.sync_every = training.log_every or (50 if backend.on_gpu() else 1)
        keras.utils.set_random_seed(training.seed)
        if training.deterministic:
            backend.enable_determinism()
        backend.use_compile_cache(self.directory.compile_cache_path)
        logger.info(
            "%s on %d pairs with %s on %s (Keras backend %s)",
            "resuming training" if resuming else "training",
            len(self.prepared),
            self.config.to_dict(),
            backend.accelerator(),
            backend.name(),
        )
        self.tokenizer = self.prepared.tokenizer()
        if resuming and self.directory.load_tokenizer().serialized() != self.tokenizer.serialized():
            raise ValueError(
                f"{self.prepared.path} was encoded with another SentencePiece "
                f"model than the run in {self.directory}; pass the data it was "
                f"trained on, --overwrite to start over, or a new --model-dir"
            )
        self.directory.save_run_config(self.config, self.tokenizer)  # unchanged on resume
        self.batches = _batches(self.config, self.prepared.pairs(), shuffle=True)
        logger.info(
            "batches: %.1f%% of padded target slots hold real tokens",
            100 * self.batches.padding_efficiency,
        )
        replicas = parallel.current()  # data parallel: build in the strategy's scope
        with (
            precision_policy(training.precision),
            replicas.scope() if replicas is not None else nullcontext(),
        ):
            self.model = self.directory.build_model(self.config)
            compile_for_training(self.model, training)
        logger.info(
            "model: %d parameters, %d batches per epoch",
            self.model.count_params(),
            len(self.batches),
        )
        if resuming:
            self.state = self.directory.restore_checkpoint(self.model, self.state.data_sha256)
            self.checkpointed_step = self.state.step
            logger.info(
                "resumed from the checkpoint at step %d (epoch %d, batch %d)",
                self.state.step,
                self.state.epoch + 1,
                self.state.batch,
            )
            if self.state.fixed_shapes != self.batches.fixed_shapes:  # the run's own plan
                self.batches = self.batches.planned(self.state.fixed_shapes)
        if replicas is not None:  # followers resume on their own: the same point as the chief?
            replicas.check_same(self.state.step, "the step the run resumes from")
            replicas.check_same(len(self.batches), "the batches per epoch")
        self.state.fixed_shapes = self.batches.fixed_shapes
        if training.accumulate_steps > 1:
            self.accumulation = Accumulation(self.batches, training.accumulate_steps)
        if self.valid_pairs:
            from .validation import Validator

            # Validation runs in float32, as `translate` will: under a mixed policy, on a
            # float32 copy of the model (decoding calls its layers' methods directly, where
            # Keras's autocasting does not reach).
            float32_copy = (
                None if training.precision == "float32" else self.directory.build_model(self.config)
            )
            self.validator = Validator(
                self.model,
                self.tokenizer,
                self.config,
                *self.valid_pairs,
                _batches(self.config, encode_pairs(self.tokenizer, *self.valid_pairs)),
                float32_copy=float32_copy,
            )

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
        best = self.state.best
        from .. import backend

        counts = backend.compile_counts()
        if counts:
            logger.info(
                "XLA programs this process: %d compiled, %d loaded from %s",
                counts["compiled"],
                counts["cached"],
                self.directory.compile_cache_path,
            )
        logger.info(
            "training finished: %s.%s Model: %s",
            reason,
            f" Best validation {best.metric} {best.value} at step {best.step}."
            if best.value is not None
            else "",
            self.directory,
        )

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
        self.unread.append(
            (
                logs,
                weight or 1.0,
                batch.num_target_tokens,
                self.state.step + 1,
                time.perf_counter() - started,
            )
        )
        self.state.step += stepped
        return stepped

    def _read_losses(self) -> None:
        """Read the unread batches' losses back from the device into the report window;
        the wait for the device counts as training time. A non-finite loss stops the run."""
        if not self.unread:
            return
        started = time.perf_counter()
        rows = [
            (float(logs["loss"]) / weight, float(logs["nll"]), tokens, step, seconds)
            for logs, weight, tokens, step, seconds in self.unread
        ]
        self.unread = []
        rows[-1] = (*rows[-1][:4], rows[-1][4] + time.perf_counter() - started)
        for loss, nll, tokens, step, seconds in rows:
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
        good = (
            f"the last good checkpoint (step {self.checkpointed_step}) is kept in {self.directory}"
            if self.checkpointed_step
            else "no checkpoint was saved yet"
        )
        raise FloatingPointError(
            f"training diverged {what}; {good}. Retry with a lower --learning-rate (now "
            f"{self.state.learning_rate(self.training):g}), more --warmup-steps, or a smaller "
            f"--clip-norm (now {self.training.clip_norm:g}); the run resumes from that "
            f"checkpoint"
        )

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
        raise TrainingInterrupted(
            f"interrupted by {signal.Signals(number).name}; {saved}. Run the same "
            f"`seq2seq-shared train` command again to resume",
            number,
        )

    # Reports: validation, best model, learning-rate plateau, early stopping -------------

    def _report(self) -> None:
        self._read_losses()
        state = self.state
        # The rate of the last step, also in a resumed process that has not stepped yet.
        last_rate = self.learning_rate or state.learning_rate(
            self.training, step=max(0, state.step - 1)
        )
        row = _training_row(state, len(self.batches), last_rate)
        if self.validator:
            row.update(self.validator.validate())
            if not math.isfinite(row["valid_loss"]):
                self._diverged(f"by step {state.step}: the validation loss is {row['valid_loss']}")
        self._update_seconds()
        row["minutes"] = round(state.seconds / 60, 2)
        state.history.append(row)
        state.window = Window()
        logger.info("step %d: %s", state.step, ", ".join(f"{k}={v}" for k, v in row.items()))
        self._track_best(row)
        self.directory.save_metrics(state.history)
        if self.tensorboard is not None:
            self.tensorboard.scalars(
                state.step, {k: float(v) for k, v in row.items() if k not in ("epoch", "step")}
            )
        self._checkpoint()

    def _save_weights(self) -> None:
        with parallel.outside():  # the chief alone writes
            self.directory.save_weights(self.model)

    def _track_best(self, row: dict[str, Any]) -> None:
        if not self.validator:
            self._save_weights()  # the latest is the one to use
            return
        if self.state.record(self.training, {"bleu": row["valid_bleu"], "loss": row["valid_loss"]}):
            self._save_weights()
            logger.info(
                "new best validation %s: %s (saved)", self.state.best.metric, self.state.best.value
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
