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


def limits_of(lengths: np.ndarray, config: DecodeConfig) -> np.ndarray:
    """Each sentence's step limit: 0 for an empty source (decoding/greedy.py's rule)."""
    scaled = (np.float32(config.length_ratio) * lengths.astype(np.float32)).astype(np.int32)
    return np.where(lengths > 0, scaled + config.length_offset, 0).astype(np.int32)


def greedy(
    network: Network, encoded: dict, limits: np.ndarray, candidates: np.ndarray | None = None
) -> list[Hypothesis]:
    """The best piece at every step (of `candidates` alone, a shortlist, where given),
    each row stopping at eos or its limit; the hypotheses' log-probabilities summed on
    the way (eos's included where it ended)."""
    rows = len(limits)
    states, constants = encoded["states"], network.constants(encoded)
    going = np.flatnonzero(limits > 0)
    ids: list[list[int]] = [[] for _ in range(rows)]
    log_prob = np.zeros(rows, np.float32)
    states = [[h[going], c[going]] for h, c in states]
    constants = {k: v[going] for k, v in constants.items()}
    token, step = np.full(len(going), BOS_ID), 0
    while len(going):
        log_probs, states = network.decode_step(token, states, constants, candidates)
        choice = log_probs.argmax(axis=-1)
        token = choice if candidates is None else candidates[choice]
        log_prob[going] += log_probs[np.arange(len(going)), choice]
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


def beam(
    network: Network,
    encoded: dict,
    limits: np.ndarray,
    config: DecodeConfig,
    candidates: np.ndarray | None = None,
) -> list:
    """The `n_best` best hypotheses of each sentence, best first (decoding/beam.py); an
    empty source gets empty ones. `candidates`: a shortlist, or None."""
    from .beam import BatchedBeam

    found = BatchedBeam(network, encoded, limits, config, candidates).run()
    empty = [Hypothesis([], True, 0.0, 0.0)] * config.n_best
    return [found.get(index, list(empty)) for index in range(len(limits))]


def sources_array(sources: Sequence[Sequence[int]], max_source_length: int | None) -> tuple:
    """(batch, width) right-padded ids, each cut to `max_source_length`; the lengths."""
    cut = [list(s)[:max_source_length] for s in sources]
    lengths = np.array([len(s) for s in cut], np.int32)
    array = np.full((len(cut), max(int(lengths.max(initial=0)), 1)), PAD_ID, np.int64)
    for row, ids in enumerate(cut):
        array[row, : len(ids)] = ids
    return array, lengths
