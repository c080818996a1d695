"""Writing a prepared corpus (prepared.py): check, tokenize and encode a corpus once.

The role of `fairseq-preprocess` and OpenNMT's `build_vocab`. `prepare` streams: one pass
checks the corpus (`check.scan_corpus`: the messages of `check-data`), hashes the files
and samples lines for SentencePiece; a second encodes the kept pairs. Memory holds the
sample and a few bytes per pair, never the corpus. It writes into a temporary sibling
renamed into place at the end: a killed prepare leaves no half-prepared data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from .check import CorpusReport, scan_corpus
from .files import check_rereadable, sha256
from .prepared import (
    ARRAYS,
    FORMAT,
    MANIFEST,
    PreparedCorpus,
    PrepareSettings,
)

logger = logging.getLogger(__name__)

ENCODE_CHUNK = 20_000  # pairs encoded at a time


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
    _check_replaceable(directory, overwrite)
    for path in (source_path, target_path):
        check_rereadable(Path(path), "a corpus is read twice (checked, then encoded)")
    sample = _Sample(settings, wanted=tokenizer is None)
    report = scan_corpus(source_path, target_path, settings.max_length, sample.add)
    report.raise_if_unusable()
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


def _check_replaceable(directory: Path, overwrite: bool) -> None:
    """Refuse an existing `directory` unless --overwrite and it is a prepared corpus (or
    empty): a user's folder is never replaced."""
    if not directory.exists():
        return
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


class _Sample:
    """Lines for SentencePiece, drawn uniformly from the kept pairs while they stream by
    (reservoir sampling, seeded): at most `sample_lines` per vocabulary."""

    def __init__(self, settings: PrepareSettings, wanted: bool):
        self.settings, self.wanted = settings, wanted
        self.random = random.Random(settings.seed)
        self.sides: list[list[str]] = [[]] if settings.joint_vocab else [[], []]
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
    models = tokenizer.files()
    for name, data in models.items():
        (directory / name).write_bytes(data)
    return {
        "format": FORMAT,
        "package_version": __version__,
        "files": _file_records(source_path, target_path, report),
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
        "arrays_sha256": writer.sha256(),
        "check": report.to_dict(),
    }


def _file_records(source_path, target_path, report: CorpusReport) -> dict[str, dict]:
    """What the manifest records of the corpus files, to know them again on resume."""
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
    return files


class _ArrayWriter:
    """Encodes pairs a chunk at a time and appends their ids, offsets, lengths and line
    numbers to the prepared directory's files."""

    def __init__(self, directory: Path, tokenizer, dtype: np.dtype):
        self.tokenizer, self.dtype = tokenizer, dtype
        names = ("source.ids", "target.ids", *ARRAYS)
        self.files = {name: open(directory / name, "wb") for name in names}
        self.digests = {name: hashlib.sha256() for name in names}  # what the files hold
        self.pending: list[tuple[int, str, str]] = []
        self.pairs, self.tokens = 0, [0, 0]
        for side in ("source", "target"):  # the first offset
            self._write(f"{side}.offsets", np.zeros(1, "<i8").tobytes())

    def _write(self, name: str, data: bytes) -> None:
        self.files[name].write(data)
        self.digests[name].update(data)

    def sha256(self) -> dict[str, str]:
        return {name: digest.hexdigest() for name, digest in self.digests.items()}

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
            self._write(f"{name}.ids", flat.tobytes())
            offsets = self.tokens[side] + np.cumsum(lengths[:, side], dtype="<i8")
            self._write(f"{name}.offsets", offsets.tobytes())
            self.tokens[side] += count
        self._write("lengths", lengths.tobytes())
        self._write("lines", np.array(lines, dtype="<i4").tobytes())
        self.pairs += len(lines)

    def close(self) -> None:
        self._flush()
        for file in self.files.values():
            file.flush()
            os.fsync(file.fileno())
            file.close()
