"""Ids in, ids out on a release, without TensorFlow: the light runtime's `Decoder`.

The interface of `decoding/decoder.py`'s (`search`), so the `Translator` (text in, text
out) runs on either: sources sorted by length and batched, the length rules applied,
each source's hypotheses returned in input order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import DecodeConfig
from ..decoding.hypothesis import Hypothesis
from .network import Network
from .search import beam, greedy, limits_of, sources_array
from .shortlist import Shortlist


class LightDecoder:
    def __init__(
        self,
        network: Network,
        decode_config: DecodeConfig,
        max_source_length: int | None,
        shortlist: Shortlist | None = None,
    ):
        self.network, self.decode_config = network, decode_config
        self.max_source_length, self.shortlist = max_source_length, shortlist

    def search(
        self,
        sources: Sequence[Sequence[int]],
        batch_size: int | None = None,
        alignments: bool = False,
        scores: bool = False,
    ) -> list[list[Hypothesis]]:
        """The `n_best` best hypotheses of each source (1 with greedy search), best first,
        every one with its log-probability and score."""
        if alignments:
            raise ValueError(
                "alignments are not available from a release; use the model "
                "directory it was released from"
            )
        batch_size = batch_size or self.decode_config.batch_size
        empty = [Hypothesis([], True, 0.0, 0.0)] * self.decode_config.n_best
        results: list[list[Hypothesis]] = [list(empty) for _ in sources]
        order = [i for i in np.argsort([len(s) for s in sources], kind="stable") if sources[i]]
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            found = self._search_batch([sources[i] for i in rows])
            for row, hypotheses in zip(rows, found, strict=True):
                results[row] = hypotheses
        return results

    def _search_batch(self, sources: list[Sequence[int]]) -> list[list[Hypothesis]]:
        source, lengths = sources_array(sources, self.max_source_length)
        limits = limits_of(lengths, self.decode_config)
        encoded = self.network.encode(source)
        candidates = None if self.shortlist is None else self.shortlist.for_sources(source)
        if self.decode_config.beam_size == 1:
            return [[h] for h in greedy(self.network, encoded, limits, candidates)]
        return beam(self.network, encoded, limits, self.decode_config, candidates)
