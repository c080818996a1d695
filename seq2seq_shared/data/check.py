"""The pre-flight check of a parallel corpus: nothing silently misaligned, nothing lost unsaid.

Lines are counted by "\\n" alone, as `wc -l` counts them. The check flags what makes other
tools count lines differently (\\r, U+0085, U+2028, U+2029), NUL bytes and invalid UTF-8,
each as `file:line:byte`. A UTF-8 byte order mark opening a file is removed (a warning
says so); one anywhere else is flagged. Pairs with an empty or over-long side are dropped
together, never one side alone. Source and target being the same file is a warning, and
the pairs whose target is identical to their source are counted (a warning when they are
most of the kept pairs: a copied file, or an untranslated corpus).

The length rule (`length_excess`, for `check-data --max-length N` and for `train`, which
passes its longest piece limit as N): a side is over-long if it has more than N
whitespace-separated words, or more than `MAX_CHARACTERS_PER_WORD * N` characters. Both
catch lines that `train` would drop for having more than N SentencePiece pieces, without
the tokenizer: a word is at least one piece, and the character cap catches lines with few
spaces (a URL dump, CJK text). Lines within both limits can still exceed N pieces; `train`
drops those after tokenizing, and says how many.

Python and NumPy, one streaming pass: `seq2seq-shared check-data` runs it without Keras,
in memory that does not grow with the text (a few bytes per line).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .files import open_input

SHOWN = 5  # line numbers listed per finding
BOM = b"\xef\xbb\xbf"  # the UTF-8 byte order mark (U+FEFF), written by some Windows editors
IDENTICAL_WARNING_SHARE = 0.5  # warn when more of the kept pairs than this are copies

# The character cap per word of the length limit. SentencePiece never joins words (pieces
# stop at whitespace), so a line has at least as many pieces as words: one over N words is
# surely over N pieces. A line with few spaces passes that test whatever its size, so
# characters are capped too. A piece covers at least one character and at most 16
# (SentencePiece's default max_sentencepiece_length), 3-5 on average in natural text: a
# line of more than 10 characters per allowed piece is, in practice, always over the piece
# limit, while normal sentences (about 6 characters per word, space included) stay far
# below the cap.
MAX_CHARACTERS_PER_WORD = 10

# Byte sequences that some tools treat as line breaks (or that break C-string tools).
SUSPICIOUS = {
    b"\r": "carriage return (\\r)",
    b"\x00": "NUL byte",
    "\u0085".encode(): "NEXT LINE (U+0085)",
    "\u2028".encode(): "LINE SEPARATOR (U+2028)",
    "\u2029".encode(): "PARAGRAPH SEPARATOR (U+2029)",
    BOM: "byte order mark (U+FEFF) inside the file (files joined with `cat`?)",
}


@dataclass
class Finding:
    """One kind of problem in one file: how many lines, and the first few `line:byte`."""

    path: str
    what: str
    lines: int = 0
    first: list[str] = field(default_factory=list)

    def add(self, line: int, byte: int) -> None:
        self.lines += 1
        if len(self.first) < SHOWN:
            self.first.append(f"{line}:{byte}")

    def __str__(self) -> str:
        more = ", ..." if self.lines > len(self.first) else ""
        return (
            f"{self.path}:{self.first[0]}: {self.what} on {self.lines} line(s) "
            f"(line:byte {', '.join(self.first)}{more})"
        )


@dataclass
class CorpusReport:
    source_path: str
    target_path: str
    source_lines: int = 0
    target_lines: int = 0
    errors: list[str] = field(default_factory=list)  # the corpus cannot be used as is
    warnings: list[str] = field(default_factory=list)  # usable, but worth a look
    dropped: dict[str, list[int]] = field(default_factory=dict)  # reason -> line numbers
    duplicates: list[int] = field(default_factory=list)  # lines repeating an earlier pair
    identical: list[int] = field(default_factory=list)  # lines whose target == source
    kept: int = 0  # pairs kept
    sha256: dict[str, str] = field(default_factory=dict)  # "source", "target": the files'
    sources: list[str] = field(default_factory=list)  # the kept pairs' text (check_corpus)
    targets: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> list[str]:
        """The report as lines of text, most important first."""
        lines = [
            f"{self.source_path}: {self.source_lines} lines",
            f"{self.target_path}: {self.target_lines} lines",
        ]
        lines += [f"error: {e}" for e in self.errors]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += self.dropped_and_duplicates()
        if self.identical:
            lines.append(
                f"{len(self.identical)} pair(s) ({self.identical_share:.0%}) have a "
                f"target identical to their source (kept; lines "
                f"{_first(self.identical)})"
            )
        if self.ok:
            lines.append(f"kept {self.kept} of {self.source_lines} pairs")
        return lines

    def dropped_and_duplicates(self) -> list[str]:
        lines = []
        for reason, numbers in self.dropped.items():
            lines.append(
                f"dropped {len(numbers)} pair(s) {reason} (both sides; lines {_first(numbers)})"
            )
        if self.duplicates:
            lines.append(
                f"{len(self.duplicates)} pair(s) repeat an earlier pair (kept; lines "
                f"{_first(self.duplicates)})"
            )
        return lines

    @property
    def identical_share(self) -> float:
        """The share of kept pairs whose target is identical to their source."""
        return len(self.identical) / self.kept if self.kept else 0.0

    def raise_if_unusable(self) -> None:
        """ValueError with the errors and the command that shows the whole report."""
        if not self.ok:
            raise ValueError(
                "; ".join(self.errors) + f". (`seq2seq-shared check-data "
                f"{self.source_path} {self.target_path}` shows the full report)"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source_path,
            "target": self.target_path,
            "source_lines": self.source_lines,
            "target_lines": self.target_lines,
            "ok": self.ok,
            "errors": self.errors,
            "warnings": self.warnings,
            "dropped": {
                reason: {"pairs": len(numbers), "first_lines": numbers[:SHOWN]}
                for reason, numbers in self.dropped.items()
            },
            "duplicates": {"pairs": len(self.duplicates), "first_lines": self.duplicates[:SHOWN]},
            "identical": {
                "pairs": len(self.identical),
                "share": round(self.identical_share, 4),
                "first_lines": self.identical[:SHOWN],
            },
            "kept": self.kept,
            "sha256": self.sha256,
        }


def check_corpus(
    source_path: Path | str, target_path: Path | str, max_length: int | None = None
) -> CorpusReport:
    """Check a parallel corpus; `report.sources` / `report.targets` hold the usable pairs
    (for sets that fit in memory: validation, evaluation; `scan_corpus` streams)."""
    sources: list[str] = []
    targets: list[str] = []

    def collect(line: int, source: str, target: str) -> None:
        sources.append(source)
        targets.append(target)

    report = scan_corpus(source_path, target_path, max_length, collect)
    report.sources, report.targets = sources, targets
    return report


def scan_corpus(
    source_path: Path | str,
    target_path: Path | str,
    max_length: int | None = None,
    keep: Callable[[int, str, str], None] | None = None,
) -> CorpusReport:
    """Check a parallel corpus in one streaming pass, handing each usable pair to
    `keep(line, source, target)` in order; the files' sha256 are computed on the way.

    `max_length` is the length rule's N (see `length_excess`): pairs with a side over it
    are dropped. A trailing "\\r" (CRLF files) and a leading byte order mark are removed.
    Memory: a few bytes per line (lengths for locating a misalignment, a hash per kept
    pair for duplicates), never the text. `keep` is called before the whole corpus is
    checked: its pairs are only usable if the report is `ok`.
    """
    report = CorpusReport(str(source_path), str(target_path))
    pairs = _Pairs(report, max_length, keep)
    with open_input(Path(source_path)) as source_file, open_input(Path(target_path)) as target_file:
        if os.path.samefile(source_path, target_path):
            report.warnings.append(
                f"{source_path} and {target_path} are the same file: every "
                f"target is its source; pass the translations as TARGET"
            )
        source, target = _Side(report.source_path), _Side(report.target_path)
        for number, (source_raw, target_raw) in enumerate(
            itertools.zip_longest(source_file, target_file), start=1
        ):
            source_text = None if source_raw is None else source.read(number, source_raw)
            target_text = None if target_raw is None else target.read(number, target_raw)
            if source_text is not None and target_text is not None:
                pairs.add(number, source_text, target_text)
    for name, side in (("source", source), ("target", target)):
        side.finish(report)
        report.sha256[name] = side.digest.hexdigest()
    report.source_lines, report.target_lines = source.lines, target.lines
    if source.lines != target.lines:  # pairs of misaligned lines mean nothing
        _report_misalignment(report, source, target)
    if not report.ok:
        return report
    pairs.finish()
    if not report.kept:
        report.errors.append(f"{source_path} / {target_path}: no usable pair is left")
    elif report.identical_share > IDENTICAL_WARNING_SHARE:
        report.warnings.append(
            f"{source_path} / {target_path}: {len(report.identical)} of {report.kept} kept "
            f"pairs ({report.identical_share:.0%}) have a target identical to their source "
            f"(lines {_first(report.identical)}): is one file a copy of the other?"
        )
    return report


def _report_misalignment(report: CorpusReport, source: _Side, target: _Side) -> None:
    """Files of unequal line counts: no pair counts, and the error says where they part."""
    report.dropped, report.identical, report.kept = {}, [], 0
    line = first_divergence(source.lengths, target.lengths)
    report.errors.insert(
        0,
        (
            f"{report.source_path} has {source.lines} lines but {report.target_path} has "
            f'{target.lines} (counting "\\n" as `wc -l` does): line i of one must translate '
            f"line i of the other. Judging by sentence lengths, they stop corresponding near "
            f"line {line}; look for a missing, extra or split line there"
        ),
    )


def length_excess(text: str, max_length: int | None) -> str | None:
    """Why one side is over-long for the limit `max_length`, or None if it fits.

    The one length rule of check-data and train (see the module docstring): more than
    `max_length` words, or more than `MAX_CHARACTERS_PER_WORD * max_length` characters.
    """
    if not max_length:
        return None
    if len(text.split()) > max_length:
        return f"longer than {max_length} words"
    if len(text) > MAX_CHARACTERS_PER_WORD * max_length:
        return (
            f"longer than {MAX_CHARACTERS_PER_WORD * max_length} characters "
            f"(the cap for {max_length} words)"
        )
    return None


class _Pairs:
    """The pair-level checks: empty and over-long sides dropped, duplicates (found by
    hash, after the pass) and identical pairs counted, the kept pairs handed on."""

    def __init__(
        self,
        report: CorpusReport,
        max_length: int | None,
        keep: Callable[[int, str, str], None] | None,
    ):
        self.report, self.max_length, self.keep = report, max_length, keep
        self.hashes, self.lines = array("q"), array("i")  # per kept pair

    def add(self, number: int, source: str, target: str) -> None:
        report = self.report
        source, target = source.removesuffix("\r"), target.removesuffix("\r")
        if not source.strip() or not target.strip():
            report.dropped.setdefault("with an empty side", []).append(number)
            return
        reason = length_excess(source, self.max_length) or length_excess(target, self.max_length)
        if reason:
            report.dropped.setdefault(reason, []).append(number)
            return
        self.hashes.append(hash((source, target)))
        self.lines.append(number)
        if source.strip() == target.strip():
            report.identical.append(number)
        report.kept += 1
        if self.keep is not None:
            self.keep(number, source, target)

    def finish(self) -> None:
        """Lines whose pair (by a 64-bit hash) appeared on an earlier line."""
        hashes = np.frombuffer(self.hashes, dtype=np.int64)
        _, first = np.unique(hashes, return_index=True)
        repeated = np.ones(len(hashes), dtype=bool)
        repeated[first] = False
        self.report.duplicates = np.frombuffer(self.lines, dtype=np.int32)[repeated].tolist()


class _Side:
    """One file's line-level checks, line by line: odd bytes, UTF-8, its sha256, lengths."""

    def __init__(self, path: str):
        self.path, self.lines, self.crlf = path, 0, 0
        self.findings = {marker: Finding(path, what) for marker, what in SUSPICIOUS.items()}
        self.invalid = Finding(path, "invalid UTF-8")
        self.digest = hashlib.sha256()
        self.lengths = array("i")  # characters per line, to locate a misalignment
        self.bom = False

    def read(self, number: int, raw: bytes) -> str:
        """Line `number`'s text (raw: its bytes with their "\\n")."""
        self.digest.update(raw)
        self.lines = number
        raw = raw.removesuffix(b"\n")
        for marker, finding in self.findings.items():
            position = raw.find(marker, 3 if number == 1 and marker == BOM else 0)
            if position >= 0 and not (marker == b"\r" and position == len(raw) - 1):
                finding.add(number, position + 1)
        self.crlf += raw.endswith(b"\r")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            self.invalid.add(number, error.start + 1)
            text = raw.decode("utf-8", errors="replace")
        if number == 1 and raw.startswith(BOM):
            self.bom = True
            text = text.removeprefix("\ufeff")
        self.lengths.append(len(text))
        return text

    def finish(self, report: CorpusReport) -> None:
        if self.bom:
            report.warnings.append(
                f"{self.path}:1: UTF-8 byte order mark removed (it would "
                f"otherwise be read as part of the first word)"
            )
        if self.crlf:
            report.warnings.append(
                f"{self.path}: {self.crlf} line(s) end in \\r\\n (Windows "
                f"line endings); the \\r is removed"
            )
        report.warnings += [str(f) for f in self.findings.values() if f.lines]
        if self.invalid.lines:
            report.errors.append(
                f"{self.invalid}; convert the file to UTF-8 (e.g. `iconv -f "
                f"latin1 -t utf-8`) or fix those lines"
            )


def first_divergence(source: Sequence[str | int], target: Sequence[str | int]) -> int:
    """The 1-based line where two files of different length most likely stop corresponding
    (their lines, or the lines' lengths in characters).

    Assumes one break: lines before it pair up as they are, lines after it pair up shifted
    by the difference in length. The break is placed where the length mismatch (log ratio
    of character counts, minus its median) summed over both parts is smallest.
    """
    source_lengths = np.array([len(x) if isinstance(x, str) else x for x in source], float)
    target_lengths = np.array([len(x) if isinstance(x, str) else x for x in target], float)
    shift = len(target_lengths) - len(source_lengths)
    common = min(len(source_lengths), len(target_lengths))
    if common == 0:
        return 1
    # (i, i) before the break; from it on, (k, k + shift) with k the shorter file's index
    aligned = np.log((source_lengths[:common] + 1) / (target_lengths[:common] + 1))
    if shift > 0:
        shifted = np.log((source_lengths[:common] + 1) / (target_lengths[shift:] + 1))
    else:
        shifted = np.log((source_lengths[-shift:] + 1) / (target_lengths[:common] + 1))
    typical = np.sort(aligned)[common // 2]
    before = np.concatenate([[0.0], np.cumsum(np.abs(aligned - typical))])
    after = np.concatenate([np.cumsum(np.abs(shifted - typical)[::-1])[::-1], [0.0]])
    return int(np.argmin(before + after)) + 1


def _first(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers[:SHOWN])) + (", ..." if len(numbers) > SHOWN else "")
