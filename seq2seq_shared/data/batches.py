"""Parallel text in, padded id batches out: reading, the teacher-forcing shift, bucketing.

Pure Python and NumPy: nothing here builds or knows the model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .check import check_corpus
from .encoded import EncodedPairs
from .files import iter_lines
from .tokenizer import BOS_ID, EOS_ID, PAD_ID

logger = logging.getLogger(__name__)

PAD_TO_MULTIPLE = 8  # default rounding of lengths, so compiled steps see few distinct shapes
RELEASE_EVERY = 256  # batches between releases of a prepared corpus's mapped offsets


def round_up(length: Any, multiple: int) -> Any:
    """The smallest multiple of `multiple` that is >= `length`."""
    return -(-length // multiple) * multiple


def read_lines(path: Path | str) -> list[str]:
    """All lines of a UTF-8 file, split on "\\n" alone, as `wc -l` counts them."""
    return list(iter_lines(Path(path)))


def read_parallel(
    source_path: Path | str, target_path: Path | str, max_length: int | None = None
) -> tuple[list[str], list[str]]:
    """Both sides of a parallel corpus, checked (see `check.py`) and line-aligned.

    Pairs with an empty (or, given `max_length`, over-long: see `check.length_excess`) side are dropped
    together, with a warning; a corpus that cannot be aligned raises ValueError.
    """
    report = check_corpus(source_path, target_path, max_length)
    report.raise_if_unusable()
    for line in report.warnings + report.dropped_and_duplicates():
        logger.warning("%s", line)
    return report.sources, report.targets


def teacher_forcing(target: Sequence[int]) -> tuple[list[int], list[int]]:
    """The decoder reads `bos + target` and must predict `target + eos`, one step ahead."""
    return [BOS_ID, *target], [*target, EOS_ID]


def pad(
    sequences: Sequence[Sequence[int]],
    multiple: int = PAD_TO_MULTIPLE,
    width: int | None = None,
    rows: int | None = None,
) -> np.ndarray:
    """Right-pad with PAD_ID to the longest length rounded up to `multiple` (or to
    `width`), with PAD_ID rows after the sequences up to `rows`, if given."""
    if width is None:
        width = round_up(max(1, max((len(s) for s in sequences), default=1)), multiple)
    array = np.full((rows or len(sequences), width), PAD_ID, dtype=np.int32)  # (rows, width)
    for row, sequence in enumerate(sequences):
        array[row, : len(sequence)] = sequence
    return array


def encoded_batches(
    tokenizer,
    sources: list[str],
    targets: list[str],
    batch_tokens: int,
    multiple: int,
    seed: int = 0,
    shuffle: bool = False,
    max_lengths: tuple[int, int] | None = None,
    fixed_shapes: bool = False,
) -> ParallelBatches:
    """Encode text pairs with `tokenizer` and batch them (validation and evaluation sets,
    held in memory; training data is prepared on disk by `prepare.py`).

    `max_lengths` (source, target) in pieces: see `within_lengths`. Without it every pair
    stays (evaluation measures the whole test set).
    """
    pairs = encode_pairs(tokenizer, sources, targets)
    return ParallelBatches(
        pairs,
        batch_tokens=batch_tokens,
        seed=seed,
        shuffle=shuffle,
        multiple=multiple,
        fixed_shapes=fixed_shapes,
        index=within_lengths(pairs, max_lengths) if max_lengths else None,
    )


def encode_pairs(tokenizer, sources: list[str], targets: list[str]) -> EncodedPairs:
    """Text pairs held in memory (validation, evaluation), encoded with `tokenizer`."""
    return EncodedPairs.from_lists(
        tokenizer.encode_source(sources), tokenizer.encode_target(targets)
    )


def within_lengths(pairs: EncodedPairs, max_lengths: tuple[int, int]) -> np.ndarray:
    """The indices of the pairs within `max_lengths` (source, target) pieces: pairs with a
    longer source, or a target that with eos is longer, are dropped together, with a
    warning."""
    max_source, max_target = max_lengths
    lengths = pairs.lengths
    keep = np.flatnonzero((lengths[:, 0] <= max_source) & (lengths[:, 1] < max_target))
    if len(keep) < len(pairs):
        logger.warning(
            "dropped %d pair(s) longer than %d source / %d target pieces",
            len(pairs) - len(keep),
            max_source,
            max_target,
        )
    if not len(keep):
        raise ValueError(
            "every pair is longer than the length limits; raise "
            "--max-source-length / --max-target-length"
        )
    return keep


@dataclass
class Batch:
    source: np.ndarray  # (batch, source_len)
    target_input: np.ndarray  # (batch, target_len): bos + target
    target_output: np.ndarray  # (batch, target_len): target + eos

    @property
    def num_target_tokens(self) -> int:
        return int((self.target_output != PAD_ID).sum())


class ParallelBatches:
    """Token-budget batches of similar-length pairs, reshuffled every epoch, reproducibly.

    Pairs are sorted by length so each batch holds neighbours (little padding), cut into
    batches of at most `batch_tokens` padded target slots, and the batch order is shuffled
    with `seed + epoch`, so epoch k's order is the same in every run with that seed. The
    plan reads only the pairs' length index; a batch reads its own pairs' ids (from the
    files of a prepared corpus, `encoded.FileIds`), so memory does not grow with the text.

    With `fixed_shapes` (for backends that compile one program per shape: JAX), a batch's
    source and target are padded to one width, the longer side's length rounded up to
    `multiple`, and every batch of a width has the same number of rows (empty rows, which
    hold no target token, fill the last one): one shape per width, at most
    max_length / multiple shapes per epoch (7 on Multi30k instead of 18).
    """

    def __init__(
        self,
        pairs: EncodedPairs,
        batch_tokens: int,
        seed: int = 0,
        shuffle: bool = True,
        multiple: int = PAD_TO_MULTIPLE,
        fixed_shapes: bool = False,
        index: np.ndarray | None = None,
    ):
        """`index`: the pairs to batch (all of them if None)."""
        self.multiple, self.fixed_shapes = multiple, fixed_shapes
        self.batch_tokens = batch_tokens
        self.seed, self.shuffle = seed, shuffle
        self.pairs = pairs
        self.index = np.arange(len(pairs)) if index is None else np.asarray(index)
        self.lengths = pairs.lengths  # (pairs, 2): source, target pieces
        # Rows of a batch are padded (with empty rows) to a multiple of this: the devices
        # of a data-parallel run (parallel.py). The plan does not depend on it.
        self.row_multiple = 1
        # Training batches may sample their pieces anew (sampling.SubwordSampler): the
        # plan stays that of the best segmentation, and a batch's width its own, so a
        # sampled batch may pass `batch_tokens` (by about the pieces sampling adds) and,
        # with `fixed_shapes`, its plan's rows at a wider width make shapes of their own.
        self.sampler: Any = None
        self.batches = self._plan(batch_tokens)
        self.set_epoch(0)

    @classmethod
    def from_lists(
        cls, sources: list[list[int]], targets: list[list[int]], **settings
    ) -> ParallelBatches:
        return cls(EncodedPairs.from_lists(sources, targets), **settings)

    def width(self, rows: np.ndarray) -> int:
        """The padded width of the batch of these pairs, with `fixed_shapes`."""
        lengths = self.lengths[rows]
        longest = max(int(lengths[:, 0].max()), int(lengths[:, 1].max()) + 1)
        return round_up(longest, self.multiple)

    def rows(self, width: int) -> int:
        """Rows of every batch of this width, with `fixed_shapes`."""
        return max(1, self.batch_tokens // width)

    def _plan(self, batch_tokens: int) -> list[np.ndarray]:
        """The batches, as arrays of pair indices, from the length index alone."""
        lengths = self.lengths[self.index].astype(np.int64)
        lengths[:, 1] += 1  # target with eos
        lengths = lengths[:, ::-1]  # (pairs, 2): target + eos, source
        jitter = np.random.default_rng(self.seed).random(len(lengths))  # mixes equal lengths
        if self.fixed_shapes:
            widths = round_up(lengths.max(axis=1), self.multiple)  # (pairs,), as `width`
            order = np.lexsort((jitter, lengths[:, 1], lengths[:, 0], widths))
            batches = []
            for width in np.unique(widths):
                group = self.index[order[widths[order] == width]]
                size = self.rows(int(width))
                batches += [group[i : i + size] for i in range(0, len(group), size)]
            return batches
        order = np.lexsort((jitter, lengths[:, 1], lengths[:, 0]))
        widths = round_up(lengths[order, 0], self.multiple)  # nondecreasing along `order`
        batches, start = [], 0
        while start < len(order):
            # A batch grows while (its size) x (its last pair's width) fits the budget;
            # widths never shrink, so the first pair that breaks it ends the batch, and
            # none lies further than the budget over the next pair's width.
            next_width = widths[min(start + 1, len(order) - 1)]
            window = widths[start + 1 : start + 2 + batch_tokens // next_width]
            over = np.flatnonzero(np.arange(2, len(window) + 2) * window > batch_tokens)
            end = start + 1 + (int(over[0]) if len(over) else len(window))
            batches.append(self.index[order[start:end]])
            start = end
        return batches

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        """Fix the batch order for `epoch` (a function of seed and epoch alone)."""
        self.epoch = epoch
        count = len(self.batches)
        self._order = (
            np.random.default_rng(self.seed + epoch).permutation(count)
            if self.shuffle
            else np.arange(count)
        )

    def batch(self, index: int) -> Batch:
        """The `index`-th batch of the current epoch's order."""
        if index % RELEASE_EVERY == RELEASE_EVERY - 1:
            self.pairs.release()  # resident memory stays flat over an epoch
        rows = self.batches[self._order[index]]
        sources: list[Any] = [self.pairs.source(i) for i in rows]  # natural order
        targets: list[Any] = [self.pairs.target(i) for i in rows]
        if self.sampler is not None:
            sources, targets = self.sampler.sample(sources, targets, self.epoch, index)
        shifted = [teacher_forcing(list(target)) for target in targets]
        shape = {}
        if self.fixed_shapes:
            width = planned = self.width(rows)
            if self.sampler is not None:  # (sampled pieces may outgrow the plan's width)
                longest = max(max(len(s) for s in sources), max(len(t) for t in targets) + 1)
                width = max(width, round_up(longest, self.multiple))
            shape = dict(width=width, rows=round_up(self.rows(planned), self.row_multiple))
        elif len(rows) % self.row_multiple:
            shape = dict(rows=round_up(len(rows), self.row_multiple))
        # An empty row reads one eos, not nothing: no source is ever empty.
        sources += [[EOS_ID]] * (shape.get("rows", len(rows)) - len(rows))
        return Batch(
            source=pad(sources, self.multiple, **shape),
            target_input=pad([inputs for inputs, _ in shifted], self.multiple, **shape),
            target_output=pad([outputs for _, outputs in shifted], self.multiple, **shape),
        )

    def planned(self, fixed_shapes: bool) -> ParallelBatches:
        """The same pairs and settings, batched by the plan given."""
        batches = ParallelBatches(
            self.pairs,
            batch_tokens=self.batch_tokens,
            seed=self.seed,
            shuffle=self.shuffle,
            multiple=self.multiple,
            fixed_shapes=fixed_shapes,
            index=self.index,
        )
        batches.row_multiple, batches.sampler = self.row_multiple, self.sampler
        return batches

    def target_tokens(self, index: int) -> int:
        """Real target tokens (eos included) of the `index`-th batch of the epoch's order."""
        rows = self.batches[self._order[index]]
        return int(self.lengths[rows, 1].sum()) + len(rows)

    @property
    def num_target_tokens(self) -> int:
        return int(self.lengths[self.index, 1].sum()) + len(self.index)

    @property
    def padding_efficiency(self) -> float:
        """Real target tokens / padded target slots, over all batches."""
        slots = 0
        for rows in self.batches:
            if self.fixed_shapes:
                width = self.width(rows)
                slots += self.rows(width) * width
            else:
                longest = int(self.lengths[rows, 1].max()) + 1
                slots += len(rows) * round_up(longest, self.multiple)
        return self.num_target_tokens / slots
