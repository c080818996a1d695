"""Encoded pairs: each side's ids end to end in one flat array, with offsets and lengths.

The layout of fairseq's .bin/.idx and Megatron's indexed datasets: a pair is two slices,
so the same class serves pairs held in memory (validation, tests) and pairs memory-mapped
from a prepared directory (`prepared.py`), which the operating system pages in as batches
read them. NumPy only.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class EncodedPairs:
    """Pairs of id sequences: pair i is `source(i)`, `target(i)`; `lengths` (pairs, 2)."""

    def __init__(
        self,
        source_ids: np.ndarray | FileIds,
        source_offsets: np.ndarray,
        target_ids: np.ndarray | FileIds,
        target_offsets: np.ndarray,
        lengths: np.ndarray | None = None,
    ):
        """`*_offsets`: (pairs + 1,), pair i's ids are `ids[offsets[i]:offsets[i + 1]]`;
        `lengths`: (pairs, 2) source and target lengths, computed if not given."""
        self.source_ids, self.source_offsets = source_ids, source_offsets
        self.target_ids, self.target_offsets = target_ids, target_offsets
        if lengths is None:
            lengths = np.stack([np.diff(source_offsets), np.diff(target_offsets)], axis=1)
        self.lengths = lengths

    @classmethod
    def from_lists(
        cls, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]
    ) -> EncodedPairs:
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
        return cls(*_flat(sources), *_flat(targets))

    def __len__(self) -> int:
        return len(self.lengths)

    def source(self, index: int) -> np.ndarray:
        return self.source_ids[self.source_offsets[index] : self.source_offsets[index + 1]]

    def target(self, index: int) -> np.ndarray:
        return self.target_ids[self.target_offsets[index] : self.target_offsets[index + 1]]

    def release(self) -> None:
        """Let go of the memory-mapped offsets' pages read so far. The operating system
        keeps them in its page cache (a later read costs no disk access), but no longer
        counts them in this process's resident memory. Nothing for arrays in memory."""
        for array in (self.source_offsets, self.target_offsets):
            mapping = getattr(array, "_mmap", None)  # memory-mapped arrays only
            if mapping is not None and hasattr(mapping, "madvise"):
                mapping.madvise(mmap.MADV_DONTNEED)


class FileIds:
    """A flat id array in a file, read slice by slice (`ids[start:stop]`) with `pread`.

    Memory-mapping the ids would do the same reads, but the kernel maps 16 pages around
    every page a batch touches, and a batch's pairs lie anywhere in the file: within a few
    hundred batches the whole file counts in the process's resident memory (measured: the
    5M-pair corpus's 485 MB). Read with `pread`, the file stays in the page cache only,
    which the kernel reclaims as it needs.
    """

    def __init__(self, path: Path, dtype: str, length: int):
        self.path, self.dtype, self.length = path, np.dtype(dtype), length
        self.limit: int | None = None  # ids must be below it (the vocabulary's size)
        self.descriptor = os.open(path, os.O_RDONLY)
        if hasattr(os, "posix_fadvise"):  # no read-ahead: a batch's pairs are scattered
            os.posix_fadvise(self.descriptor, 0, 0, os.POSIX_FADV_RANDOM)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, where: slice) -> np.ndarray:
        start, stop = int(where.start), int(where.stop)
        size = self.dtype.itemsize
        ids = np.frombuffer(
            os.pread(self.descriptor, (stop - start) * size, start * size), self.dtype
        )
        if self.limit is not None and len(ids) and int(ids.max()) >= self.limit:
            raise ValueError(
                f"{self.path}: damaged: id {int(ids.max())} (near position "
                f"{start + int(ids.argmax())}) is outside the vocabulary of {self.limit}; "
                f"prepare the corpus again"
            )
        return ids

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # the whole array, in memory
        return np.fromfile(self.path, self.dtype).astype(dtype or self.dtype, copy=False)

    def __del__(self) -> None:
        descriptor = getattr(self, "descriptor", None)
        if descriptor is not None:
            os.close(descriptor)


def _flat(sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(ids end to end, offsets) of `sequences`."""
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in sequences], out=offsets[1:])
    ids = np.fromiter((i for s in sequences for i in s), dtype=np.int32, count=int(offsets[-1]))
    return ids, offsets
