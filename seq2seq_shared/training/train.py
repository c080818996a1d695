"""`train`: a run started, or resumed, in a model directory, on a corpus.

The corpus is prepared once (text files into MODEL_DIR/prepared-corpus, or a directory
`prepare` wrote); the directory is locked, checked against the run's settings, and the
run (`run.py`) started or resumed. The directory's files are `model_dir.py`'s.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from ..config import Config
from ..data.batches import read_parallel
from ..data.files import file_sha256
from ..data.prepare import prepare
from ..data.prepared import PreparedCorpus, PrepareSettings
from . import parallel
from .context import log_to
from .parallel import Cluster
from .run import TrainingRun
from .run_dir import FollowerDir, RunDir

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
    if config.training.anneal_fraction and valid_paths is None:
        raise ValueError(
            "--anneal-fraction decays the learning rate at validations: pass "
            "--valid SOURCE TARGET, or drop --anneal-fraction"
        )
    replicas = parallel.start(cluster or Cluster())  # before any model
    try:
        _check_parallel(replicas, target_path, config)
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


def _check_parallel(replicas, target_path: Path | None, config: Config) -> None:
    """Refuse what data parallel does not support (`replicas`: parallel.start's)."""
    if replicas is None:
        return
    if replicas.processes > 1 and target_path is not None:
        raise ValueError(
            "several processes train on a prepared corpus, which each reads: "
            "run `seq2seq-shared prepare SOURCE TARGET PREPARED` once, then "
            "`seq2seq-shared train PREPARED ...` in every process"
        )
    training = config.training
    if replicas.strategy is not None and (
        training.accumulate_steps > 1 or training.precision != "float32"
    ):
        raise ValueError(
            "--devices under TensorFlow trains in float32 without "
            "--accumulate-steps (those combinations are untested there); "
            "use KERAS_BACKEND=jax for them"
        )


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
            assert target_path is not None  # (a prepared directory was read above)
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
