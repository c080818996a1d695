"""The model directory as a training run writes it: one writer at a time (a lock), the
run's config, its state, metrics and checkpoints, and what a killed write left behind.

The names of the files are `model_dir.py`'s (the layout is written down once, there).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..data.writer import atomic_write, atomic_write_text
from ..model_dir import (
    CHECKPOINT_GLOB,
    CHECKPOINT_NAME,
    CHECKPOINTS,
    COMPILE_CACHE,
    LOCK,
    LOG,
    MANAGED,
    METRICS,
    PREPARED,
    STATE,
    TENSORBOARD,
    ModelDir,
    checkpoint_name,
)
from . import checkpoint
from .state import RunState

logger = logging.getLogger(__name__)


@contextmanager
def hold_lock(path: Path) -> Iterator[None]:
    """Hold the directory for one training process: an OS lock on `.lock`, released
    when the process ends however it ends (kill -9 too), so it never goes stale. A
    second writer is refused at once, with the holder's pid, host and start time."""
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 300).decode("utf-8", "replace").strip() or "unknown"
            raise ValueError(
                f"{path.parent}: another training run is writing here ({holder}); "
                f"wait for it to end or stop it, or choose another "
                f"--model-dir"
            ) from None
        os.ftruncate(handle, 0)
        os.write(
            handle,
            f"pid {os.getpid()} on {socket.gethostname()}, since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(),
        )
        yield
    finally:
        os.close(handle)


def metrics_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV, with the union of their columns, in order of appearance."""
    buffer = io.StringIO()
    fields = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _refuse_a_release(directory: ModelDir) -> None:
    if directory.config_path.exists() and directory.is_release():
        raise ValueError(
            f"{directory.path} is a release: translate-only, with no checkpoints or "
            f"optimizer state to resume from; train into a new --model-dir (or resume the "
            f"model directory it was released from)"
        )


class RunDir(ModelDir):
    """A model directory being trained: what `train` writes, besides what `translate` reads."""

    writes = True  # False in a multi-process run's followers (`FollowerDir`)

    def is_empty(self) -> bool:
        return not self.path.exists() or not any(self.path.iterdir())

    def holds_only_run_leftovers(self) -> bool:
        """True if all that is here is what a run writes before its config (log, temporaries)."""
        return all(
            path.name in (LOG, CHECKPOINTS, TENSORBOARD, COMPILE_CACHE)
            or path.name.startswith(".")
            or self._is_our_prepared(path)
            for path in self.path.iterdir()
        )

    @staticmethod
    def _is_our_prepared(path: Path) -> bool:
        """Whether `path` is the corpus a run prepared here (never a user's folder)."""
        from ..data.prepared import PreparedCorpus

        return path.name == PREPARED and PreparedCorpus.is_prepared(path)

    def has_config(self) -> bool:
        return self.config_path.exists()

    def clear(self, keep_prepared: bool = False) -> None:
        """Delete what a training run writes here (for --overwrite); other files stay.
        `keep_prepared`: keep its prepared corpus, which the run's next start may reuse."""
        for name in MANAGED:
            (self.path / name).unlink(missing_ok=True)
        for name in (CHECKPOINTS, TENSORBOARD, COMPILE_CACHE):
            shutil.rmtree(self.path / name, ignore_errors=True)
        if not keep_prepared and self._is_our_prepared(self.prepared_path):
            shutil.rmtree(self.prepared_path, ignore_errors=True)
        self.remove_temporaries()

    def create(self) -> Path | None:
        """Make the directory (and its parents) if needed and check that it is writable,
        so a run fails now, not after the work. Returns the topmost folder it created, or
        None if the directory was there."""
        created = None if self.path.exists() else self.path.absolute()
        while created is not None and not created.parent.exists():
            created = created.parent
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.path):
                pass
        except OSError as error:
            raise ValueError(
                f"{self.path}: model directory is not writable ({error.strerror}); "
                f"choose another --model-dir"
            ) from None
        return created

    def remove_if_unused(self, created: Path) -> None:
        """After a run that failed before its first checkpoint in a directory it created:
        leave nothing behind, from `created` (what `create()` returned) down."""
        if not self.checkpoints():
            shutil.rmtree(created, ignore_errors=True)

    def lock(self):
        """Hold the directory for one training process (`hold_lock`)."""
        return hold_lock(self.path / LOCK)

    def prepare(self, config: Config, overwrite: bool) -> bool:
        """Make the directory ready for a run of `config`; True if it holds one to resume.
        Refuses a run of other settings, and a folder that is not a model directory."""
        _refuse_a_release(self)
        if overwrite:
            self.clear()
            return False
        if self.has_config():
            differences = self.read_config().resume_differences(config)
            if differences:
                raise ValueError(
                    f"{self.path} holds a run with other settings ({'; '.join(differences)}). "
                    f"To resume it, repeat its settings (they are in {self.config_path}); to "
                    f"start over there, pass --overwrite; or choose a new --model-dir"
                )
            if self.checkpoints():
                return True
        elif not self.is_empty() and not self.holds_only_run_leftovers():
            raise ValueError(
                f"{self.path}: not empty and not a seq2seq-shared model directory; "
                f"choose a new --model-dir (or pass --overwrite to train there "
                f"anyway)"
            )
        self.clear(keep_prepared=True)  # a run killed before its first checkpoint: start again
        return False

    def remove_temporaries(self) -> None:
        """Delete what writes killed midway left (`.NAME.tmp-*`); call it holding the lock."""
        for folder in (self.path, self.path / CHECKPOINTS):
            for leftover in folder.glob(".*.tmp-*"):
                if leftover.is_file():
                    leftover.unlink(missing_ok=True)
        for pattern in (f".{PREPARED}.tmp-*", f".{PREPARED}.old-*"):  # prepared.py's, only
            for leftover in self.path.glob(pattern):
                shutil.rmtree(leftover, ignore_errors=True)

    def check_tokenizer(self, tokenizer, prepared_path: Path, resuming: bool) -> None:
        """Refuse to resume on a corpus encoded with another SentencePiece model."""
        if resuming and self.load_tokenizer().serialized() != tokenizer.serialized():
            raise ValueError(
                f"{prepared_path} was encoded with another SentencePiece model than the run "
                f"in {self}; pass the data it was trained on, --overwrite to start over, "
                f"or a new --model-dir"
            )

    def save_run_config(self, config: Config, tokenizer) -> None:
        """Write the SentencePiece model(s), then config.json with their sha256 (on a
        resume, the same bytes again)."""
        models = self.save_tokenizer(tokenizer)
        self.save_config(config, tokenizer.source_vocab_size, tokenizer.target_vocab_size, models)

    # Run state and metrics ---------------------------------------------------------------

    def save_state(self, state: dict[str, Any]) -> None:
        atomic_write_text(self.path / STATE, json.dumps(state, indent=2) + "\n")

    def read_state(self) -> RunState:
        """The newest checkpoint's run state, from its readable copy (for reports, scripts)."""
        path = self.path / STATE
        try:
            return RunState.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: missing; no training has checkpointed here yet"
            ) from None

    def save_metrics(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            atomic_write_text(self.path / METRICS, metrics_csv(rows))

    # Checkpoints: everything needed to resume exactly ------------------------------------

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of every checkpoint, oldest first."""
        found = []
        for path in (self.path / CHECKPOINTS).glob(CHECKPOINT_GLOB):
            match = CHECKPOINT_NAME.fullmatch(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def save_checkpoint(
        self, arrays: dict[str, np.ndarray], state: RunState, keep: int
    ) -> Path | None:
        """Write `arrays` (`checkpoint.arrays_of(model)`) and `state` as the checkpoint of
        `state.step`, atomically, and its readable copy; keep the newest `keep`."""
        path = self.path / CHECKPOINTS / checkpoint_name(state.step)
        document = state.to_dict()
        atomic_write(path, lambda temporary: checkpoint.write(temporary, arrays, document))
        self.save_state({**document, "checkpoint": str(path.relative_to(self.path))})
        for _, old in self.checkpoints()[:-keep]:
            old.unlink(missing_ok=True)
        return path

    def load_latest_checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """(arrays, state) of the newest readable checkpoint; None if there is none."""
        found = self.checkpoints()
        for _, path in reversed(found):
            try:
                return checkpoint.read(path)
            except Exception as error:  # zip, CRC, npy and JSON errors: a damaged file
                logger.warning("%s: unreadable (%s); trying an older checkpoint", path, error)
        if found:
            raise ValueError(
                f"{self.path / CHECKPOINTS}: no checkpoint can be read; restore one, "
                f"or pass --overwrite to start training again"
            )
        return None

    def restore_checkpoint(self, model, data_sha256: dict[str, str]) -> RunState:
        """Give `model` and its optimizer the newest checkpoint's values; its run state.
        Refuses a run trained on other data than `data_sha256` describes."""
        latest = self.load_latest_checkpoint()
        if latest is None:
            raise ValueError(f"{self.path / CHECKPOINTS}: no checkpoint to resume from")
        arrays, document = latest
        state = RunState.from_dict(document)
        if state.data_sha256 != data_sha256:
            changed = [
                name
                for name, digest in data_sha256.items()
                if state.data_sha256.get(name) != digest
            ]
            raise ValueError(
                f"{self.path} was trained on other data ({', '.join(changed)} "
                f"changed since the run began); pass the same files to resume, "
                f"--overwrite to start over, or a new --model-dir"
            )
        checkpoint.assign(model, arrays, f"{self.path}: the newest checkpoint")
        return state


class FollowerDir(RunDir):
    """The model directory as a multi-process run's other processes see it: they read the
    chief's checkpoint to resume, and write nothing (the chief, process 0, writes)."""

    writes = False

    def create(self) -> Path | None:
        return None

    @contextmanager
    def lock(self) -> Iterator[None]:
        yield

    def remove_temporaries(self) -> None:
        pass

    def prepare(self, config: Config, overwrite: bool) -> bool:
        return not overwrite and self.has_config() and bool(self.checkpoints())

    @property
    def log_path(self) -> Path:
        return Path(os.devnull)

    def save_run_config(self, config: Config, tokenizer) -> None:
        self.sizes = (tokenizer.source_vocab_size, tokenizer.target_vocab_size)

    def vocab_sizes(self) -> tuple[int, int]:
        return self.sizes  # the run's own: the chief may not have written config.json yet

    def save_checkpoint(self, arrays: dict[str, np.ndarray], state: RunState, keep: int) -> None:
        pass

    def save_metrics(self, rows: list[dict[str, Any]]) -> None:
        pass

    def save_weights(self, model) -> None:
        pass
