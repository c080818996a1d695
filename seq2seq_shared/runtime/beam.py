"""Beam search in NumPy over a batch: every sentence's K hypotheses are rows of one
matrix product per step, as in `decoding/beam.py`, and a finished sentence leaves the
batch. The rules are that module's (see `search.py`)."""

from __future__ import annotations

import numpy as np

from ..config import DecodeConfig
from ..data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from ..decoding.hypothesis import Hypothesis
from .network import Network

NONE = np.float32(-1e9)  # an empty slot's log-probability


def penalty(length, alpha: float):
    """GNMT's ((5 + length) / 6) ** alpha, in float32."""
    return np.float32(((5.0 + np.float32(length)) / 6.0) ** np.float32(alpha))


def top(totals: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `count` largest values and their columns, best first (ties: the lower
    column first): (rows, count) each.

    A selection over every entry (argpartition) cost 60% of the search. Instead: the row
    cut into blocks (32 per entry wanted), the `count`-th largest of the blocks' maxima is
    a threshold that at least `count` entries reach (one per block), so the best `count`
    are among the few entries that reach it: two passes over the row, then a sort of
    those few."""
    rows, width = totals.shape
    blocks = min(width, 32 * count)
    starts = np.linspace(0, width, blocks, endpoint=False).astype(np.int64)
    maxima = np.maximum.reduceat(totals, starts, axis=1)  # (rows, blocks)
    threshold = np.partition(maxima, blocks - count, axis=1)[:, blocks - count]
    row, column = np.nonzero(totals >= threshold[:, None])  # (row-major: columns ascending)
    value = totals[row, column]
    order = np.lexsort((column, -value, row))  # by row, best first, then lower column
    row, column, value = row[order], column[order], value[order]
    first = np.searchsorted(row, np.arange(rows))  # where each row's entries begin
    keep = np.arange(len(row)) - first[row] < count
    return column[keep].reshape(rows, count), value[keep].reshape(rows, count)


class BatchedBeam:
    """The open hypotheses of the sentences still searching, K rows each."""

    def __init__(
        self,
        network: Network,
        encoded: dict,
        limits: np.ndarray,
        config: DecodeConfig,
        candidates: np.ndarray | None = None,
    ):
        self.network, self.config, self.K = network, config, config.beam_size
        self.candidates = candidates  # a shortlist: the ids the columns stand for
        self.ids = np.arange(network.target_vocab_size) if candidates is None else candidates
        self.never = np.flatnonzero(np.isin(self.ids, [PAD_ID, BOS_ID]))  # only eos ends
        self.sentences = np.flatnonzero(limits > 0)  # their indices in the batch
        self.limits = limits[self.sentences]
        rows = np.repeat(self.sentences, self.K)  # sentence s's K rows: s * K ... s * K + K-1
        self.states = [[h[rows], c[rows]] for h, c in encoded["states"]]
        self.constants = {k: v[rows] for k, v in network.constants(encoded).items()}
        going = len(self.sentences)
        self.open_ids: list[list[list[int]]] = [[[] for _ in range(self.K)] for _ in range(going)]
        self.open_log_probs = np.full((going, self.K), NONE, np.float32)
        self.open_log_probs[:, 0] = 0.0  # one live hypothesis per sentence
        self.token = np.full(going * self.K, BOS_ID)
        self.pools: list[list[tuple]] = [[] for _ in range(going)]
        self.found: dict[int, list[Hypothesis]] = {}

    def run(self) -> dict[int, list[Hypothesis]]:
        step = 0
        while len(self.sentences):
            self._step(step)
            step += 1
        return self.found

    def _step(self, step: int) -> None:
        K, going = self.K, len(self.sentences)
        log_probs, self.states = self.network.decode_step(
            self.token, self.states, self.constants, self.candidates
        )
        log_probs[:, self.never] = NONE
        vocab = log_probs.shape[1]
        totals = (self.open_log_probs[:, :, None] + log_probs.reshape(going, K, vocab)).reshape(
            going, K * vocab
        )
        best, values = top(totals, 2 * K)
        parent, word = best // vocab, self.ids[best % vocab]  # (going, 2K)
        at_limit = step + 1 >= self.limits  # (going,)
        stops = (word == EOS_ID) | at_limit[:, None]
        self._finish(step, parent, word, values, stops)
        open_values = np.where(stops, NONE, values)
        keep = np.argsort(-open_values, axis=1, kind="stable")[:, :K]  # (going, K)
        self.open_log_probs = np.take_along_axis(open_values, keep, 1)
        kept_parent = np.take_along_axis(parent, keep, 1)
        kept_word = np.take_along_axis(word, keep, 1)
        self.open_ids = [
            [
                self.open_ids[s][p] + [int(w)]
                for p, w in zip(kept_parent[s], kept_word[s], strict=True)
            ]
            for s in range(going)
        ]
        rows = (kept_parent + np.arange(going)[:, None] * K).reshape(-1)
        self.states = [[h[rows], c[rows]] for h, c in self.states]
        self.token = kept_word.reshape(-1)
        self._retire(at_limit)

    def _finish(self, step, parent, word, values, stops) -> None:
        """The pools take the best K of what ends at this step (only the top K may end)."""
        K, scale = self.K, penalty(step + 1, self.config.length_penalty)
        ending = stops[:, :K] & (values[:, :K] > NONE / 2)
        for s, rank in zip(*np.nonzero(ending), strict=True):
            ids = self.open_ids[s][parent[s, rank]]
            ended = bool(word[s, rank] == EOS_ID)
            ids = ids if ended else ids + [int(word[s, rank])]
            self.pools[s].append((values[s, rank] / scale, values[s, rank], ids, ended))
        for s in set(np.nonzero(ending)[0].tolist()):
            self.pools[s] = sorted(self.pools[s], key=lambda entry: -entry[0])[:K]

    def _retire(self, at_limit: np.ndarray) -> None:
        """Sentences done (their limit, or no open hypothesis can beat the n-th finished)
        leave the batch, their n-best kept."""
        n = self.config.n_best
        best_open = self.open_log_probs.max(axis=1) / np.array(
            [penalty(limit, self.config.length_penalty) for limit in self.limits]
        )
        done = [
            bool(at_limit[s]) or (len(pool) >= n and pool[n - 1][0] >= best_open[s])
            for s, pool in enumerate(self.pools)
        ]
        if not any(done):
            return  # (the batch stays as it is: no copying of its states and memory)
        for s in np.flatnonzero(done):
            self.found[int(self.sentences[s])] = [
                Hypothesis(ids, ended, float(log_prob), float(score))
                for score, log_prob, ids, ended in self.pools[s][:n]
            ]
        keep = np.flatnonzero(~np.array(done, bool))
        rows = (keep[:, None] * self.K + np.arange(self.K)).reshape(-1)
        self.sentences, self.limits = self.sentences[keep], self.limits[keep]
        self.open_ids = [self.open_ids[s] for s in keep]
        self.pools = [self.pools[s] for s in keep]
        self.open_log_probs = self.open_log_probs[keep]
        self.token = self.token[rows]
        self.states = [[h[rows], c[rows]] for h, c in self.states]
        self.constants = {k: v[rows] for k, v in self.constants.items()}
