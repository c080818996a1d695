"""Beam search, batched over sentences and compiled as one loop, written in `keras.ops`.

Each sentence keeps `beam_size` open hypotheses (rows `sentence * K + k` of the decoder's
batch, so the beams of a batch share its matmuls) and a pool of the `beam_size` best
finished ones. At every step each open hypothesis proposes its continuations; of the best
2K, those ending in eos (or reaching the sentence's length limit) enter the finished pool,
ranked by their score, and the best K others stay open. A sentence is done when its
`n_best`-th finished score is one no open hypothesis can still beat (log-probabilities only
fall as a hypothesis grows), or at its limit; the loop ends when every sentence is done.

Scores: a hypothesis' log-probability (the sum of its pieces', eos included when it ends
with one: what the model gives it under teacher forcing), divided by the GNMT length
penalty ((5 + length) / 6) ** alpha (Wu et al., 2016; length counts eos; alpha 0: none).
The source-side rules (truncation, limits) are search.py's, as for greedy search.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from keras import ops

from .tokenizer import BOS_ID, EOS_ID, PAD_ID

if TYPE_CHECKING:
    from .model import Seq2Seq

# A log-probability no hypothesis reaches: marks empty slots (not -inf: -inf - -inf is nan).
_NONE = -1e9


def length_penalty(length, alpha: float):
    """GNMT's ((5 + length) / 6) ** alpha; length (any shape), counting eos."""
    return ops.power((5.0 + ops.cast(length, "float32")) / 6.0, alpha)


def beam_search(model: Seq2Seq, encoded: dict, limits, max_steps: int, beam_size: int,
                alpha: float = 0.0, n_best: int = 1, input_table=None,
                alignments: bool = False) -> dict:
    """The `n_best` best hypotheses of each sentence, best first, as a dict of arrays:
    "ids" (batch, n_best, max_steps: pieces then eos, PAD after), "log_probs" and
    "scores" (batch, n_best), and with `alignments` "weights" (batch, n_best, max_steps,
    source_len). A sentence whose limit is 0 (an empty source) gets empty hypotheses."""
    K = beam_size
    if not 1 <= n_best <= K:
        raise ValueError(f"n_best must be between 1 and the beam size ({K}), not {n_best}")
    if alignments and model.attention is None:
        raise ValueError("alignments need a model with attention")
    limits = ops.convert_to_tensor(limits, "int32")
    batch = ops.shape(limits)[0]
    vocab = model.target_vocab_size

    def repeat(x):  # (batch, ...) -> (batch * K, ...), rows sentence * K + k
        return ops.repeat(x, K, axis=0)

    constants = {name: repeat(x) for name, x in model.decoder_constants(encoded).items()}
    states = [[repeat(h), repeat(c)] for h, c in encoded["states"]]
    positions = ops.reshape(ops.arange(max_steps, dtype="int32"), (1, 1, max_steps))
    vocabulary = ops.arange(vocab, dtype="int32")
    never = ops.expand_dims((vocabulary == PAD_ID) | (vocabulary == BOS_ID), 0)  # (1, vocab)
    source_len = ops.shape(encoded["memory"])[1] if alignments else 0
    steps_shape = (batch, K, max_steps, source_len) if alignments else (batch, K, 0, 0)

    def keep_going(step, token, states, opened, finished, done):
        return ops.logical_not(ops.all(done))

    def step_once(step, token, states, opened, finished, done):
        open_ids, open_log_probs, open_weights = opened
        if alignments:
            logits, states, attention = model.decode_step(token, states, constants,
                                                          input_table, return_attention=True)
        else:
            logits, states = model.decode_step(token, states, constants, input_table)
        log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)  # (batch * K, vocab)
        # Pad and bos are never outputs: only eos ends a hypothesis (as in fairseq).
        log_probs = ops.where(never, _NONE, log_probs)
        totals = ops.expand_dims(open_log_probs, -1) + ops.reshape(log_probs, (batch, K, vocab))
        values, index = ops.top_k(ops.reshape(totals, (batch, K * vocab)), 2 * K)  # (batch, 2K)
        parent, word = index // vocab, ops.cast(index % vocab, "int32")
        ids = ops.take_along_axis(open_ids, ops.expand_dims(parent, -1), axis=1)
        ids = ops.where(positions == step, ops.expand_dims(word, -1), ids)  # (batch, 2K, steps)
        weights = open_weights
        if alignments:
            rows = ops.reshape(attention, (batch, K, 1, source_len))
            weights = ops.take_along_axis(open_weights, parent[:, :, None, None], axis=1)
            here = ops.reshape(positions == step, (1, 1, max_steps, 1))
            weights = ops.where(here, ops.take_along_axis(rows, parent[:, :, None, None],
                                                          axis=1), weights)
        at_limit = ops.expand_dims(step + 1 >= limits, 1)  # (batch, 1)
        # Only the best K may end (as in fairseq), so that K = 1 (without a length
        # penalty) is greedy search.
        in_top_k = ops.expand_dims(ops.arange(2 * K, dtype="int32") < K, 0)  # (1, 2K)
        stops = ops.equal(word, EOS_ID) | at_limit
        real = values > _NONE / 2  # not a continuation of an empty slot
        ending = stops & in_top_k & real & ops.expand_dims(ops.logical_not(done), 1)
        scores = ops.where(ending, values / length_penalty(step + 1, alpha), _NONE)
        finished = _best(K, finished, (ids, values, scores, weights), alignments)
        # The best K continuations that go on stay open.
        going = ops.where(stops, _NONE, values)
        open_log_probs, keep = ops.top_k(going, K)  # (batch, K)
        open_ids = ops.take_along_axis(ids, ops.expand_dims(keep, -1), axis=1)
        if alignments:
            open_weights = ops.take_along_axis(weights, keep[:, :, None, None], axis=1)
        parent = ops.take_along_axis(parent, keep, axis=1)  # (batch, K)
        rows = ops.reshape(parent + ops.expand_dims(ops.arange(batch, dtype="int32") * K, 1),
                           (-1,))
        states = [[ops.take(h, rows, axis=0), ops.take(c, rows, axis=0)] for h, c in states]
        token = ops.reshape(ops.take_along_axis(word, keep, axis=1), (-1,))
        # Done: the n-th best finished score beats what the best open one could reach.
        best_open = ops.max(open_log_probs, axis=1) / length_penalty(limits, alpha)
        done = done | ops.squeeze(at_limit, 1) | (finished[2][:, n_best - 1] >= best_open)
        return step + 1, token, states, (open_ids, open_log_probs, open_weights), finished, done

    first = ops.concatenate([ops.zeros((batch, 1)), ops.full((batch, K - 1), _NONE)], axis=1)
    empty_ids = ops.zeros((batch, K, max_steps), dtype="int32")
    empty_weights = ops.zeros(steps_shape, dtype="float32")
    start = (ops.convert_to_tensor(0, "int32"),
             ops.full((batch * K,), BOS_ID, dtype="int32"),
             states,
             (empty_ids, first, empty_weights),  # open: ids, log-probabilities, weights
             (empty_ids, ops.full((batch, K), _NONE), ops.full((batch, K), _NONE),
              empty_weights),  # finished: ids, log-probabilities, scores, weights
             ops.less_equal(limits, 0))
    end = ops.while_loop(keep_going, step_once, start, maximum_iterations=max_steps)
    ids, log_probs, scores, weights = end[4]
    empty = ops.expand_dims(ops.less_equal(limits, 0), 1)  # (batch, 1)
    found = {"ids": ids[:, :n_best],
             "log_probs": ops.where(empty, 0.0, log_probs[:, :n_best]),
             "scores": ops.where(empty, 0.0, scores[:, :n_best])}
    if alignments:
        found["weights"] = weights[:, :n_best]
    return found


def _best(K: int, pool: tuple, candidates: tuple, aligning: bool) -> tuple:
    """The pool (ids, log-probabilities, scores, weights; K slots per sentence, best
    first) updated with the candidates (2K per sentence) that score better."""
    ids, log_probs, scores = (ops.concatenate([old, new], axis=1)
                              for old, new in zip(pool[:3], candidates[:3]))
    _, keep = ops.top_k(scores, K)  # (batch, K), best first
    chosen = (ops.take_along_axis(ids, ops.expand_dims(keep, -1), axis=1),
              ops.take_along_axis(log_probs, keep, axis=1),
              ops.take_along_axis(scores, keep, axis=1))
    if not aligning:
        return (*chosen, pool[3])
    weights = ops.concatenate([pool[3], candidates[3]], axis=1)
    return (*chosen, ops.take_along_axis(weights, keep[:, :, None, None], axis=1))
