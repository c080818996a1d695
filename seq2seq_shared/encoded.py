"""Encoded pairs: each side's ids end to end in one flat array, with offsets and lengths.

The layout of fairseq's .bin/.idx and Megatron's indexed datasets: a pair is two slices,
so the same class serves pairs held in memory (validation, tests) and pairs memory-mapped
from a prepared directory (`prepared.py`), which the operating system pages in as batches
read them. NumPy only.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class EncodedPairs:
    """Pairs of id sequences: pair i is `source(i)`, `target(i)`; `lengths` (pairs, 2)."""

    def __init__(self, source_ids: np.ndarray, source_offsets: np.ndarray,
                 target_ids: np.ndarray, target_offsets: np.ndarray,
                 lengths: np.ndarray | None = None):
        """`*_offsets`: (pairs + 1,), pair i's ids are `ids[offsets[i]:offsets[i + 1]]`;
        `lengths`: (pairs, 2) source and target lengths, computed if not given."""
        self.source_ids, self.source_offsets = source_ids, source_offsets
        self.target_ids, self.target_offsets = target_ids, target_offsets
        if lengths is None:
            lengths = np.stack([np.diff(source_offsets), np.diff(target_offsets)], axis=1)
        self.lengths = lengths

    @classmethod
    def from_lists(cls, sources: Sequence[Sequence[int]],
                   targets: Sequence[Sequence[int]]) -> "EncodedPairs":
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
        return cls(*_flat(sources), *_flat(targets))

    def __len__(self) -> int:
        return len(self.lengths)

    def source(self, index: int) -> np.ndarray:
        return self.source_ids[self.source_offsets[index]:self.source_offsets[index + 1]]

    def target(self, index: int) -> np.ndarray:
        return self.target_ids[self.target_offsets[index]:self.target_offsets[index + 1]]


def _flat(sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(ids end to end, offsets) of `sequences`."""
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in sequences], out=offsets[1:])
    ids = np.fromiter((i for s in sequences for i in s), dtype=np.int32, count=int(offsets[-1]))
    return ids, offsets
