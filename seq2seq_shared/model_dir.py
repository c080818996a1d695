"""The model directory: the ONLY module that knows its layout. Every write is atomic.

    config.json            model + training settings, vocabulary sizes, format version,
                           package version, and the SentencePiece models' sha256
    sentencepiece.model    joint vocabulary (or source.model + target.model)
    model.weights.h5       the weights translation uses: the best by validation (BLEU or
                           loss), or the latest without a validation set (Keras format)
    checksums.json         sha256 of model.weights.h5 [format 2] and of config.json
                           [format 4], recorded when each is written and verified when it
                           is loaded (neither HDF5 nor JSON keeps a checksum)
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

Every file is written through `writer.atomic_write`: a crash leaves the old or the new
file, never half of one.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from ._version import __version__
from .config import RELEASE_PRECISIONS, RELEASE_RUNTIMES, Config
from .data.checksums import Checksums
from .data.files import file_sha256, sha256
from .data.tokenizer import JOINT_SPM, SOURCE_SPM, TARGET_SPM
from .data.writer import atomic_write_bytes

# 2: checksums.json; 3: attention, role_signal and plateau_metric; 4: config.json's sha256
# in checksums.json. Earlier formats still load: a directory lacks the settings of later
# formats, and meant ADDED_SETTINGS (a function of its training section: the plateau used
# to watch the best_metric).
FORMAT_VERSION = 4
READABLE_FORMATS = (1, 2, 3, 4)
ADDED_SETTINGS = {
    3: lambda training: {
        "model": {"attention": "none", "role_signal": "none"},
        "training": {"plateau_metric": training.get("best_metric", "bleu")},
    }
}

CONFIG = "config.json"
WEIGHTS = "model.weights.h5"
RELEASE_WEIGHTS = "weights.npz"  # a release's arrays (runtime/release.py)
RELEASE_SCALE = "#scale"  # in it, an int8 array's scales are stored under NAME#scale
SHORTLIST = "shortlist.npz"  # a vocabulary shortlist (runtime/shortlist.py), if built
# An ONNX release's graphs (runtime/onnx_graphs.py), by graph: beside weights.npz.
RELEASE_GRAPHS = {"encoder": "encoder.onnx", "step": "step.onnx", "top": "top.onnx"}
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
CHECKPOINT_GLOB = "step-*.npz"
MANAGED = (CONFIG, JOINT_SPM, SOURCE_SPM, TARGET_SPM, WEIGHTS, CHECKSUMS, STATE, METRICS, LOG)

logger = logging.getLogger(__name__)


def checkpoint_name(step: int) -> str:
    """The file name of the checkpoint of `step` (in CHECKPOINTS/)."""
    return f"step-{step:09d}.npz"


def check_saved_document(document: Any, path: Path) -> None:
    """ValueError naming `path` and the entry, for a config.json of the wrong shape (the
    `model` and `training` sections' own settings are checked by `Config.from_dict`)."""

    def refuse(what: str) -> None:
        raise ValueError(f"{path}: {what}; restore the file, or retrain")

    for section in ("model", "training", "vocab"):
        if not isinstance(document.get(section), dict):
            refuse(f"'{section}' is missing or not a mapping")
    vocab = document["vocab"]
    for size in ("source_vocab_size", "target_vocab_size"):
        value = vocab.get(size)
        if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            refuse(f"vocab.{size} is {value!r}, not a positive integer")
    release = document.get("release", {"precision": "float32"})
    if not (
        isinstance(release, dict)
        and release.get("precision") in RELEASE_PRECISIONS
        and release.get("runtime", "numpy") in RELEASE_RUNTIMES
    ):
        refuse(
            f"release is {release!r}, not {{'precision': one of {RELEASE_PRECISIONS}, "
            f"'runtime': one of {RELEASE_RUNTIMES}}}"
        )
    models = vocab.get("sentencepiece_sha256")
    known = ({JOINT_SPM}, {SOURCE_SPM, TARGET_SPM})
    if not (
        isinstance(models, dict)
        and set(models) in known
        and all(isinstance(digest, str) for digest in models.values())
    ):
        refuse(
            f"vocab.sentencepiece_sha256 is {models!r}, not {{file name: sha256}} for "
            f"{JOINT_SPM} or {SOURCE_SPM} + {TARGET_SPM}"
        )


def parse_config(data: bytes, path: Path) -> dict[str, Any]:
    """config.json's bytes as a document of a readable format and of the right shape."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ValueError(f"{path}: corrupt ({error}); restore it or retrain") from None
    if not isinstance(document, dict):
        raise ValueError(
            f"{path}: a JSON {type(document).__name__}, not an object; restore it or retrain"
        )
    version = document.get("format_version")
    if version not in READABLE_FORMATS:
        raise ValueError(
            f"{path}: model directory format {version!r}, but this "
            f"seq2seq-shared ({__version__}) reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}; "
            f"use the version that wrote it, or retrain"
        )
    check_saved_document(document, path)
    return document


def with_added_settings(document: dict[str, Any]) -> dict[str, Any]:
    """The settings later formats added, as an earlier directory meant them."""
    for added_in, settings in ADDED_SETTINGS.items():
        if document["format_version"] < added_in:
            for section, values in settings(document["training"]).items():
                document[section] = {**values, **document[section]}
    return document


class ModelDir:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._document: dict[str, Any] | None = None  # config.json, parsed once
        remedy = f"retrain (`train` resumes from {CHECKPOINTS}/)"
        known = (CONFIG, WEIGHTS, RELEASE_WEIGHTS, *RELEASE_GRAPHS.values(), SHORTLIST)
        self.checksums = Checksums(self.path, CHECKSUMS, remedy, known)

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
        release: dict[str, Any] | None = None,
    ) -> None:
        """config.json; `release` ({"precision": ...}) marks a release (runtime/)."""
        document: dict[str, Any] = {
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
        if release is not None:
            document["release"] = release
        text = json.dumps(document, indent=2) + "\n"
        self.checksums.write(CONFIG, lambda temporary: temporary.write_text(text, "utf-8"))
        self._document = document

    def read_config_document(self) -> dict[str, Any]:
        """config.json as written (parsed once per ModelDir): format and package version,
        `model`, `training` and `vocab` sections."""
        if self._document is None:
            self._document = self._parse_config()
        return self._document

    def _parse_config(self) -> dict[str, Any]:
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(
                f"{self.path}: a file, not a model directory; pass the directory that "
                f"`train` or `release` wrote"
            )
        if not self.path.is_dir():
            raise FileNotFoundError(
                f"{self.path}: model directory not found; train one with "
                f"`seq2seq-shared train ... --model-dir {self.path}`"
            )
        path = self.path / CONFIG
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: missing; {self.path} is not a seq2seq-shared model "
                f"directory (or its training never got past the start)"
            )
        data = path.read_bytes()
        document = parse_config(data, path)
        self.checksums.verify(CONFIG, data, required=False)
        return with_added_settings(document)

    def read_config(self) -> Config:
        document = self.read_config_document()
        return Config.from_dict(
            {"model": document["model"], "training": document["training"]},
            source=str(self.path / CONFIG),
        )

    def save_tokenizer(self, tokenizer) -> dict[str, bytes]:
        """Write the SentencePiece model(s); returns {file name: bytes} for the config's hashes."""
        models = tokenizer.files()
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
        remedy = "restore the original file or retrain"
        return Tokenizer.from_files(self.path, expected, self.path / CONFIG, remedy)

    # Model and weights -------------------------------------------------------------------

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
        """Write the weights and record their sha256, so that damage is caught on loading."""
        self.checksums.write(WEIGHTS, model.save_weights)

    def verify_weights(self, digest: str | None = None) -> None:
        """Refuse a weights file that is missing or differs from its recorded sha256
        (`digest`: the file's, where the caller has hashed it already). A directory of
        format 1 has no checksums.json; where one is present it is checked, whatever
        config.json says."""
        path = self._existing_weights()
        required = self.read_config_document()["format_version"] >= 2
        self.checksums.verify(WEIGHTS, digest or file_sha256(path), required=required)

    def is_release(self) -> bool:
        """A translate-only release (runtime/): no Keras weights, no checkpoints."""
        return "release" in self.read_config_document()

    def _existing_weights(self) -> Path:
        if self.is_release():
            raise ValueError(
                f"{self.path}: a release (translate-only, without Keras weights or "
                f"checkpoints): `translate`, `evaluate` and `serve` take it; for this, "
                f"use the model directory it was released from"
            )
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
        release = self.is_release()
        weights = release_files(self) if release else [self._existing_weights().name]
        spm = {path.name for path in self.sentencepiece_files().values()}
        digests = {name: file_sha256(self.path / name) for name in sorted({CONFIG, *weights, *spm})}
        for name in weights if release else []:
            self.checksums.verify(name, digests[name], required=True)
        if not release:
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


def release_files(directory: ModelDir) -> list[str]:
    """The files holding a release's network: weights.npz, and for ONNX the graphs (before
    `shared_weights`: the encoder and the step alone, holding their own weights)."""
    release = directory.read_config_document()["release"]
    if release.get("runtime", "numpy") != "onnx":
        return [RELEASE_WEIGHTS]
    if not release.get("shared_weights"):
        return [RELEASE_GRAPHS["encoder"], RELEASE_GRAPHS["step"]]
    return [*RELEASE_GRAPHS.values(), RELEASE_WEIGHTS]


def read_release_file(directory: ModelDir, name: str) -> bytes:
    """One of a release's `release_files`, checked against its checksums.json."""
    path = directory.path / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; restore the release, or release again")
    data = path.read_bytes()
    directory.checksums.verify(name, data, required=True)
    return data
