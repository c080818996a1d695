"""The model directory: the ONLY module that knows its layout. Every write is atomic.

    config.json            model + training settings, vocabulary sizes, format version,
                           package version, and the SentencePiece models' sha256
    sentencepiece.model    joint vocabulary (or source.model + target.model)
    model.weights.h5       the weights translation uses: the best by validation (BLEU or
                           loss), or the latest without a validation set (Keras format)
    checksums.json         sha256 of model.weights.h5, recorded when it is written and
                           verified when it is loaded (HDF5 keeps no checksum) [format 2]
    .lock                  held (an OS file lock) by the one process training here
    checkpoints/step-N.npz the full training state at step N: every model variable (random
                           seed states included), the optimizer's, and the run's counters;
                           the newest K are kept, and resuming starts from the newest
    training_state.json    a readable copy of the newest checkpoint's counters and history
    metrics.csv            one row per validation (or epoch)
    train.log              the training log
    tensorboard/           TensorBoard event files (TensorFlow backend)

Every file is written through `files.atomic_write`: a crash leaves the old or the new
file, never half of one.
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .config import Config
from .files import atomic_write, atomic_write_bytes, atomic_write_text

FORMAT_VERSION = 2  # 2: checksums.json; format 1 directories (no checksums) still load
READABLE_FORMATS = (1, 2)

CONFIG = "config.json"
JOINT_SPM, SOURCE_SPM, TARGET_SPM = "sentencepiece.model", "source.model", "target.model"
WEIGHTS = "model.weights.h5"
CHECKSUMS = "checksums.json"
LOCK = ".lock"
STATE = "training_state.json"
METRICS = "metrics.csv"
LOG = "train.log"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
CHECKPOINT_NAME = re.compile(r"step-(\d+)\.npz")
MANAGED = (CONFIG, JOINT_SPM, SOURCE_SPM, TARGET_SPM, WEIGHTS, CHECKSUMS, STATE, METRICS, LOG)

logger = logging.getLogger(__name__)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in blocks (never whole: corpora can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelDir:
    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def log_path(self) -> Path:
        return self.path / LOG

    @property
    def tensorboard_path(self) -> Path:
        return self.path / TENSORBOARD

    def is_empty(self) -> bool:
        return not self.path.exists() or not any(self.path.iterdir())

    def holds_only_run_leftovers(self) -> bool:
        """True if all that is here is what a run writes before its config (log, temporaries)."""
        return all(path.name in (LOG, CHECKPOINTS, TENSORBOARD) or path.name.startswith(".")
                   for path in self.path.iterdir())

    def has_config(self) -> bool:
        return (self.path / CONFIG).exists()

    def clear(self) -> None:
        """Delete what a training run writes here (for --overwrite); other files stay."""
        for name in MANAGED:
            (self.path / name).unlink(missing_ok=True)
        for name in (CHECKPOINTS, TENSORBOARD):
            shutil.rmtree(self.path / name, ignore_errors=True)
        self.remove_temporaries()

    def create(self) -> bool:
        """Make the directory (and its parents) if needed and check that it is writable,
        so a run fails now, not after the work; True if it did not exist before."""
        created = not self.path.exists()
        self._created = self.path.absolute()  # the topmost folder this call creates
        while not self._created.parent.exists():
            self._created = self._created.parent
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.path):
                pass
        except OSError as error:
            raise ValueError(f"{self.path}: model directory is not writable ({error.strerror}); "
                             f"choose another --model-dir") from None
        return created

    def remove_if_unused(self) -> None:
        """After a run that failed before its first checkpoint in a directory it created
        (`create()` returned True): leave nothing behind, parents it created included."""
        if not self.checkpoints():
            shutil.rmtree(self._created, ignore_errors=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the directory for one training process: an OS lock on `.lock`, released
        when the process ends however it ends (kill -9 too), so it never goes stale. A
        second writer is refused at once, with the holder's pid, host and start time."""
        handle = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(handle, 300).decode("utf-8", "replace").strip() or "unknown"
                raise ValueError(f"{self.path}: another training run is writing here ({holder}); "
                                 f"wait for it to end or stop it, or choose another "
                                 f"--model-dir") from None
            os.ftruncate(handle, 0)
            os.write(handle, f"pid {os.getpid()} on {socket.gethostname()}, since "
                             f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            yield
        finally:
            os.close(handle)

    def remove_temporaries(self) -> None:
        """Delete what writes killed midway left (`.NAME.tmp-*`); call it holding the lock."""
        for folder in (self.path, self.path / CHECKPOINTS):
            for leftover in folder.glob(".*.tmp-*"):
                leftover.unlink(missing_ok=True)

    # Config and tokenizer ----------------------------------------------------------------

    def save_config(self, config: Config, source_vocab_size: int, target_vocab_size: int,
                    sentencepiece_models: dict[str, bytes]) -> None:
        document = {
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            **config.to_dict(),
            "vocab": {"source_vocab_size": source_vocab_size,
                      "target_vocab_size": target_vocab_size,
                      "sentencepiece_sha256": {name: sha256(data)
                                               for name, data in sentencepiece_models.items()}},
        }
        atomic_write_text(self.path / CONFIG, json.dumps(document, indent=2) + "\n")

    def read_config_document(self) -> dict[str, Any]:
        path = self.path / CONFIG
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: model directory not found; train one with "
                                    f"`seq2seq-shared train ... --model-dir {self.path}`")
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing; {self.path} is not a seq2seq-shared model "
                                    f"directory (or its training never got past the start)")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: corrupt ({error}); restore it or retrain") from None
        version = document.get("format_version")
        if version not in READABLE_FORMATS:
            raise ValueError(f"{path}: model directory format {version!r}, but this "
                             f"seq2seq-shared ({__version__}) reads formats "
                             f"{', '.join(map(str, READABLE_FORMATS))}; "
                             f"use the version that wrote it, or retrain")
        return document

    def read_config(self) -> Config:
        document = self.read_config_document()
        return Config.from_dict({"model": document["model"], "training": document["training"]},
                                source=str(self.path / CONFIG))

    def save_tokenizer(self, source_model: bytes, target_model: bytes | None) -> dict[str, bytes]:
        """Write the SentencePiece model(s); returns {file name: bytes} for the config's hashes."""
        models = ({JOINT_SPM: source_model} if target_model is None
                  else {SOURCE_SPM: source_model, TARGET_SPM: target_model})
        for file_name, data in models.items():
            atomic_write_bytes(self.path / file_name, data)
        return models

    def sentencepiece_files(self) -> dict[str, Path]:
        """{"source": path, "target": path}: the same file for a joint vocabulary."""
        if (self.path / JOINT_SPM).exists():
            return {"source": self.path / JOINT_SPM, "target": self.path / JOINT_SPM}
        return {"source": self.path / SOURCE_SPM, "target": self.path / TARGET_SPM}

    def load_tokenizer(self):
        from .tokenizer import Tokenizer

        expected = self.read_config_document()["vocab"]["sentencepiece_sha256"]
        models = {}
        for file_name, digest in expected.items():
            path = self.path / file_name
            if not path.exists():
                raise FileNotFoundError(f"{path}: missing SentencePiece model; restore it or retrain")
            models[file_name] = path.read_bytes()
            if sha256(models[file_name]) != digest:
                raise ValueError(f"{path}: does not match the model it was trained with "
                                 f"(sha256 differs from {self.path / CONFIG}); restore the "
                                 f"original file or retrain")
        if JOINT_SPM in models:
            return Tokenizer(models[JOINT_SPM])
        return Tokenizer(models[SOURCE_SPM], models[TARGET_SPM])

    # Model and weights -------------------------------------------------------------------

    def build_model(self, config: Config | None = None):
        from .model import Seq2Seq

        document = self.read_config_document()
        config = config or self.read_config()
        model_config = config.model
        model = Seq2Seq(source_vocab_size=document["vocab"]["source_vocab_size"],
                        target_vocab_size=document["vocab"]["target_vocab_size"],
                        embedding_dim=model_config.embedding_dim,
                        hidden_size=model_config.hidden_size,
                        num_layers=model_config.num_layers,
                        share_lstm=model_config.share_lstm,
                        share_embeddings=model_config.share_embeddings,
                        tie_output=model_config.tie_output,
                        dropout=model_config.dropout,
                        feed_context=model_config.feed_context,
                        label_smoothing=config.training.label_smoothing)
        model.build()
        return model

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS

    def save_weights(self, model) -> None:
        """Write the weights and record their sha256, so that damage is caught on loading.

        The checksum file accepts the new digest before the new weights replace the old
        ones, and forgets the old digest after: whenever the process dies, the weights file
        there matches a recorded digest."""
        path = self.weights_path

        def publish_digest(temporary: Path) -> None:
            digests = [file_sha256(temporary), *self._weights_digests()[:1]]
            atomic_write_text(self.path / CHECKSUMS, json.dumps({WEIGHTS: digests}) + "\n")

        atomic_write(path, lambda temporary: model.save_weights(temporary),
                     before_rename=publish_digest)
        atomic_write_text(self.path / CHECKSUMS,
                          json.dumps({WEIGHTS: [file_sha256(path)]}) + "\n")

    def _weights_digests(self) -> list[str]:
        try:
            return json.loads((self.path / CHECKSUMS).read_text(encoding="utf-8"))[WEIGHTS]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def verify_weights(self) -> None:
        """Refuse a weights file that is missing or differs from its recorded sha256."""
        path = self.weights_path
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing; the model has no trained weights yet "
                                    f"(train it, or let a running training save an epoch)")
        if self.read_config_document()["format_version"] < 2:
            return  # written before checksums were recorded
        digests = self._weights_digests()
        if not digests:
            raise ValueError(f"{self.path / CHECKSUMS}: missing or corrupt, so {path} cannot be "
                             f"verified; restore it with the model directory, or retrain")
        if file_sha256(path) not in digests:
            raise ValueError(f"{path}: damaged: its sha256 differs from the one recorded when it "
                             f"was written ({self.path / CHECKSUMS}); restore the file from a "
                             f"copy, or retrain (`train` resumes from {CHECKPOINTS}/)")

    def load_weights(self, model) -> None:
        self.verify_weights()
        try:
            model.load_weights(self.weights_path)
        except Exception as error:  # h5py/Keras raise many types for a damaged or foreign file
            raise ValueError(f"{self.weights_path}: cannot be loaded ({error}); it is corrupt or "
                             f"belongs to another model; restore it or retrain") from None

    def fingerprint(self) -> dict[str, str]:
        """sha256 of every file translation depends on: what makes two models the same."""
        self.verify_weights()
        files = [self.path / CONFIG, self.weights_path, *set(self.sentencepiece_files().values())]
        return {path.name: file_sha256(path) for path in sorted(files)}

    def load_model(self):
        """(model, tokenizer, config), rebuilt from the config, then the weights loaded."""
        config = self.read_config()
        tokenizer = self.load_tokenizer()
        model = self.build_model(config)
        self.load_weights(model)
        return model, tokenizer, config

    # Training state and metrics ----------------------------------------------------------

    def save_state(self, state: dict[str, Any]) -> None:
        atomic_write_text(self.path / STATE, json.dumps(state, indent=2) + "\n")

    def save_metrics(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        buffer = io.StringIO()
        fields = list(dict.fromkeys(key for row in rows for key in row))  # union, in order
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path / METRICS, buffer.getvalue())

    # Checkpoints: everything needed to resume exactly ------------------------------------

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of every checkpoint, oldest first."""
        found = []
        for path in (self.path / CHECKPOINTS).glob("step-*.npz"):
            match = CHECKPOINT_NAME.fullmatch(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def save_checkpoint(self, step: int, arrays: dict[str, np.ndarray], state: dict[str, Any],
                        keep: int) -> Path:
        """Write one file holding `arrays` and `state`, atomically; keep the newest `keep`."""
        path = self.path / CHECKPOINTS / f"step-{step:09d}.npz"
        encoded = np.frombuffer(json.dumps(state).encode("utf-8"), dtype=np.uint8)
        atomic_write(path, lambda temporary: np.savez(temporary, state=encoded, **arrays))
        self.save_state({**state, "checkpoint": str(path.relative_to(self.path))})
        for _, old in self.checkpoints()[:-keep]:
            old.unlink(missing_ok=True)
        return path

    def load_latest_checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """(arrays, state) of the newest readable checkpoint; None if there is none."""
        found = self.checkpoints()
        for step, path in reversed(found):
            try:
                with np.load(path) as data:
                    arrays = {key: data[key] for key in data.files}
                state = json.loads(arrays.pop("state").tobytes().decode("utf-8"))
            except Exception as error:  # zip, npy and JSON errors: a damaged file
                logger.warning("%s: unreadable (%s); trying an older checkpoint", path, error)
                continue
            return arrays, state
        if found:
            raise ValueError(f"{self.path / CHECKPOINTS}: no checkpoint can be read; restore one, "
                             f"or pass --overwrite to start training again")
        return None
