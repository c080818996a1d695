"""A vocabulary shortlist: the output pieces a batch may choose from (Marian's lexical
shortlist), so each decoding step scores a few thousand pieces instead of the whole
vocabulary.

Built from parallel text tokenized with the model's own SentencePiece: for every source
piece, the `per_source` target pieces most associated with it (the Dice coefficient of
the sentence pairs they share: 2 c(s, t) / (c(s) + c(t)), which favours a piece's
translations over merely frequent pieces), and the `frequent` target pieces seen most
often. A batch's shortlist is the union of its source pieces' candidates, the frequent
pieces, unk and eos; the softmax is taken over that set, so a sentence's translation can
depend on the sentences batched with it (as with Marian's shortlists). Built without alignments, so the
candidates are co-occurrences: `coverage` says how many of the training targets' pieces
a shortlist holds.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from ..config import SHORTLIST_FREQUENT as FREQUENT
from ..config import SHORTLIST_PER_SOURCE as PER_SOURCE
from ..data.tokenizer import EOS_ID, PAD_ID, UNK_ID

CHUNK = 20_000  # sentence pairs counted at a time


@dataclass
class Shortlist:
    frequent: np.ndarray  # (F,) target ids
    candidates: np.ndarray  # (source vocab, per_source) target ids, -1 where fewer

    def for_sources(self, source: np.ndarray) -> np.ndarray:
        """The sorted target ids a batch with these source ids (any shape, PAD ignored)
        may choose from."""
        ids = np.unique(source[source != PAD_ID])
        ids = ids[ids < len(self.candidates)]
        found = self.candidates[ids].ravel()
        # (unk and eos always: a beam of K needs 2K candidates, so 2 columns at least)
        return np.union1d(np.union1d(self.frequent, found[found >= 0]), [UNK_ID, EOS_ID])

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, frequent=self.frequent, candidates=self.candidates)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Shortlist:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as stored:
                shortlist = cls(stored["frequent"], stored["candidates"])
        except (ValueError, OSError, KeyError) as error:
            raise ValueError(f"{where}: cannot be read ({error}); build it again") from None
        if shortlist.candidates.ndim != 2 or shortlist.frequent.ndim != 1:
            raise ValueError(f"{where}: not a shortlist; build it again")
        return shortlist

    def check(self, target_vocab_size: int, where: str) -> Shortlist:
        """Refuse a shortlist with pieces the model does not have (built for another)."""
        highest = max(int(self.frequent.max(initial=-1)), int(self.candidates.max(initial=-1)))
        if highest >= target_vocab_size or not np.issubdtype(self.candidates.dtype, np.integer):
            raise ValueError(
                f"{where}: holds piece {highest}, but the model has {target_vocab_size} target "
                f"pieces; it was built for another model: build it again for this one"
            )
        return self


def _pair_codes(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], width: int):
    """Each pair's (distinct source piece, distinct target piece) as s * width + t."""
    codes = []
    for source, target in zip(sources, targets, strict=True):
        s, t = np.unique(np.asarray(source, np.int64)), np.unique(np.asarray(target, np.int64))
        codes.append((s[:, None] * width + t[None, :]).ravel())
    return np.concatenate(codes) if codes else np.zeros(0, np.int64)


def _counts(pairs: Iterable[tuple[list[int], list[int]]], width: int):
    """Co-occurrence counts (codes, counts), and each side's sentence counts."""
    found: list[tuple[np.ndarray, np.ndarray]] = []
    source_count, target_count = np.zeros(0, np.int64), np.zeros(width, np.int64)
    pairs = iter(pairs)
    while chunk := [pair for _, pair in zip(range(CHUNK), pairs)]:
        sources, targets = [s for s, _ in chunk], [t for _, t in chunk]
        found.append(np.unique(_pair_codes(sources, targets, width), return_counts=True))
        if len(found) >= 16:  # (merged now and then: memory stays near the distinct pairs)
            found = [_merged(found)]
        source_count = _added(source_count, _tally(sources))
        target_count = _added(target_count, _tally(targets))
    codes, counts = _merged(found)
    return codes, counts, source_count, target_count


def _merged(found: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    codes, inverse = np.unique(np.concatenate([c for c, _ in found]), return_inverse=True)
    counts = np.bincount(inverse, np.concatenate([n for _, n in found]))
    return codes, counts.astype(np.int64)


def _tally(sentences: list) -> np.ndarray:
    """How many of `sentences` hold each piece."""
    seen = [np.unique(np.asarray(x, np.int64)) for x in sentences]
    return np.bincount(np.concatenate(seen) if seen else np.zeros(0, np.int64))


def _added(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    size = max(len(a), len(b))
    return np.pad(a, (0, size - len(a))) + np.pad(b, (0, size - len(b)))


def build(
    pairs: Iterable[tuple[list[int], list[int]]],
    target_vocab_size: int,
    frequent: int = FREQUENT,
    per_source: int = PER_SOURCE,
) -> Shortlist:
    """The shortlist of `pairs` (source ids, target ids), pieces without bos/eos."""
    width = target_vocab_size
    codes, counts, source_count, target_count = _counts(pairs, width)
    s, t = codes // width, codes % width
    dice = 2.0 * counts / (source_count[s] + target_count[t])
    order = np.lexsort((-dice, s))  # by source piece, best partner first
    s, t = s[order], t[order]
    starts = np.searchsorted(s, s, side="left")
    rank = np.arange(len(s)) - starts
    keep = rank < per_source
    candidates = np.full((max(len(source_count), 1), per_source), -1, np.int64)
    candidates[s[keep], rank[keep]] = t[keep]
    seen = np.flatnonzero(target_count)
    by_count = seen[np.argsort(-target_count[seen], kind="stable")]
    return Shortlist(np.sort(by_count[:frequent]).astype(np.int64), candidates)


def coverage(shortlist: Shortlist, pairs: Iterable[tuple[list[int], list[int]]]) -> float:
    """The share of target pieces that their own sentence's shortlist holds (%)."""
    held = total = 0
    for source, target in pairs:
        allowed = shortlist.for_sources(np.asarray(source, np.int64))
        held += int(np.isin(np.asarray(target, np.int64), allowed).sum())
        total += len(target)
    return round(100.0 * held / max(total, 1), 2)


def _read_pairs(tokenizer, source_path: Path, target_path: Path):
    """The two files' lines as id pairs, encoded a chunk at a time (streamed)."""
    from ..data import files

    sources, targets = files.iter_lines(source_path), files.iter_lines(target_path)
    read = 0
    while True:
        a, b = list(islice(sources, CHUNK)), list(islice(targets, CHUNK))
        if len(a) != len(b):
            short, long = (
                (source_path, target_path) if len(a) < len(b) else (target_path, source_path)
            )
            raise ValueError(
                f"{short} ends after {read + min(len(a), len(b)):,} lines and {long} goes on; "
                f"give the two sides of one parallel corpus"
            )
        if not a:
            return
        read += len(a)
        yield from zip(tokenizer.encode_source(a), tokenizer.encode_target(b))


def write_shortlist(
    model_dir, source_path, target_path, frequent: int = FREQUENT, per_source: int = PER_SOURCE
) -> dict:
    """Build the shortlist of a model directory or release from parallel text (SOURCE,
    TARGET: its training data, as a rule) with its own SentencePiece, write it as the
    directory's shortlist.npz (checksummed) and say what it holds (coverage: over the
    first 100,000 pairs)."""
    from ..model_dir import SHORTLIST, ModelDir

    directory = ModelDir(model_dir)
    tokenizer = directory.load_tokenizer()
    source_path, target_path = Path(source_path), Path(target_path)
    pairs = _read_pairs(tokenizer, source_path, target_path)
    shortlist = build(pairs, directory.vocab_sizes()[1], frequent, per_source)
    data = shortlist.to_bytes()
    directory.checksums.write(SHORTLIST, lambda path: path.write_bytes(data))
    sample = list(islice(_read_pairs(tokenizer, source_path, target_path), 100_000))
    sizes = [len(shortlist.for_sources(np.asarray(s, np.int64))) for s, _ in sample[:2000]]
    return {
        "path": str(directory.path / SHORTLIST),
        "coverage": coverage(shortlist, sample),
        "pieces_per_sentence": round(float(np.mean(sizes)), 1) if sizes else 0.0,
    }
