"""Gradient accumulation (`--accumulate-steps N`): one optimizer step over N batches, equal
to one step on a batch N times larger, for a large effective batch on a small GPU.

Keras's optimizers accumulate (`gradient_accumulation_steps`): they sum N calls' gradients
and step on their mean, once every N calls, with Adam's step count advancing once per
update. The mean of N batch means is not the big batch's mean over target tokens, unless
each batch's loss is weighted by N x its share of the group's tokens; `loss_weight` gives
that weight. An epoch's last group may hold fewer batches: `filler_calls` says how many
empty calls (no target token, so no gradient) complete it, so every epoch's groups are
whole and the optimizer updates at each group's last batch.
"""

from __future__ import annotations

import numpy as np

from ..data.batches import Batch, ParallelBatches, pad
from ..data.tokenizer import BOS_ID, EOS_ID


class Accumulation:
    """The groups of `steps` consecutive batches in an epoch's order that make one
    optimizer step each."""

    def __init__(self, batches: ParallelBatches, steps: int):
        self.batches, self.steps = batches, steps

    def _group(self, index: int) -> range:
        start = index - index % self.steps
        return range(start, min(start + self.steps, len(self.batches)))

    def ends_step(self, index: int) -> bool:
        """Whether the batch at `index` is its group's last: the optimizer steps after it."""
        return index == self._group(index)[-1]

    def loss_weight(self, index: int) -> float:
        """N x (target tokens of the batch at `index`) / (target tokens of its group)."""
        group = sum(self.batches.target_tokens(i) for i in self._group(index))
        return self.steps * self.batches.target_tokens(index) / group

    def filler_calls(self, index: int) -> int:
        """Empty calls that complete the group the batch at `index` ends (an epoch's last)."""
        return self.steps - len(self._group(index)) if self.ends_step(index) else 0

    def filler(self) -> Batch:
        """An empty batch: one row (one per device), no target token; its weight 0 gives no
        gradient."""
        rows = self.batches.row_multiple
        target_input = pad([[BOS_ID]] * rows, self.batches.multiple)  # (rows, width)
        return Batch(
            source=pad([[EOS_ID]] * rows, self.batches.multiple),
            target_input=target_input,
            target_output=np.zeros_like(target_input),
        )
