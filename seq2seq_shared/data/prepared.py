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
(`numpy.memmap`) and reads each batch's ids from the files (`encoded.FileIds`). `prepare` streams:
one pass checks the corpus (`check.scan_corpus`: the messages of `check-data`), hashes
the files and samples lines for SentencePiece; a second encodes the kept pairs. Memory
holds the sample and a few bytes per pair, never the corpus. It writes into a temporary
sibling renamed into place at the end: a killed prepare leaves no half-prepared data.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..config import ModelConfig, TrainingConfig
from .check import CorpusReport, scan_corpus
from .encoded import EncodedPairs, FileIds
from .files import file_sha256, sha256

logger = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "prepared.json"
JOINT_SPM, SOURCE_SPM, TARGET_SPM = "sentencepiece.model", "source.model", "target.model"
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
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{manifest}: corrupt ({error}); prepare the corpus again") from None
        if self.manifest.get("format") != FORMAT:
            raise ValueError(
                f"{manifest}: prepared-corpus format {self.manifest.get('format')!r}"
                f", but this seq2seq-shared ({__version__}) reads format {FORMAT}; "
                f"prepare the corpus again"
            )

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

        models = {}
        for name, digest in self.manifest["sentencepiece_sha256"].items():
            data = (self.path / name).read_bytes()
            if sha256(data) != digest:
                raise ValueError(
                    f"{self.path / name}: damaged (sha256 differs from "
                    f"{self.path / MANIFEST}); prepare the corpus again"
                )
            models[name] = data
        if JOINT_SPM in models:
            return Tokenizer(models[JOINT_SPM])
        return Tokenizer(models[SOURCE_SPM], models[TARGET_SPM])

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

        tokens = self.manifest["tokens"]
        return EncodedPairs(
            file_ids("source.ids", tokens["source"]),
            array("source.offsets", "int64", (count + 1,)),
            file_ids("target.ids", tokens["target"]),
            array("target.offsets", "int64", (count + 1,)),
            lengths=np.array(array("lengths", "int32", (count, 2))),
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


def prepare(
    source_path: Path | str,
    target_path: Path | str,
    directory: Path | str,
    settings: PrepareSettings,
    tokenizer=None,
    overwrite: bool = False,
) -> PreparedCorpus:
    """Check, tokenize and encode a corpus into `directory`; a clear ValueError (with
    check-data's file:line findings) if it cannot be used. `tokenizer`: encode with this
    one instead of training SentencePiece (a run that began before its data was prepared).
    """
    directory = Path(directory)
    if directory.exists():
        if not overwrite:
            raise ValueError(
                f"{directory}: already exists; choose a new directory, or pass "
                f"--overwrite to prepare it again"
            )
        if not (
            PreparedCorpus.is_prepared(directory)
            or (directory.is_dir() and not any(directory.iterdir()))
        ):
            raise ValueError(
                f"{directory}: not a prepared corpus (no {MANIFEST}), so "
                f"--overwrite leaves it alone; choose a new directory"
            )
    sample = _Sample(settings, wanted=tokenizer is None)
    report = scan_corpus(source_path, target_path, settings.max_length, sample.add)
    _refuse_if_unusable(report)
    for line in report.warnings + report.dropped_and_duplicates():
        logger.warning("%s", line)
    if tokenizer is None:
        tokenizer = sample.tokenizer()
    del sample  # its lines, before the encoding pass
    directory.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    umask = os.umask(0)
    os.umask(umask)
    temporary.chmod(0o777 & ~umask)  # as a directory made with mkdir (mkdtemp's is private)
    try:
        manifest = _write(temporary, source_path, target_path, settings, tokenizer, report)
        (temporary / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _replace(directory, temporary)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    logger.info(
        "prepared %d pairs (%d source / %d target pieces) in %s",
        manifest["pairs"],
        manifest["tokens"]["source"],
        manifest["tokens"]["target"],
        directory,
    )
    return PreparedCorpus(directory)


def _replace(directory: Path, new: Path) -> None:
    """Put the directory `new` in `directory`'s place: the old one stays whole until the
    new one is renamed in (a rename is atomic; a directory cannot replace another)."""
    old = None
    if directory.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
        os.rename(directory, old / directory.name)
    try:
        os.rename(new, directory)
    except BaseException:
        if old is not None:  # put the old one back
            os.rename(old / directory.name, directory)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _refuse_if_unusable(report: CorpusReport) -> None:
    if not report.ok:
        raise ValueError(
            "; ".join(report.errors) + f". (`seq2seq-shared check-data "
            f"{report.source_path} {report.target_path}` shows the full report)"
        )


class _Sample:
    """Lines for SentencePiece, drawn uniformly from the kept pairs while they stream by
    (reservoir sampling, seeded): at most `sample_lines` per vocabulary."""

    def __init__(self, settings: PrepareSettings, wanted: bool):
        self.settings, self.wanted = settings, wanted
        self.random = random.Random(settings.seed)
        self.sides = [[]] if settings.joint_vocab else [[], []]
        self.seen = [0] * len(self.sides)

    def add(self, line: int, source: str, target: str) -> None:
        if not self.wanted:
            return
        for side, text in enumerate((source, target)):
            self._offer(0 if self.settings.joint_vocab else side, text)

    def _offer(self, side: int, text: str) -> None:
        self.seen[side] += 1
        lines = self.sides[side]
        if len(lines) < self.settings.sample_lines:
            lines.append(text)
            return
        slot = self.random.randrange(self.seen[side])
        if slot < self.settings.sample_lines:
            lines[slot] = text

    def tokenizer(self):
        from .tokenizer import train_tokenizer

        settings = self.settings
        sources, targets = (self.sides[0], []) if settings.joint_vocab else self.sides
        return train_tokenizer(
            sources,
            targets,
            joint=settings.joint_vocab,
            vocab_size=settings.vocab_size,
            model_type=settings.model_type,
            sample_lines=settings.sample_lines,
            seed=settings.seed,
        )


def _write(
    directory: Path,
    source_path,
    target_path,
    settings: PrepareSettings,
    tokenizer,
    report: CorpusReport,
) -> dict[str, Any]:
    """Encode the kept pairs into `directory`'s arrays (a second streaming pass); the
    manifest to write beside them."""
    dtype = np.dtype(
        "<u2" if max(tokenizer.source_vocab_size, tokenizer.target_vocab_size) <= 65536 else "<i4"
    )
    writer = _ArrayWriter(directory, tokenizer, dtype)
    second = scan_corpus(source_path, target_path, settings.max_length, writer.add)
    writer.close()
    if second.sha256 != report.sha256 or second.kept != report.kept:
        raise ValueError(
            f"{source_path} / {target_path} changed while being prepared; "
            f"prepare again once nothing writes to them"
        )
    models = dict(
        zip(
            (JOINT_SPM,) if tokenizer.joint else (SOURCE_SPM, TARGET_SPM),
            (m for m in tokenizer.serialized() if m is not None),
        )
    )
    for name, data in models.items():
        (directory / name).write_bytes(data)
    files = {}
    for side, path, lines in (
        ("source", Path(source_path), report.source_lines),
        ("target", Path(target_path), report.target_lines),
    ):
        status = path.stat()
        files[side] = {
            "path": str(path.resolve()),
            "bytes": status.st_size,
            "mtime_ns": status.st_mtime_ns,
            "sha256": report.sha256[side],
            "lines": lines,
        }
    return {
        "format": FORMAT,
        "package_version": __version__,
        "files": files,
        "settings": dataclasses.asdict(settings),
        "pairs": writer.pairs,
        "tokens": {"source": writer.tokens[0], "target": writer.tokens[1]},
        "ids_dtype": dtype.str.lstrip("<|"),
        "vocab": {
            "joint": tokenizer.joint,
            "source_vocab_size": tokenizer.source_vocab_size,
            "target_vocab_size": tokenizer.target_vocab_size,
        },
        "sentencepiece_sha256": {name: sha256(data) for name, data in models.items()},
        "check": report.to_dict(),
    }


class _ArrayWriter:
    """Encodes pairs a chunk at a time and appends their ids, offsets, lengths and line
    numbers to the prepared directory's files."""

    def __init__(self, directory: Path, tokenizer, dtype: np.dtype):
        self.tokenizer, self.dtype = tokenizer, dtype
        names = ("source.ids", "target.ids", *ARRAYS)
        self.files = {name: open(directory / name, "wb") for name in names}
        self.pending: list[tuple[int, str, str]] = []
        self.pairs, self.tokens = 0, [0, 0]
        for side in ("source", "target"):  # the first offset
            self.files[f"{side}.offsets"].write(np.zeros(1, "<i8").tobytes())

    def add(self, line: int, source: str, target: str) -> None:
        self.pending.append((line, source, target))
        if len(self.pending) >= ENCODE_CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        lines, sources, targets = zip(*self.pending)
        self.pending = []
        encoded = (self.tokenizer.encode_source(sources), self.tokenizer.encode_target(targets))
        lengths = np.array([[len(s), len(t)] for s, t in zip(*encoded)], dtype="<i4")
        for side, (name, ids) in enumerate(zip(("source", "target"), encoded)):
            count = int(lengths[:, side].sum())
            flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=self.dtype, count=count)
            self.files[f"{name}.ids"].write(flat.tobytes())
            offsets = self.tokens[side] + np.cumsum(lengths[:, side], dtype="<i8")
            self.files[f"{name}.offsets"].write(offsets.tobytes())
            self.tokens[side] += count
        self.files["lengths"].write(lengths.tobytes())
        self.files["lines"].write(np.array(lines, dtype="<i4").tobytes())
        self.pairs += len(lines)

    def close(self) -> None:
        self._flush()
        for file in self.files.values():
            file.flush()
            os.fsync(file.fileno())
            file.close()
