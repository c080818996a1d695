"""A training run: checked data, SentencePiece, model, teacher forcing, validation, checkpoints.

Runs are resumable and exact. A checkpoint holds every model variable (dropout's random
seed states included), the optimizer's variables, and the run's counters: epoch, batch
within the epoch, step, learning-rate scale, best score, early-stopping counters. The batch
order of epoch k is a function of (seed, k), so a resumed run skips the batches already
seen and then meets the same batches, with the same random numbers, as an uninterrupted run.
"""
from __future__ import annotations

import logging
import math
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config, TrainingConfig
from .data import Batch, ParallelBatches, read_parallel
from .model_dir import ModelDir, file_sha256
from .schedule import Schedule
from .tokenizer import Tokenizer, train_sentencepiece

logger = logging.getLogger(__name__)

SAMPLE_TRANSLATIONS = 3


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM: a checkpoint was saved; `exit_code` is 128 + the signal number."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number


def train(source_path: Path, target_path: Path, model_dir: Path | str, config: Config,
          valid_source_path: Path | None = None, valid_target_path: Path | None = None,
          overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train a model into `model_dir`, resuming the run already there; returns the last metrics."""
    directory = ModelDir(model_dir)
    paths = {"train_source": source_path, "train_target": target_path}
    if valid_source_path is not None and valid_target_path is not None:
        paths.update(valid_source=valid_source_path, valid_target=valid_target_path)
    created = directory.create()  # fail now, not after the work
    try:
        with directory.lock():
            directory.remove_temporaries()
            # The data check runs before --overwrite deletes anything.
            # check.length_excess: words, and 10 characters per word
            max_length = max(config.model.max_source_length, config.training.max_target_length)
            sources, targets = read_parallel(source_path, target_path, max_length)
            valid = (read_parallel(valid_source_path, valid_target_path)
                     if "valid_source" in paths else None)
            data_sha256 = {name: file_sha256(Path(path)) for name, path in paths.items()}
            resuming = _prepare(directory, config, data_sha256, overwrite)
            with _log_to(directory.log_path):
                run = TrainingRun(directory, config, sources, targets, valid, data_sha256,
                                  progress)
                return run.run(resuming)
    except BaseException:
        if created:
            directory.remove_if_unused()
        raise


def _prepare(directory: ModelDir, config: Config, data_sha256: dict[str, str],
             overwrite: bool) -> bool:
    """Make `directory` ready; True if it holds a run to resume. Refuses a mismatched one."""
    if overwrite:
        directory.clear()
        return False
    if directory.has_config():
        saved = directory.read_config()  # refuses a corrupt file or an unknown format version
        differences = _differences(saved, config)
        if differences:
            raise ValueError(
                f"{directory} holds a run with other settings ({'; '.join(differences)}). To "
                f"resume it, repeat its settings (they are in {directory.path / 'config.json'}); "
                f"to start over there, pass --overwrite; or choose a new --model-dir")
        if directory.checkpoints():
            return True
    elif not directory.is_empty() and not directory.holds_only_run_leftovers():
        raise ValueError(f"{directory}: not empty and not a seq2seq-shared model directory; "
                         f"choose a new --model-dir (or pass --overwrite to train there anyway)")
    directory.clear()  # a run killed before its first checkpoint: start it again
    return False


def _differences(saved: Config, requested: Config) -> list[str]:
    before, now = saved.to_dict(), requested.to_dict()
    found = []
    for section, values in before.items():
        for name, value in values.items():
            if section == "training" and name in TrainingConfig.RESUMABLE:
                continue
            if now[section][name] != value:
                found.append(f"{name} is {value!r} there, {now[section][name]!r} now")
    return found


def compile_for_training(model, training: TrainingConfig) -> None:
    """Adam with global-norm clipping, built now so checkpoints can hold its variables."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(
        learning_rate=training.learning_rate, global_clipnorm=training.clip_norm or None))
    model.optimizer.build(model.trainable_variables)


def train_step(model, batch: Batch) -> dict[str, Any]:
    """One optimizer step on one batch (the compiled step); returns loss and nll."""
    from . import backend

    step = backend.compiled_step(model, training=True)
    return step(batch.source, batch.target_input, batch.target_output)


class TrainingRun:
    """One run in one process; `run()` starts it, or resumes it from the newest checkpoint."""

    def __init__(self, directory: ModelDir, config: Config, sources: list[str],
                 targets: list[str], valid: tuple[list[str], list[str]] | None,
                 data_sha256: dict[str, str], progress: bool):
        self.directory, self.config, self.training = directory, config, config.training
        self.sources, self.targets, self.valid = sources, targets, valid
        self.data_sha256, self.progress = data_sha256, progress
        self.schedule = Schedule(config.training, validating=valid is not None)
        self.state: dict[str, Any] = {}
        self.stop_requests: list[int] = []

    # Set-up ------------------------------------------------------------------------------

    def run(self, resuming: bool) -> dict[str, Any]:
        import keras

        from . import backend

        training = self.training
        keras.utils.set_random_seed(training.seed)
        if training.deterministic:
            backend.enable_determinism()
        logger.info("%s on %d pairs with %s on %s (Keras backend %s)",
                    "resuming training" if resuming else "training", len(self.sources),
                    self.config.to_dict(), backend.accelerator(), backend.name())
        self.tokenizer = self.directory.load_tokenizer() if resuming else self._new_tokenizer()
        tokenizer = self.tokenizer
        sentencepiece_models = self.directory.save_tokenizer(  # unchanged bytes on resume
            tokenizer.source.serialized_model_proto(),
            None if tokenizer.joint else tokenizer.target.serialized_model_proto())
        self.directory.save_config(self.config, tokenizer.source_vocab_size,
                                   tokenizer.target_vocab_size, sentencepiece_models)
        self.batches = self._batches(self.sources, self.targets, shuffle=True)
        self.valid_batches = (self._batches(*self.valid, shuffle=False) if self.valid else None)
        logger.info("batches: %.1f%% of padded target slots hold real tokens",
                    100 * self.batches.padding_efficiency)

        self.model = self.directory.build_model(self.config)
        compile_for_training(self.model, training)
        logger.info("model: %d parameters, %d batches per epoch", self.model.count_params(),
                    len(self.batches))
        self.state = self._fresh_state()
        if resuming:
            self._restore()
        from .decode import Translator
        self.translator = Translator(self.model, self.tokenizer, self.config.model)
        self.tensorboard = (backend.tensorboard_writer(self.directory.tensorboard_path)
                            if training.tensorboard else None)
        self.started = time.perf_counter()
        self.seconds_before = self.state["seconds"]
        self._learning_rate = None
        try:
            with _stop_requests() as self.stop_requests:
                self._train()
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()
        history = self.state["history"]
        return {**(history[-1] if history else {}), "finished": self.state["finished"],
                "best": self.state["best"]}

    def _new_tokenizer(self) -> Tokenizer:
        model_config, training = self.config.model, self.training
        options = dict(vocab_size=model_config.vocab_size,
                       model_type=training.sentencepiece_model_type,
                       sample_lines=training.sentencepiece_sample_lines, seed=training.seed)
        if model_config.joint_vocab:
            tokenizer = Tokenizer(train_sentencepiece(self.sources + self.targets, **options))
        else:
            tokenizer = Tokenizer(train_sentencepiece(self.sources, **options),
                                  train_sentencepiece(self.targets, **options))
        logger.info("SentencePiece: %d source / %d target pieces (%s vocabulary)",
                    tokenizer.source_vocab_size, tokenizer.target_vocab_size,
                    "joint" if tokenizer.joint else "separate")
        return tokenizer

    def _batches(self, sources: list[str], targets: list[str], shuffle: bool) -> ParallelBatches:
        from . import backend

        source_ids = self.tokenizer.encode_source(sources)
        target_ids = self.tokenizer.encode_target(targets)
        max_source, max_target = (self.config.model.max_source_length,
                                  self.training.max_target_length)
        keep = [i for i, (s, t) in enumerate(zip(source_ids, target_ids))
                if len(s) <= max_source and len(t) < max_target]
        if len(keep) < len(source_ids):
            logger.warning("dropped %d pair(s) longer than %d source / %d target pieces",
                           len(source_ids) - len(keep), max_source, max_target)
        if not keep:
            raise ValueError("every pair is longer than the length limits; raise "
                             "--max-source-length / --max-target-length")
        return ParallelBatches([source_ids[i] for i in keep], [target_ids[i] for i in keep],
                               batch_tokens=self.training.batch_tokens,
                               reverse_source=self.config.model.reverse_source,
                               seed=self.training.seed, shuffle=shuffle,
                               multiple=backend.shape_multiple())

    # State: fresh, checkpointed, restored ------------------------------------------------

    def _fresh_state(self) -> dict[str, Any]:
        return {"epoch": 0,            # epochs completed
                "batch": 0,            # batches completed in the epoch in progress
                "step": 0, "seconds": 0.0, "finished": None, **self.schedule.initial_state(),
                "window": {"loss": 0.0, "nll": 0.0, "tokens": 0, "seconds": 0.0},
                "data_sha256": self.data_sha256, "history": []}

    def _variables(self) -> dict[str, list]:
        return {"model": self.model.variables, "optimizer": self.model.optimizer.variables}

    def _checkpoint(self) -> None:
        from keras import ops

        self.state["seconds"] = self._elapsed()
        arrays = {f"{group}/{index:04d}": ops.convert_to_numpy(variable)
                  for group, variables in self._variables().items()
                  for index, variable in enumerate(variables)}
        if not all(np.isfinite(a).all() for a in arrays.values() if a.dtype.kind == "f"):
            self._diverged(f"by step {self.state['step']}: the weights hold NaN or Inf")
        self.directory.save_checkpoint(self.state["step"], arrays, self.state,
                                       keep=self.training.keep_checkpoints)
        self._checkpointed_step = self.state["step"]

    def _restore(self) -> None:
        arrays, state = self.directory.load_latest_checkpoint()
        for group, variables in self._variables().items():
            saved = [key for key in arrays if key.startswith(group + "/")]
            if len(saved) != len(variables):
                raise ValueError(f"{self.directory}: the newest checkpoint holds {len(saved)} "
                                 f"{group} variables, the model has {len(variables)}; it belongs "
                                 f"to another model; pass --overwrite to start over")
            for index, variable in enumerate(variables):
                value = arrays[f"{group}/{index:04d}"]
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(f"{self.directory}: checkpoint variable {variable.path} has "
                                     f"shape {value.shape}, the model {tuple(variable.shape)}; "
                                     f"pass --overwrite to start over")
                variable.assign(value)
        if state["data_sha256"] != self.data_sha256:
            changed = [name for name, digest in self.data_sha256.items()
                       if state["data_sha256"].get(name) != digest]
            raise ValueError(f"{self.directory} was trained on other data ({', '.join(changed)} "
                             f"changed since the run began); pass the same files to resume, "
                             f"--overwrite to start over, or a new --model-dir")
        self.state = state
        logger.info("resumed from the checkpoint at step %d (epoch %d, batch %d)",
                    state["step"], state["epoch"] + 1, state["batch"])

    # The loop ----------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def _stop_reason(self) -> str | None:
        return self.schedule.stop_reason(self.state, self._elapsed())

    def _train(self) -> None:
        self._checkpointed_step = self.state["step"] if self.state["step"] else None
        reason = self._stop_reason()
        while reason is None:
            completed = self._train_epoch()
            if completed:
                self.state["epoch"] += 1
                self.state["batch"] = 0
                if not (self.training.validate_every and self.valid):
                    self._report()
            reason = self._stop_reason()
        if self.state["window"]["tokens"]:  # steps since the last report (a time limit hit)
            self._report()
        self.state["finished"] = reason
        self._checkpoint()
        best = self.state["best"]
        logger.info("training finished: %s.%s Model: %s", reason,
                    f" Best validation {best['metric']} {best['value']} at step {best['step']}."
                    if best["value"] is not None else "", self.directory)

    def _train_epoch(self) -> bool:
        """Train until the epoch ends (True) or a stop condition holds (False)."""
        training, state = self.training, self.state
        epoch = state["epoch"] + 1
        self.batches.set_epoch(epoch)
        bar = _progress_bar(len(self.batches), state["batch"], f"epoch {epoch}/{training.epochs}",
                            self.progress)
        try:
            for index in range(state["batch"], len(self.batches)):
                self._check_stop_requests()
                self._step(self.batches.batch(index), epoch)
                state["batch"] = index + 1
                window = state["window"]
                bar.set_postfix(loss=f"{window['loss'] / window['tokens']:.3f}",
                                tok_s=f"{window['tokens'] / window['seconds']:.0f}",
                                refresh=False)
                bar.update()
                step = state["step"]
                if training.validate_every and self.valid and step % training.validate_every == 0:
                    self._report()
                elif training.checkpoint_every and step % training.checkpoint_every == 0:
                    self._checkpoint()
                if self._stop_reason() is not None and index + 1 < len(self.batches):
                    return False
            return True
        finally:
            bar.close()

    def _step(self, batch, epoch: int) -> None:
        state = self.state
        started = time.perf_counter()
        self._update_learning_rate()
        logs = train_step(self.model, batch)
        loss = float(logs["loss"])
        if not math.isfinite(loss):
            self._diverged(f"at epoch {epoch}, step {state['step'] + 1}: the loss is {loss}")
        state["step"] += 1
        count = batch.num_target_tokens
        window = state["window"]
        window["loss"] += loss * count
        window["nll"] += float(logs["nll"]) * count
        window["tokens"] += count
        window["seconds"] += time.perf_counter() - started

    def _diverged(self, what: str) -> None:
        good = (f"the last good checkpoint (step {self._checkpointed_step}) is kept in "
                f"{self.directory}" if self._checkpointed_step else "no checkpoint was saved yet")
        raise FloatingPointError(
            f"training diverged {what}; {good}. Retry with a lower --learning-rate (now "
            f"{self._learning_rate_now():g}), more --warmup-steps, or a smaller --clip-norm "
            f"(now {self.training.clip_norm:g}); the run resumes from that checkpoint")

    def _learning_rate_now(self) -> float:
        return self.schedule.learning_rate(self.state)

    def _update_learning_rate(self) -> None:
        rate = self._learning_rate_now()
        if rate != self._learning_rate:
            self.model.optimizer.learning_rate.assign(rate)
            self._learning_rate = rate

    def _check_stop_requests(self) -> None:
        if not self.stop_requests:
            return
        number = self.stop_requests[0]
        if self.state["step"]:
            self._checkpoint()
            saved = f"saved a checkpoint at step {self.state['step']} in {self.directory}"
        else:
            saved = "no step was taken, so there is nothing to save"
        raise TrainingInterrupted(
            f"interrupted by {signal.Signals(number).name}; {saved}. Run the same "
            f"`seq2seq-shared train` command again to resume", number)

    # Reports: validation, best model, learning-rate plateau, early stopping -------------

    def _report(self) -> None:
        from .evaluate import perplexity, quality, teacher_forced_nll

        state = self.state
        window = state["window"]
        epoch = state["epoch"] + state["batch"] / len(self.batches)
        row: dict[str, Any] = {"epoch": round(epoch, 3), "step": state["step"],
                               "learning_rate": self._learning_rate or self._learning_rate_now()}
        if window["tokens"]:
            row.update(train_loss=round(window["loss"] / window["tokens"], 4),
                       train_ppl=perplexity(window["nll"] / window["tokens"]),
                       target_tokens_per_second=round(window["tokens"] / window["seconds"]))
        if self.valid:
            valid_nll = teacher_forced_nll(self.model, self.valid_batches)
            if not math.isfinite(valid_nll):
                self._diverged(f"by step {state['step']}: the validation loss is {valid_nll}")
            hypotheses = self.translator.translate(self.valid[0])
            scores = quality(hypotheses, self.valid[1])
            row.update(valid_loss=round(valid_nll, 4), valid_ppl=perplexity(valid_nll),
                       valid_bleu=scores["bleu"], valid_chrf=scores["chrf"])
            self._log_samples(hypotheses)
        row["minutes"] = round(self._elapsed() / 60, 2)
        state["history"].append(row)
        state["window"] = {"loss": 0.0, "nll": 0.0, "tokens": 0, "seconds": 0.0}
        logger.info("step %d: %s", state["step"], ", ".join(f"{k}={v}" for k, v in row.items()))
        self._track_best(row)
        self.directory.save_metrics(state["history"])
        if self.tensorboard is not None:
            self.tensorboard.scalars(state["step"], {k: float(v) for k, v in row.items()
                                                     if k not in ("epoch", "step")})
        self._checkpoint()

    def _track_best(self, row: dict[str, Any]) -> None:
        if not self.valid:
            self.directory.save_weights(self.model)  # the latest is the one to use
            return
        metric = self.training.best_metric
        value = row["valid_bleu"] if metric == "bleu" else row["valid_loss"]
        if self.schedule.record(self.state, value):
            self.directory.save_weights(self.model)
            logger.info("new best validation %s: %s (saved)", metric, value)

    def _log_samples(self, hypotheses: list[str]) -> None:
        sources, references = self.valid
        picks = np.linspace(0, len(sources) - 1, SAMPLE_TRANSLATIONS).astype(int).tolist()
        for i in picks:
            logger.info("sample: %s\n    reference:  %s\n    hypothesis: %s",
                        sources[i], references[i], hypotheses[i])


@contextmanager
def _stop_requests():
    """Collect SIGINT / SIGTERM instead of dying mid-step; the loop checkpoints and stops."""
    requests: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield requests
        return
    previous = {number: signal.signal(number, lambda n, frame: requests.append(n))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requests
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _progress_bar(total: int, initial: int, description: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit="batch",
                disable=not enabled, leave=False, dynamic_ncols=True, mininterval=0.5)


class _LogFileHandler(logging.FileHandler):
    """A FileHandler that, when the disk is full, says so once in one line instead of
    printing a traceback for every record (training itself stops at its next write)."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.failed:
            self.failed = True
            logging.getLogger(__name__).warning("%s: cannot write the log any more", self.baseFilename)


@contextmanager
def _log_to(path: Path):
    """Copy this package's log records into the model directory's train.log."""
    handler = _LogFileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package_logger = logging.getLogger("seq2seq_shared")
    package_logger.addHandler(handler)
    previous_level = package_logger.level
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
        handler.close()
