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
    compile_cache/         JAX's compiled programs, so a resume compiles nothing again
                           (JAX backend; specific to the machine, safe to delete)
    prepared-corpus/       the training corpus prepared (`prepared.py`) when `train` was
                           given text files: what a resume reads instead of the corpus

Every file is written through `files.atomic_write`: a crash leaves the old or the new
file, never half of one.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from ._version import __version__
from .config import Config
from .data.files import atomic_write, atomic_write_bytes, atomic_write_text, file_sha256, sha256

# 2: checksums.json; 3: attention, role_signal and plateau_metric. Earlier formats still
# load: a directory lacks the settings of later formats, and meant ADDED_SETTINGS (a
# function of its training section: the plateau used to watch the best_metric).
FORMAT_VERSION = 3
READABLE_FORMATS = (1, 2, 3)
ADDED_SETTINGS = {
    3: lambda training: {
        "model": {"attention": "none", "role_signal": "none"},
        "training": {"plateau_metric": training.get("best_metric", "bleu")},
    }
}

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
COMPILE_CACHE = "compile_cache"
PREPARED = "prepared-corpus"
CHECKPOINT_NAME = re.compile(r"step-(\d+)\.npz")
MANAGED = (CONFIG, JOINT_SPM, SOURCE_SPM, TARGET_SPM, WEIGHTS, CHECKSUMS, STATE, METRICS, LOG)

logger = logging.getLogger(__name__)


class ModelDir:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._document: dict[str, Any] | None = None  # config.json, parsed once

    def __str__(self) -> str:
        return str(self.path)

    @property
    def log_path(self) -> Path:
        return self.path / LOG

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def compile_cache_path(self) -> Path:
        return self.path / COMPILE_CACHE

    @property
    def prepared_path(self) -> Path:
        return self.path / PREPARED

    @property
    def tensorboard_path(self) -> Path:
        return self.path / TENSORBOARD

    # Config and tokenizer ----------------------------------------------------------------

    def save_config(
        self,
        config: Config,
        source_vocab_size: int,
        target_vocab_size: int,
        sentencepiece_models: dict[str, bytes],
    ) -> None:
        document = {
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            **config.to_dict(),
            "vocab": {
                "source_vocab_size": source_vocab_size,
                "target_vocab_size": target_vocab_size,
                "sentencepiece_sha256": {
                    name: sha256(data) for name, data in sentencepiece_models.items()
                },
            },
        }
        atomic_write_text(self.path / CONFIG, json.dumps(document, indent=2) + "\n")
        self._document = document

    def read_config_document(self) -> dict[str, Any]:
        """config.json as written (parsed once per ModelDir): format and package version,
        `model`, `training` and `vocab` sections."""
        if self._document is None:
            self._document = self._parse_config()
        return self._document

    def _parse_config(self) -> dict[str, Any]:
        path = self.path / CONFIG
        if not self.path.is_dir():
            raise FileNotFoundError(
                f"{self.path}: model directory not found; train one with "
                f"`seq2seq-shared train ... --model-dir {self.path}`"
            )
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: missing; {self.path} is not a seq2seq-shared model "
                f"directory (or its training never got past the start)"
            )
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: corrupt ({error}); restore it or retrain") from None
        version = document.get("format_version")
        if version not in READABLE_FORMATS:
            raise ValueError(
                f"{path}: model directory format {version!r}, but this "
                f"seq2seq-shared ({__version__}) reads formats "
                f"{', '.join(map(str, READABLE_FORMATS))}; "
                f"use the version that wrote it, or retrain"
            )
        for added_in, settings in ADDED_SETTINGS.items():
            if version < added_in:  # what the directory's version meant
                for section, values in settings(document.get("training", {})).items():
                    document[section] = {**values, **document.get(section, {})}
        return document

    def read_config(self) -> Config:
        document = self.read_config_document()
        return Config.from_dict(
            {"model": document["model"], "training": document["training"]},
            source=str(self.path / CONFIG),
        )

    def save_tokenizer(self, source_model: bytes, target_model: bytes | None) -> dict[str, bytes]:
        """Write the SentencePiece model(s); returns {file name: bytes} for the config's hashes."""
        models = (
            {JOINT_SPM: source_model}
            if target_model is None
            else {SOURCE_SPM: source_model, TARGET_SPM: target_model}
        )
        for file_name, data in models.items():
            atomic_write_bytes(self.path / file_name, data)
        return models

    def sentencepiece_files(self) -> dict[str, Path]:
        """{"source": path, "target": path}: the same file for a joint vocabulary."""
        if (self.path / JOINT_SPM).exists():
            return {"source": self.path / JOINT_SPM, "target": self.path / JOINT_SPM}
        return {"source": self.path / SOURCE_SPM, "target": self.path / TARGET_SPM}

    def load_tokenizer(self):
        from .data.tokenizer import Tokenizer

        expected = self.read_config_document()["vocab"]["sentencepiece_sha256"]
        models = {}
        for file_name, digest in expected.items():
            path = self.path / file_name
            if not path.exists():
                raise FileNotFoundError(
                    f"{path}: missing SentencePiece model; restore it or retrain"
                )
            models[file_name] = path.read_bytes()
            if sha256(models[file_name]) != digest:
                raise ValueError(
                    f"{path}: does not match the model it was trained with "
                    f"(sha256 differs from {self.path / CONFIG}); restore the "
                    f"original file or retrain"
                )
        if JOINT_SPM in models:
            return Tokenizer(models[JOINT_SPM])
        return Tokenizer(models[SOURCE_SPM], models[TARGET_SPM])

    # Model and weights -------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The saved settings for people and reports: model, training, vocabulary, versions."""
        document = self.read_config_document()
        return {
            key: document[key]
            for key in ("model", "training", "vocab", "format_version", "package_version")
        }

    def vocab_sizes(self) -> tuple[int, int]:
        """(source, target) vocabulary sizes of the saved SentencePiece model(s)."""
        vocab = self.read_config_document()["vocab"]
        return vocab["source_vocab_size"], vocab["target_vocab_size"]

    def build_model(self, config: Config | None = None):
        """A fresh model of the saved shape (`config`'s, where given), built, untrained."""
        from .model.seq2seq import Seq2Seq

        source_vocab_size, target_vocab_size = self.vocab_sizes()
        model_config = (config or self.read_config()).model
        model = Seq2Seq.from_model_config(model_config, source_vocab_size, target_vocab_size)
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
        digest = []  # the new file's, hashed once

        def publish_digest(temporary: Path) -> None:
            digest.append(file_sha256(temporary))
            self._save_digests([*digest, *self._weights_digests()[:1]])

        atomic_write(
            self.weights_path,
            lambda temporary: model.save_weights(temporary),
            before_rename=publish_digest,
        )
        self._save_digests(digest)

    def _save_digests(self, digests: list[str]) -> None:
        atomic_write_text(self.path / CHECKSUMS, json.dumps({WEIGHTS: digests}) + "\n")

    def _weights_digests(self) -> list[str]:
        try:
            return json.loads((self.path / CHECKSUMS).read_text(encoding="utf-8"))[WEIGHTS]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def verify_weights(self, digest: str | None = None) -> None:
        """Refuse a weights file that is missing or differs from its recorded sha256
        (`digest`: the file's, where the caller has hashed it already)."""
        path = self._existing_weights()
        if self.read_config_document()["format_version"] < 2:
            return  # written before checksums were recorded
        digests = self._weights_digests()
        if not digests:
            raise ValueError(
                f"{self.path / CHECKSUMS}: missing or corrupt, so {path} cannot be "
                f"verified; restore it with the model directory, or retrain"
            )
        if (digest or file_sha256(path)) not in digests:
            raise ValueError(
                f"{path}: damaged: its sha256 differs from the one recorded when it "
                f"was written ({self.path / CHECKSUMS}); restore the file from a "
                f"copy, or retrain (`train` resumes from {CHECKPOINTS}/)"
            )

    def _existing_weights(self) -> Path:
        if not self.weights_path.exists():
            raise FileNotFoundError(
                f"{self.weights_path}: missing; the model has no trained "
                f"weights yet (train it, or let a running training save "
                f"an epoch)"
            )
        return self.weights_path

    def load_weights(self, model) -> None:
        self.verify_weights()
        try:
            model.load_weights(self.weights_path)
        except Exception as error:  # h5py/Keras raise many types for a damaged or foreign file
            raise ValueError(
                f"{self.weights_path}: cannot be loaded ({error}); it is corrupt or "
                f"belongs to another model; restore it or retrain"
            ) from None

    def fingerprint(self) -> dict[str, str]:
        """sha256 of every file translation depends on: what makes two models the same."""
        self.read_config_document()  # a missing or foreign directory: its clear error first
        files = [
            self.path / CONFIG,
            self._existing_weights(),
            *set(self.sentencepiece_files().values()),
        ]
        digests = {path.name: file_sha256(path) for path in sorted(files)}
        self.verify_weights(digests[WEIGHTS])
        return digests

    def load_model(self):
        """(model, tokenizer, config), rebuilt from the config, then the weights loaded."""
        config = self.read_config()
        tokenizer = self.load_tokenizer()
        model = self.build_model(config)
        self.load_weights(model)
        return model, tokenizer, config


def parameter_report(path: Path | str) -> dict[str, Any]:
    """`info`'s figures for the model in `path` (`model.report.parameter_report`), loaded
    as `translate` loads it, so a missing or swapped file is refused alike."""
    from .model.report import parameter_report as report

    directory = ModelDir(path)
    model, _, config = directory.load_model()
    return report(model, config, directory.read_config_document())
