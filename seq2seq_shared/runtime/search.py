"""Greedy and beam search in NumPy, under the rules of `decoding/greedy.py` and
`decoding/beam.py`: a source cut at `max_source_length` pieces, a sentence stops at eos or
after `length_ratio * source + length_offset` pieces, pad and bos are never outputs in a
beam, only the best K of a step may end, GNMT's length penalty ranks, and a sentence is
done when its n-th best finished score beats what its best open hypothesis could reach.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import DecodeConfig
from ..data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from ..decoding.hypothesis import Hypothesis
from .network import Network

NONE = -1e9  # an empty slot's log-probability (decoding/beam.py)


def limits_of(lengths: np.ndarray, config: DecodeConfig) -> np.ndarray:
    """Each sentence's step limit: 0 for an empty source (decoding/greedy.py's rule)."""
    scaled = (np.float32(config.length_ratio) * lengths.astype(np.float32)).astype(np.int32)
    return np.where(lengths > 0, scaled + config.length_offset, 0).astype(np.int32)


def greedy(network: Network, encoded: dict, limits: np.ndarray) -> list[Hypothesis]:
    """The best piece at every step, each row stopping at eos or its limit; the
    hypotheses' log-probabilities summed on the way (eos's included where it ended)."""
    rows = len(limits)
    states, constants = encoded["states"], network.constants(encoded)
    going = np.flatnonzero(limits > 0)
    ids: list[list[int]] = [[] for _ in range(rows)]
    log_prob = np.zeros(rows, np.float32)
    states = [[h[going], c[going]] for h, c in states]
    constants = {k: v[going] for k, v in constants.items()}
    token, step = np.full(len(going), BOS_ID), 0
    while len(going):
        log_probs, states = network.decode_step(token, states, constants)
        token = log_probs.argmax(axis=-1)
        log_prob[going] += log_probs[np.arange(len(going)), token]
        stop = (token == EOS_ID) | (token == PAD_ID) | (step + 1 >= limits[going])
        for row, piece in zip(going, token, strict=True):
            if piece not in (EOS_ID, PAD_ID):
                ids[row].append(int(piece))
        keep = ~stop
        going, token, step = going[keep], token[keep], step + 1
        states = [[h[keep], c[keep]] for h, c in states]
        constants = {k: v[keep] for k, v in constants.items()}
    # As the Keras search: a hypothesis ended unless its limit stopped it.
    return [
        Hypothesis(ids[r], len(ids[r]) < limits[r], float(log_prob[r]), float(log_prob[r]))
        for r in range(rows)
    ]


def penalty(length, alpha: float):
    """GNMT's ((5 + length) / 6) ** alpha."""
    return np.float32(((5.0 + np.float32(length)) / 6.0) ** np.float32(alpha))


def beam(network: Network, encoded: dict, limits: np.ndarray, config: DecodeConfig) -> list:
    """The `n_best` best hypotheses of each sentence, best first (decoding/beam.py)."""
    return [
        _beam_one(network, encoded, index, int(limit), config)
        if limit > 0
        else [Hypothesis([], True, 0.0, 0.0)] * config.n_best
        for index, limit in enumerate(limits)
    ]


def _beam_one(network: Network, encoded: dict, index: int, limit: int, config: DecodeConfig):
    """One sentence's beam: K rows stepped together, a pool of the K best finished."""
    K, alpha = config.beam_size, config.length_penalty
    states = [
        [np.repeat(h[index : index + 1], K, 0), np.repeat(c[index : index + 1], K, 0)]
        for h, c in encoded["states"]
    ]
    constants = {
        k: np.repeat(v[index : index + 1], K, 0) for k, v in network.constants(encoded).items()
    }
    open_ids: list[list[int]] = [[] for _ in range(K)]
    open_log_probs = np.array([0.0] + [NONE] * (K - 1), np.float32)
    pool: list[tuple[float, float, list[int], bool]] = []  # (score, log_prob, ids, ended)
    token = np.full(K, BOS_ID)
    for step in range(limit):
        log_probs, states = network.decode_step(token, states, constants)
        log_probs[:, [PAD_ID, BOS_ID]] = NONE  # only eos ends a hypothesis
        totals = (open_log_probs[:, None] + log_probs).reshape(-1)  # (K * vocab,)
        best = np.argsort(-totals, kind="stable")[: 2 * K]
        parent, word, values = best // log_probs.shape[1], best % log_probs.shape[1], totals[best]
        at_limit = step + 1 >= limit
        stops = (word == EOS_ID) | at_limit
        for rank in np.flatnonzero(stops[:K] & (values[:K] > NONE / 2)):
            ids = open_ids[parent[rank]] + ([] if word[rank] == EOS_ID else [int(word[rank])])
            pool.append(
                (
                    values[rank] / penalty(step + 1, alpha),
                    values[rank],
                    ids,
                    bool(word[rank] == EOS_ID),
                )
            )
        pool = sorted(pool, key=lambda entry: -entry[0])[:K]
        keep = np.argsort(-np.where(stops, NONE, values), kind="stable")[:K]
        open_log_probs = np.where(stops, np.float32(NONE), values)[keep]
        open_ids = [open_ids[parent[k]] + [int(word[k])] for k in keep]
        states = [[h[parent[keep]], c[parent[keep]]] for h, c in states]
        token = word[keep]
        best_open = open_log_probs.max() / penalty(limit, alpha)
        if at_limit or (len(pool) >= config.n_best and pool[config.n_best - 1][0] >= best_open):
            break
    return [
        Hypothesis(ids, ended, float(log_prob), float(score))
        for score, log_prob, ids, ended in pool[: config.n_best]
    ]


def sources_array(sources: Sequence[Sequence[int]], max_source_length: int | None) -> tuple:
    """(batch, width) right-padded ids, each cut to `max_source_length`; the lengths."""
    cut = [list(s)[:max_source_length] for s in sources]
    lengths = np.array([len(s) for s in cut], np.int32)
    array = np.full((len(cut), max(int(lengths.max(initial=0)), 1)), PAD_ID, np.int64)
    for row, ids in enumerate(cut):
        array[row, : len(ids)] = ids
    return array, lengths
