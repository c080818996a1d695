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

Pure Python: `seq2seq-shared check-data` runs it without Keras.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        return (f"{self.path}:{self.first[0]}: {self.what} on {self.lines} line(s) "
                f"(line:byte {', '.join(self.first)}{more})")


@dataclass
class CorpusReport:
    source_path: str
    target_path: str
    source_lines: int
    target_lines: int
    errors: list[str] = field(default_factory=list)       # the corpus cannot be used as is
    warnings: list[str] = field(default_factory=list)     # usable, but worth a look
    dropped: dict[str, list[int]] = field(default_factory=dict)  # reason -> line numbers
    duplicates: list[int] = field(default_factory=list)   # lines repeating an earlier pair
    identical: list[int] = field(default_factory=list)    # lines whose target == source
    kept: list[int] = field(default_factory=list)         # 0-based indices of kept pairs
    sources: list[str] = field(default_factory=list)      # the kept pairs' text
    targets: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> list[str]:
        """The report as lines of text, most important first."""
        lines = [f"{self.source_path}: {self.source_lines} lines",
                 f"{self.target_path}: {self.target_lines} lines"]
        lines += [f"error: {e}" for e in self.errors]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += self.dropped_and_duplicates()
        if self.identical:
            lines.append(f"{len(self.identical)} pair(s) ({self.identical_share:.0%}) have a "
                         f"target identical to their source (kept; lines "
                         f"{_first(self.identical)})")
        if self.ok:
            lines.append(f"kept {len(self.kept)} of {self.source_lines} pairs")
        return lines

    def dropped_and_duplicates(self) -> list[str]:
        lines = []
        for reason, numbers in self.dropped.items():
            lines.append(f"dropped {len(numbers)} pair(s) {reason} (both sides; lines "
                         f"{_first(numbers)})")
        if self.duplicates:
            lines.append(f"{len(self.duplicates)} pair(s) repeat an earlier pair (kept; lines "
                         f"{_first(self.duplicates)})")
        return lines

    @property
    def identical_share(self) -> float:
        """The share of kept pairs whose target is identical to their source."""
        return len(self.identical) / len(self.kept) if self.kept else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source_path, "target": self.target_path,
                "source_lines": self.source_lines, "target_lines": self.target_lines,
                "ok": self.ok, "errors": self.errors, "warnings": self.warnings,
                "dropped": {reason: {"pairs": len(numbers), "first_lines": numbers[:SHOWN]}
                            for reason, numbers in self.dropped.items()},
                "duplicates": {"pairs": len(self.duplicates),
                               "first_lines": self.duplicates[:SHOWN]},
                "identical": {"pairs": len(self.identical),
                              "share": round(self.identical_share, 4),
                              "first_lines": self.identical[:SHOWN]},
                "kept": len(self.kept)}


def check_corpus(source_path: Path | str, target_path: Path | str,
                 max_length: int | None = None) -> CorpusReport:
    """Check a parallel corpus; `report.sources` / `report.targets` hold the usable pairs.

    `max_length` is the length rule's N (see `length_excess`): pairs with a side over it
    are dropped. A trailing "\\r" (CRLF files) and a leading byte order mark are removed.
    """
    source_raw, target_raw = _read_raw(Path(source_path)), _read_raw(Path(target_path))
    report = CorpusReport(str(source_path), str(target_path), len(source_raw), len(target_raw))
    if os.path.samefile(source_path, target_path):
        report.warnings.append(f"{source_path} and {target_path} are the same file: every "
                               f"target is its source; pass the translations as TARGET")
    source_text = _decode_all(source_raw, report.source_path, report)
    target_text = _decode_all(target_raw, report.target_path, report)
    if len(source_raw) != len(target_raw):
        line = first_divergence(source_text, target_text)
        report.errors.insert(0, (
            f"{source_path} has {len(source_raw)} lines but {target_path} has "
            f"{len(target_raw)} (counting \"\\n\" as `wc -l` does): line i of one must translate "
            f"line i of the other. Judging by sentence lengths, they stop corresponding near "
            f"line {line}; look for a missing, extra or split line there"))
    if not report.ok:
        return report
    _select_pairs(report, source_text, target_text, max_length)
    if not report.kept:
        report.errors.append(f"{source_path} / {target_path}: no usable pair is left")
    elif report.identical_share > IDENTICAL_WARNING_SHARE:
        report.warnings.append(
            f"{source_path} / {target_path}: {len(report.identical)} of {len(report.kept)} kept "
            f"pairs ({report.identical_share:.0%}) have a target identical to their source "
            f"(lines {_first(report.identical)}): is one file a copy of the other?")
    return report


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
        return (f"longer than {MAX_CHARACTERS_PER_WORD * max_length} characters "
                f"(the cap for {max_length} words)")
    return None


def _select_pairs(report: CorpusReport, source_text: list[str], target_text: list[str],
                  max_length: int | None) -> None:
    """Fill the report's kept, dropped, duplicate and identical pairs."""
    seen: set[tuple[str, str]] = set()
    for index, (source, target) in enumerate(zip(source_text, target_text)):
        source, target = source.removesuffix("\r"), target.removesuffix("\r")
        if not source.strip() or not target.strip():
            report.dropped.setdefault("with an empty side", []).append(index + 1)
            continue
        reason = length_excess(source, max_length) or length_excess(target, max_length)
        if reason:
            report.dropped.setdefault(reason, []).append(index + 1)
            continue
        if (source, target) in seen:
            report.duplicates.append(index + 1)
        seen.add((source, target))
        if source.strip() == target.strip():
            report.identical.append(index + 1)
        report.kept.append(index)
        report.sources.append(source)
        report.targets.append(target)


def _read_raw(path: Path) -> list[bytes]:
    with open_input(path) as file:
        lines = file.read().split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the final "\n" ends the last line; it does not start a new one
    return lines


def _decode_all(raw_lines: list[bytes], path: str, report: CorpusReport) -> list[str]:
    findings = {marker: Finding(path, what) for marker, what in SUSPICIOUS.items()}
    invalid = Finding(path, "invalid UTF-8")
    text = []
    for number, raw in enumerate(raw_lines, start=1):
        for marker, finding in findings.items():
            position = raw.find(marker, 3 if number == 1 and marker == BOM else 0)
            if position >= 0 and not (marker == b"\r" and position == len(raw) - 1):
                finding.add(number, position + 1)
        try:
            text.append(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            invalid.add(number, error.start + 1)
            text.append(raw.decode("utf-8", errors="replace"))
    if raw_lines and raw_lines[0].startswith(BOM):
        text[0] = text[0].removeprefix("\ufeff")
        report.warnings.append(f"{path}:1: UTF-8 byte order mark removed (it would otherwise "
                               f"be read as part of the first word)")
    crlf = sum(raw.endswith(b"\r") for raw in raw_lines)
    if crlf:
        report.warnings.append(f"{path}: {crlf} line(s) end in \\r\\n (Windows line endings); "
                               f"the \\r is removed")
    report.warnings += [str(f) for f in findings.values() if f.lines]
    if invalid.lines:
        report.errors.append(f"{invalid}; convert the file to UTF-8 (e.g. `iconv -f latin1 "
                             f"-t utf-8`) or fix those lines")
    return text


def first_divergence(source: Sequence[str], target: Sequence[str]) -> int:
    """The 1-based line where two files of different length most likely stop corresponding.

    Assumes one break: lines before it pair up as they are, lines after it pair up shifted
    by the difference in length. The break is placed where the length mismatch (log ratio
    of character counts, minus its median) summed over both parts is smallest.
    """
    shift = len(target) - len(source)
    common = min(len(source), len(target))
    if common == 0:
        return 1

    def cost(i: int, j: int) -> float:
        return math.log((len(source[i]) + 1) / (len(target[j]) + 1))

    typical = sorted(cost(i, i) for i in range(common))[common // 2]
    before = [0.0]
    for i in range(common):  # pairs (i, i)
        before.append(before[-1] + abs(cost(i, i) - typical))
    after = [0.0] * (common + 1)  # pairs (i, i + shift) from the break on, shorter file's index
    for k in range(common - 1, -1, -1):
        i, j = (k, k + shift) if shift > 0 else (k - shift, k)
        after[k] = after[k + 1] + abs(cost(i, j) - typical)
    best = min(range(common + 1), key=lambda k: before[k] + after[k])
    return best + 1


def _first(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers[:SHOWN])) + (", ..." if len(numbers) > SHOWN else "")
