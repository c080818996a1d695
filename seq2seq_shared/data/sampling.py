"""Subword regularization: a training batch's pieces sampled anew from SentencePiece's
segmentations (Kudo 2018's sampling for unigram models, BPE-dropout for bpe models).

The prepared corpus holds each pair's best segmentation; a batch's pairs are decoded back
to text and encoded again with sampling. The draw is a function of the run's seed, the
epoch and the batch's place in the epoch alone, so a resumed run samples the same pieces
as an uninterrupted one. Validation and translation never sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sentencepiece

from .tokenizer import UNK_ID, Tokenizer


class SubwordSampler:
    """`sample(sources, targets, epoch, index)`: the pairs' ids, segmented anew."""

    def __init__(self, tokenizer: Tokenizer, alpha: float, nbest: int, seed: int):
        self.tokenizer, self.alpha, self.nbest, self.seed = tokenizer, alpha, nbest, seed

    def seed_of(self, epoch: int, index: int) -> int:
        """SentencePiece's seed for the `index`-th batch of `epoch`."""
        return int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0])

    def sample(
        self,
        sources: Sequence[Sequence[int]],
        targets: Sequence[Sequence[int]],
        epoch: int,
        index: int,
    ) -> tuple[list[list[int]], list[list[int]]]:
        # SentencePiece's generator is one per process, reseeded here: one thread encodes
        # (several would each draw from their own, in an order the scheduler picks).
        sentencepiece.set_random_generator_seed(self.seed_of(epoch, index))
        return (
            _sampled(self.tokenizer.source, sources, self.alpha, self.nbest),
            _sampled(self.tokenizer.target, targets, self.alpha, self.nbest),
        )


def _sampled(processor, ids: Sequence[Sequence[int]], alpha: float, nbest: int) -> list[list[int]]:
    """Each sentence segmented anew; one holding unk keeps its pieces (its text would
    read the unknown piece back as " ⁇ ")."""
    lists = [[int(i) for i in sentence] for sentence in ids]
    texts = processor.decode(lists)
    sampled = processor.encode(
        texts, enable_sampling=True, alpha=alpha, nbest_size=nbest, num_threads=1
    )
    return [
        original if UNK_ID in original else new
        for original, new in zip(lists, sampled, strict=True)
    ]
