"""A prepared corpus: checked, tokenized and encoded once, memory-mapped ever after.

The role of `fairseq-preprocess` and OpenNMT's `build_vocab`. The ONLY module that knows
a prepared directory's layout:

    prepared.json          format, the corpus files (path, bytes, mtime, sha256, lines), the
                           check's report, the settings, pair and token counts, the ids' dtype
    sentencepiece.model    joint vocabulary (or source.model + target.model)
    source.ids target.ids  each side's ids end to end (uint16, or int32 for vocabularies
                           over 65,536 pieces)
    source.offsets target.offsets   (pairs + 1,) int64: pair i is ids[offsets[i]:offsets[i+1]]
    lengths                (pairs, 2) int32: source and target pieces, the length index
    lines                  (pairs,) int32: each pair's 1-based line in the corpus files

The arrays are raw little-endian files (like fairseq's .bin/.idx), appended to chunk by
chunk while encoding. Training holds the length index in memory, memory-maps the offsets
(`numpy.memmap`) and reads each batch's ids from the files (`encoded.FileIds`). Writing
one is `prepare.py`'s job.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..config import ModelConfig, TrainingConfig
from . import files
from .encoded import EncodedPairs, FileIds
from .files import file_sha256

logger = logging.getLogger(__name__)

FORMAT = 2  # 2: the arrays' sha256 in the manifest (format 1 is read without them)
READABLE_FORMATS = (1, 2)
MANIFEST = "prepared.json"
ARRAYS = {
    "source.offsets": "int64",
    "target.offsets": "int64",
    "lengths": "int32",
    "lines": "int32",
}  # besides source.ids and target.ids, of the manifest's dtype
ENCODE_CHUNK = 20_000  # pairs encoded at a time


@dataclass(frozen=True)
class PrepareSettings:
    """What the prepared ids depend on (besides the corpus): the vocabulary's settings and
    the length rule's N (`check.length_excess`)."""

    # A training run's defaults (`of(Config())`), as `prepare`'s options have them.
    joint_vocab: bool = ModelConfig.joint_vocab
    vocab_size: int = ModelConfig.vocab_size
    model_type: str = TrainingConfig.sentencepiece_model_type
    sample_lines: int = TrainingConfig.sentencepiece_sample_lines
    seed: int = TrainingConfig.seed
    max_length: int | None = max(ModelConfig.max_source_length, TrainingConfig.max_target_length)

    @classmethod
    def of(cls, config) -> PrepareSettings:
        """The settings a training run of `config` prepares its raw files with."""
        model, training = config.model, config.training
        return cls(
            joint_vocab=model.joint_vocab,
            vocab_size=model.vocab_size,
            model_type=training.sentencepiece_model_type,
            sample_lines=training.sentencepiece_sample_lines,
            seed=training.seed,
            max_length=max(model.max_source_length, training.max_target_length),
        )


SIDES = ("source", "target")


def check_manifest(manifest: Any, path: Path) -> None:
    """ValueError naming `path` and the entry, for a manifest of the wrong shape."""

    def refuse(what: str) -> None:
        raise ValueError(f"{path}: {what}; prepare the corpus again")

    def mapping(value: Any, what: str) -> dict:
        if not isinstance(value, dict):
            refuse(f"{what} is {value!r}, not a mapping")
        return value

    def count(value: Any, what: str) -> None:
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            refuse(f"{what} is {value!r}, not a count")

    count(manifest.get("pairs"), "pairs")
    for side in SIDES:
        count(mapping(manifest.get("tokens"), "tokens").get(side), f"tokens.{side}")
        record = mapping(mapping(manifest.get("files"), "files").get(side), f"files.{side}")
        for key in ("bytes", "mtime_ns", "lines"):
            count(record.get(key), f"files.{side}.{key}")
        if not isinstance(record.get("sha256"), str):
            refuse(f"files.{side}.sha256 is missing")
        count(mapping(manifest.get("vocab"), "vocab").get(f"{side}_vocab_size"), "vocab")
    if manifest.get("ids_dtype") not in ("u2", "i4"):
        refuse(f"ids_dtype is {manifest.get('ids_dtype')!r}, not u2 or i4")
    for key in (
        "sentencepiece_sha256",
        "settings",
        *(["arrays_sha256"] * (manifest["format"] > 1)),
    ):
        mapping(manifest.get(key), key)
    try:
        PrepareSettings(**manifest["settings"])
    except TypeError as error:
        refuse(f"settings: {error}")


class PreparedCorpus:
    """A prepared directory, opened: its tokenizer, memory-mapped pairs and record."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not self.path.is_dir():
            hidden = sorted(self.path.parent.glob(f".{self.path.name}.old-*/{self.path.name}"))
            if hidden:  # a prepare --overwrite killed between its two renames
                raise FileNotFoundError(
                    f"{self.path}: missing, but the previous one is in "
                    f"{hidden[-1]}: move it back, or prepare again"
                )
            raise FileNotFoundError(
                f"{self.path}: no such directory; make it with "
                f"`seq2seq-shared prepare SOURCE TARGET {self.path}`"
            )
        try:
            self.manifest = json.loads(manifest.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{manifest}: missing; {self.path} is not a prepared "
                f"corpus (make one with `seq2seq-shared prepare`)"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
            raise ValueError(f"{manifest}: corrupt ({error}); prepare the corpus again") from None
        if not isinstance(self.manifest, dict):
            raise ValueError(
                f"{manifest}: a JSON {type(self.manifest).__name__}, not an object; "
                f"prepare the corpus again"
            )
        version = self.manifest.get("format")
        if version not in READABLE_FORMATS:
            raise ValueError(
                f"{manifest}: prepared-corpus format {version!r}, but this seq2seq-shared "
                f"({__version__}) reads formats {READABLE_FORMATS}; prepare the corpus again"
            )
        check_manifest(self.manifest, manifest)

    @staticmethod
    def is_prepared(path: Path | str) -> bool:
        return (Path(path) / MANIFEST).is_file()

    @property
    def settings(self) -> PrepareSettings:
        return PrepareSettings(**self.manifest["settings"])

    @property
    def data_sha256(self) -> dict[str, str]:
        """The corpus files' sha256, as a run's state records them."""
        files = self.manifest["files"]
        return {
            "train_source": files["source"]["sha256"],
            "train_target": files["target"]["sha256"],
        }

    def __len__(self) -> int:
        return self.manifest["pairs"]

    def tokenizer(self):
        from .tokenizer import Tokenizer

        expected = self.manifest["sentencepiece_sha256"]
        remedy = "prepare the corpus again"
        return Tokenizer.from_files(self.path, expected, self.path / MANIFEST, remedy)

    def pairs(self) -> EncodedPairs:
        """The pairs: their length index in memory, offsets memory-mapped, ids read as
        batches ask for them (`encoded.FileIds`)."""
        count, ids = self.manifest["pairs"], self.manifest["ids_dtype"]

        def checked(name: str, dtype: str, shape: tuple[int, ...]) -> int:
            """The file's size in bytes, which must be that of `shape` of `dtype`."""
            path = self.path / name
            expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
            if not path.is_file() or path.stat().st_size != expected:
                raise ValueError(
                    f"{path}: missing or of the wrong size (expected {expected} "
                    f"bytes); prepare the corpus again"
                )
            return expected

        def array(name: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
            if not checked(name, dtype, shape):
                return np.zeros(shape, dtype)
            return np.memmap(
                self.path / name, dtype=np.dtype(dtype).newbyteorder("<"), mode="r", shape=shape
            )

        def file_ids(name: str, length: int) -> FileIds:
            checked(name, ids, (length,))
            return FileIds(self.path / name, np.dtype(ids).newbyteorder("<"), length)

        tokens, vocab = self.manifest["tokens"], self.manifest["vocab"]
        self._verify_arrays()
        lengths = np.array(array("lengths", "int32", (count, 2)))
        offsets = [array(f"{side}.offsets", "int64", (count + 1,)) for side in SIDES]
        for side, (offsets_, total) in enumerate(
            zip(offsets, (tokens["source"], tokens["target"]))
        ):
            self._check_offsets(SIDES[side], offsets_, lengths[:, side], total)
        source_ids = file_ids("source.ids", tokens["source"])
        target_ids = file_ids("target.ids", tokens["target"])
        source_ids.limit, target_ids.limit = vocab["source_vocab_size"], vocab["target_vocab_size"]
        return EncodedPairs(source_ids, offsets[0], target_ids, offsets[1], lengths=lengths)

    def _verify_arrays(self) -> None:
        """Each array file against the sha256 recorded when it was written (format 2),
        one read of every file: damage inside the id range would otherwise train silently."""
        for name, digest in self.manifest.get("arrays_sha256", {}).items():
            path = self.path / name
            if path.is_file() and files.file_sha256(path) != digest:  # (the arrays)
                raise ValueError(
                    f"{path}: damaged: its sha256 differs from the one recorded in "
                    f"{self.path / MANIFEST}; prepare the corpus again"
                )

    def _check_offsets(self, side: str, offsets: np.ndarray, lengths: np.ndarray, total: int):
        """The offsets must start at 0, end at the side's token count and step by each
        pair's length: else pairs would read each other's ids."""
        if len(offsets) and not (
            offsets[0] == 0 and offsets[-1] == total and np.array_equal(np.diff(offsets), lengths)
        ):
            raise ValueError(
                f"{self.path / (side + '.offsets')}: damaged (the offsets do not follow the "
                f"lengths); prepare the corpus again"
            )

    def changed(self, source_path: Path | str, target_path: Path | str) -> list[str]:
        """Which corpus files ("train_source", "train_target") are no longer the ones
        prepared here: judged by size and modification time (no read, as `make` and rsync
        judge), and where those differ, by sha256."""
        files, changed = self.manifest["files"], []
        for side, path in (("source", Path(source_path)), ("target", Path(target_path))):
            record, status = files[side], path.stat()
            if (status.st_size, status.st_mtime_ns) == (record["bytes"], record["mtime_ns"]):
                continue
            if status.st_size != record["bytes"] or file_sha256(path) != record["sha256"]:
                changed.append(f"train_{side}")
        return changed
