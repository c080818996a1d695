"""Beam search, batched over sentences and compiled as one loop, written in `keras.ops`.

Each sentence keeps `beam_size` open hypotheses (rows `sentence * K + k` of the decoder's
batch, so the beams of a batch share its matmuls) and a pool of the `beam_size` best
finished ones. At every step each open hypothesis proposes its continuations; of the best
2K, those ending in eos (or reaching the sentence's length limit) enter the finished pool,
ranked by their score, and the best K others stay open. A sentence is done when its
`n_best`-th finished score is one no open hypothesis can still beat (log-probabilities only
fall as a hypothesis grows), or at its limit; the loop ends when every sentence is done.
Where shapes are dynamic (TensorFlow) a done sentence leaves the batch, as in greedy
search, so each step costs only the sentences still searching; elsewhere (JAX) every
sentence steps until all are done.

Scores: a hypothesis' log-probability (the sum of its pieces', eos included when it ends
with one: what the model gives it under teacher forcing), divided by the GNMT length
penalty ((5 + length) / 6) ** alpha (Wu et al., 2016; length counts eos; alpha 0: none).
The source-side rules (truncation, limits) are search.py's, as for greedy search.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keras import ops

from .. import backend
from ..data.tokenizer import BOS_ID, EOS_ID, PAD_ID

if TYPE_CHECKING:
    from ..model.seq2seq import Seq2Seq

# A log-probability no hypothesis reaches: marks empty slots (not -inf: -inf - -inf is nan).
_NONE = -1e9


def length_penalty(length, alpha: float):
    """GNMT's ((5 + length) / 6) ** alpha; length (any shape), counting eos."""
    return ops.power((5.0 + ops.cast(length, "float32")) / 6.0, alpha)


def beam_search(
    model: Seq2Seq,
    encoded: dict,
    limits,
    max_steps: int,
    beam_size: int,
    alpha: float = 0.0,
    n_best: int = 1,
    input_table=None,
    alignments: bool = False,
    compact: bool | None = None,
) -> dict:
    """The `n_best` best hypotheses of each sentence, best first, as a dict of arrays:
    "ids" (batch, n_best, max_steps: pieces then eos, PAD after), "log_probs" and
    "scores" (batch, n_best), and with `alignments` "weights" (batch, n_best, max_steps,
    source_len). A sentence whose limit is 0 (an empty source) gets empty hypotheses.
    `compact` (default: where shapes are dynamic) drops done sentences from the loop."""
    compact = _check(model, beam_size, n_best, alignments, compact)
    limits = ops.convert_to_tensor(limits, "int32")
    beam = _Beam(
        model,
        beam_size,
        alpha,
        n_best,
        max_steps,
        input_table,
        ops.shape(encoded["memory"])[1] if alignments else None,
    )
    K = beam_size
    constants = {
        name: ops.repeat(x, K, axis=0)  # rows sentence * K + k
        for name, x in model.decoder_constants(encoded).items()
    }
    states = [[ops.repeat(h, K, axis=0), ops.repeat(c, K, axis=0)] for h, c in encoded["states"]]
    start = beam.start(limits, states, constants)
    pool = (_compacting_loop if compact else _masked_loop)(beam, start)
    ids, log_probs, scores, weights = pool
    empty = ops.expand_dims(ops.less_equal(limits, 0), 1)  # (batch, 1)
    found = {
        "ids": ids[:, :n_best],
        "log_probs": ops.where(empty, 0.0, log_probs[:, :n_best]),
        "scores": ops.where(empty, 0.0, scores[:, :n_best]),
    }
    if alignments:
        found["weights"] = weights[:, :n_best]
    return found


def _check(model, beam_size: int, n_best: int, alignments: bool, compact: bool | None) -> bool:
    """ValueError for settings the search cannot honour; whether it compacts."""
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and the beam size ({beam_size}), not {n_best}")
    if alignments and model.attention is None:
        raise ValueError("alignments need a model with attention")
    compact = backend.dynamic_shapes() if compact is None else compact
    if compact and not backend.dynamic_shapes():
        raise ValueError(
            f"a compacting beam search needs dynamic shapes (TensorFlow), not {backend.name()}"
        )
    return compact


class _Beam:
    """The search's settings and its one step. The loop's state is a dict of arrays:
    per sentence ("limits", "done", "open_*" (going, K, ...), the finished pool "pool_*")
    and per hypothesis row ("token", "states", "constants": (going * K, ...))."""

    def __init__(self, model, K, alpha, n_best, max_steps, input_table, source_len):
        self.model, self.K, self.alpha, self.n_best = model, K, alpha, n_best
        self.max_steps, self.input_table, self.source_len = max_steps, input_table, source_len
        self.positions = ops.reshape(ops.arange(max_steps, dtype="int32"), (1, 1, max_steps))
        vocabulary = ops.arange(model.target_vocab_size, dtype="int32")
        # Pad and bos are never outputs: only eos ends a hypothesis (as in fairseq).
        self.never = ops.expand_dims((vocabulary == PAD_ID) | (vocabulary == BOS_ID), 0)

    @property
    def aligning(self) -> bool:
        return self.source_len is not None

    def weights_shape(self, batch):
        """(batch, K, max_steps, source_len), or a (batch, K, 0, 0) stand-in."""
        if self.aligning:
            return (batch, self.K, self.max_steps, self.source_len)
        return (batch, self.K, 0, 0)

    def start(self, limits, states, constants) -> dict:
        batch, K = ops.shape(limits)[0], self.K
        ids = ops.zeros((batch, K, self.max_steps), dtype="int32")
        weights = ops.zeros(self.weights_shape(batch), dtype="float32")
        return {
            "limits": limits,
            "done": ops.less_equal(limits, 0),
            "open_ids": ids,
            "open_weights": weights,
            "open_log_probs": ops.concatenate(  # one live hypothesis per sentence
                [ops.zeros((batch, 1)), ops.full((batch, K - 1), _NONE)], axis=1
            ),
            **self.empty_pool(batch),
            "token": ops.full((batch * K,), BOS_ID, dtype="int32"),
            "states": states,
            "constants": constants,
        }

    def empty_pool(self, batch) -> dict:
        K = self.K
        return {
            "pool_ids": ops.zeros((batch, K, self.max_steps), dtype="int32"),
            "pool_log_probs": ops.full((batch, K), _NONE),
            "pool_scores": ops.full((batch, K), _NONE),
            "pool_weights": ops.zeros(self.weights_shape(batch), dtype="float32"),
        }

    def _log_probs(self, s: dict):
        """(rows, vocab) log-probabilities of the next piece, the new states and (when
        aligning) the attention weights."""
        attention = None
        if self.aligning:
            logits, states, attention = self.model.decode_step(
                s["token"], s["states"], s["constants"], self.input_table, return_attention=True
            )
        else:
            logits, states = self.model.decode_step(
                s["token"], s["states"], s["constants"], self.input_table
            )
        log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)  # (rows, vocab)
        return ops.where(self.never, _NONE, log_probs), states, attention

    def _extend(self, step, s: dict, log_probs, attention) -> tuple:
        """The best 2K one-piece extensions of each sentence's open hypotheses: their
        totals, parents, pieces, ids and alignment rows, each (going, 2K, ...)."""
        K, vocab = self.K, self.model.target_vocab_size
        totals = ops.expand_dims(s["open_log_probs"], -1) + ops.reshape(log_probs, (-1, K, vocab))
        values, index = ops.top_k(ops.reshape(totals, (-1, K * vocab)), 2 * K)  # (going, 2K)
        parent, word = index // vocab, ops.cast(index % vocab, "int32")
        at_step = self.positions == step
        ids = ops.take_along_axis(s["open_ids"], ops.expand_dims(parent, -1), axis=1)
        ids = ops.where(at_step, ops.expand_dims(word, -1), ids)  # (going, 2K, steps)
        weights = s["open_weights"]
        if self.aligning:
            rows = ops.reshape(attention, (-1, K, 1, self.source_len))
            weights = ops.take_along_axis(weights, parent[:, :, None, None], axis=1)
            weights = ops.where(
                ops.expand_dims(at_step, -1),
                ops.take_along_axis(rows, parent[:, :, None, None], axis=1),
                weights,
            )
        return values, parent, word, ids, weights

    def step(self, step, s: dict) -> dict:
        """Every hypothesis one piece further: the next state of the loop."""
        K = self.K
        log_probs, states, attention = self._log_probs(s)
        values, parent, word, ids, weights = self._extend(step, s, log_probs, attention)
        limits, done = s["limits"], s["done"]
        # (The loop's own end counts as a limit: what is open then is finished there.)
        at_limit = ops.expand_dims((step + 1 >= limits) | (step + 1 >= self.max_steps), 1)
        # Only the best K may end (as in fairseq), so that K = 1 (without a length
        # penalty) is greedy search.
        in_top_k = ops.expand_dims(ops.arange(2 * K, dtype="int32") < K, 0)  # (1, 2K)
        stops = ops.equal(word, EOS_ID) | at_limit
        real = values > _NONE / 2  # not a continuation of an empty slot
        ending = stops & in_top_k & real & ops.expand_dims(ops.logical_not(done), 1)
        scores = ops.where(ending, values / length_penalty(step + 1, self.alpha), _NONE)
        pool = _best(K, s, (ids, values, scores, weights), self.aligning)
        # The best K continuations that go on stay open.
        open_log_probs, keep = ops.top_k(ops.where(stops, _NONE, values), K)  # (going, K)
        parent = ops.take_along_axis(parent, keep, axis=1)  # (going, K)
        going = ops.shape(parent)[0]
        rows = ops.reshape(parent + ops.expand_dims(ops.arange(going, dtype="int32") * K, 1), (-1,))
        # Done: the n-th best finished score beats what the best open one could reach.
        best_open = ops.max(open_log_probs, axis=1) / length_penalty(limits, self.alpha)
        return {
            "limits": limits,
            "done": (
                done
                | ops.squeeze(at_limit, 1)
                | (pool["pool_scores"][:, self.n_best - 1] >= best_open)
            ),
            "open_ids": ops.take_along_axis(ids, ops.expand_dims(keep, -1), axis=1),
            "open_log_probs": open_log_probs,
            "open_weights": (
                ops.take_along_axis(weights, keep[:, :, None, None], axis=1)
                if self.aligning
                else s["open_weights"]
            ),
            **pool,
            "token": ops.reshape(ops.take_along_axis(word, keep, axis=1), (-1,)),
            "states": [[ops.take(h, rows, axis=0), ops.take(c, rows, axis=0)] for h, c in states],
            "constants": s["constants"],
        }


_POOL = ("pool_ids", "pool_log_probs", "pool_scores", "pool_weights")


def _masked_loop(beam: _Beam, start: dict) -> tuple:
    """Every sentence steps until all are done (fixed shapes: JAX)."""

    def keep_going(step, s):
        return ops.logical_not(ops.all(s["done"]))

    def step_once(step, s):
        return step + 1, beam.step(step, s)

    _, end = ops.while_loop(
        keep_going,
        step_once,
        (ops.convert_to_tensor(0, "int32"), start),
        maximum_iterations=beam.max_steps,
    )
    return tuple(end[name] for name in _POOL)


def _compacting_loop(beam: _Beam, start: dict) -> tuple:
    """A done sentence's pool is written to the output and the sentence leaves the loop."""
    K, batch = beam.K, ops.shape(start["limits"])[0]
    output = beam.empty_pool(batch)
    start = {**start, "sentence": ops.arange(batch, dtype="int32")}
    start = _keep(K, start, ops.logical_not(start["done"]))

    def keep_going(step, output, s):
        return ops.shape(s["limits"])[0] > 0

    def step_once(step, output, s):
        s = {**beam.step(step, s), "sentence": s["sentence"]}
        output, s = ops.cond(
            ops.any(s["done"]), lambda: _retire(beam, output, s), lambda: (output, s)
        )
        return step + 1, output, s

    _, output, rest = backend.shrinking_while_loop(
        keep_going,
        step_once,
        (ops.convert_to_tensor(0, "int32"), output, start),
        maximum_iterations=beam.max_steps,
    )
    output = _write(beam, output, rest, ops.ones_like(rest["done"]))  # left at max_steps
    return tuple(output[name] for name in _POOL)


def _retire(beam: _Beam, output: dict, s: dict) -> tuple:
    """The done sentences' pools written to the output; the carry without them."""
    return _write(beam, output, s, s["done"]), _keep(beam.K, s, ops.logical_not(s["done"]))


def _write(beam: _Beam, output: dict, s: dict, which) -> dict:
    """The output with the pools of the sentences where `which` is true written in."""
    chosen = ops.nonzero(which)[0]
    where = ops.expand_dims(ops.take(s["sentence"], chosen, axis=0), 1)  # (n, 1)
    names = _POOL if beam.aligning else _POOL[:3]  # (no weights: a (batch, K, 0, 0) stand-in)
    return {
        **output,
        **{
            name: ops.scatter_update(output[name], where, ops.take(s[name], chosen, axis=0))
            for name in names
        },
    }


def _keep(K: int, s: dict, going) -> dict:
    """The loop's state for the sentences where `going` is true, and their K rows each."""
    sentences = ops.nonzero(going)[0]
    rows = ops.reshape(ops.expand_dims(sentences * K, 1) + ops.arange(K, dtype="int32"), (-1,))
    kept = {
        name: ops.take(x, sentences, axis=0)
        for name, x in s.items()
        if name not in ("token", "states", "constants")
    }
    kept["token"] = ops.take(s["token"], rows, axis=0)
    kept["states"] = [
        [ops.take(h, rows, axis=0), ops.take(c, rows, axis=0)] for h, c in s["states"]
    ]
    kept["constants"] = {name: ops.take(x, rows, axis=0) for name, x in s["constants"].items()}
    return kept


def _best(K: int, s: dict, candidates: tuple, aligning: bool) -> dict:
    """The finished pool (K slots per sentence, best first) updated with the candidates
    (ids, log-probabilities, scores, weights; 2K per sentence) that score better."""
    ids, log_probs, scores = (
        ops.concatenate([s[name], new], axis=1) for name, new in zip(_POOL[:3], candidates[:3])
    )
    _, keep = ops.top_k(scores, K)  # (going, K), best first
    pool = {
        "pool_ids": ops.take_along_axis(ids, ops.expand_dims(keep, -1), axis=1),
        "pool_log_probs": ops.take_along_axis(log_probs, keep, axis=1),
        "pool_scores": ops.take_along_axis(scores, keep, axis=1),
        "pool_weights": s["pool_weights"],
    }
    if aligning:
        weights = ops.concatenate([s["pool_weights"], candidates[3]], axis=1)
        pool["pool_weights"] = ops.take_along_axis(weights, keep[:, :, None, None], axis=1)
    return pool
