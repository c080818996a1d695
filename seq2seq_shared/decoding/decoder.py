"""Decoding, ids in and ids out: greedy search or beam search, batched and compiled.

"Decoding" here means producing the target for a source with `Seq2Seq.decode_step`:
greedily (search.py, the default and fastest path) or with a beam (beam.py). Both run the
source-side rules of search.py (truncation, length limits) and its eos trimming, which
the SavedModel export traces too, so `translate` and the export cannot disagree. Text in,
text out is translator.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from keras import ops

from .. import backend
from ..config import DecodeConfig
from ..data.batches import pad, round_up, teacher_forcing
from ..data.tokenizer import PAD_ID
from ..model.seq2seq import Seq2Seq
from .beam import beam_search
from .greedy import greedy_search, prepare_sources, trim_at_eos
from .hypothesis import Hypothesis

logger = logging.getLogger(__name__)


class Decoder:
    """Ids in, ids out: sorts by length, batches, runs the compiled search, restores order.

    `decode_config.beam_size` 1 is greedy search; more is beam search (beam.py), whose
    `n_best` best hypotheses `search` returns. Sources are ids in natural order; one
    longer than `max_source_length` is read up to there, as the SavedModel export reads
    it (`search.prepare_sources`).

    The encoder runs on slices of at most `ENCODE_ROWS` sentences of a batch, each padded
    only to its own longest source: a large batch (1,024 sentences) would otherwise pay
    every recurrence step, and the input projection, for its longest sentence. The
    decoder then steps the whole batch at once, where large matmuls pay. Each `search`
    call looks the first layer's input projections up in `Seq2Seq.input_table()`, computed
    once per call (it follows the weights as they train), unless the table would be
    larger than `INPUT_TABLE_BYTES`. With `fixed_weights` (a loaded model that nothing
    trains: `translate`, the server) it is computed once and kept, which matters where
    calls are many and small (a server's batches: 8,000 x 2,048 entries, ~8 GFLOP, each).
    """

    ENCODE_ROWS = 64
    INPUT_TABLE_BYTES = 256 << 20

    def __init__(
        self,
        model: Seq2Seq,
        decode_config: DecodeConfig = DecodeConfig(),
        max_source_length: int | None = None,
        fixed_weights: bool = False,
    ):
        self.model, self.decode_config = model, decode_config
        self.fixed_weights, self._kept_table = fixed_weights, None
        self.max_source_length = max_source_length  # None: sources are never cut
        self._encode = backend.compile_inference(model, self._encode_fn)
        # Where shapes are dynamic (TensorFlow) the step limit is an argument like any other,
        # so one trace serves every batch; elsewhere (JAX) it fixes shapes, so it is static
        # and rounded up to a multiple of 8 (few compiles).
        self._search = backend.compile_inference(
            model, self._search_fn, static_argnums=(4,) if backend.dynamic_shapes() else (2, 4)
        )
        self._log_probs = backend.compile_inference(model, self._log_probs_fn)
        self._input_table = backend.compile_inference(model, model.input_table)
        self.use_input_table = (
            model.target_vocab_size * 4 * model.hidden_size * 4 <= self.INPUT_TABLE_BYTES
        )

    def _encode_fn(self, source_ids):
        """Right-padded ids in natural order -> the encoded source, the step limits."""
        source, limits = prepare_sources(source_ids, self.decode_config, self.max_source_length)
        return self.model.encode(source), limits

    def _search_fn(self, encoded, limits, max_steps, input_table, alignments):
        """{"ids": (rows, n, max_steps), eos and after as PAD; beam search adds
        "log_probs" and "scores" (rows, n); alignments "weights" (rows, n, steps, len)}."""
        config = self.decode_config
        if config.beam_size == 1:
            found = greedy_search(
                self.model,
                encoded,
                limits,
                max_steps,
                input_table=input_table,
                alignments=alignments,
            )
            ids, weights = found if alignments else (found, None)
            found = {"ids": ids} if weights is None else {"ids": ids, "weights": weights}
            found = {name: ops.expand_dims(x, 1) for name, x in found.items()}
        else:
            found = beam_search(
                self.model,
                encoded,
                limits,
                max_steps,
                config.beam_size,
                config.length_penalty,
                config.n_best,
                input_table,
                alignments,
            )
        return {**found, "ids": trim_at_eos_rows(found["ids"])}

    def decode(
        self,
        sources: Sequence[Sequence[int]],
        batch_size: int | None = None,
        alignments: bool = False,
    ) -> list[list[int]] | tuple[list, list]:
        """The best target ids (eos stripped) for each source, in order; [] for an empty
        source. With `alignments` (attention models), also each one's attention weights
        (see `Hypothesis.weights`)."""
        best = [hypotheses[0] for hypotheses in self.search(sources, batch_size, alignments)]
        ids = [h.ids for h in best]
        return (ids, [h.weights for h in best]) if alignments else ids

    def search(
        self,
        sources: Sequence[Sequence[int]],
        batch_size: int | None = None,
        alignments: bool = False,
        scores: bool = False,
    ) -> list[list[Hypothesis]]:
        """The `n_best` best hypotheses of each source (1 with greedy search), best first.
        Beam search always scores them; greedy search does with `scores` (a teacher-forced
        pass over its outputs)."""
        batch_size = batch_size or self.decode_config.batch_size
        results: list[list[Hypothesis]] = [
            [Hypothesis([], True, 0.0, 0.0, np.zeros((0, 0), "float32"))] for _ in sources
        ]
        order = [i for i in np.argsort([len(s) for s in sources], kind="stable") if sources[i]]
        table = self.input_table() if order else None
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            found = self._search_batch([sources[i] for i in rows], table, alignments)
            for row, hypotheses in zip(rows, found):
                results[row] = hypotheses
        if scores and self.decode_config.beam_size == 1:
            self._score_greedy([hypotheses[0] for hypotheses in results], sources, batch_size)
        return results

    def input_table(self):
        """The first layer's input projections of every piece (None where too large)."""
        if not self.use_input_table:
            return None
        if not self.fixed_weights:
            return self._input_table()
        if self._kept_table is None:
            self._kept_table = self._input_table()
        return self._kept_table

    def _search_batch(
        self, sources: list[Sequence[int]], input_table, alignments: bool
    ) -> list[list[Hypothesis]]:
        # Where each shape compiles anew (JAX), pad the batch to a power of two and lengths
        # to a multiple, so the compiled functions see few distinct shapes.
        multiple = backend.shape_multiple()
        rows = len(sources) if multiple == 1 else 1 << (len(sources) - 1).bit_length()
        padded = list(sources) + [[]] * (rows - len(sources))
        slices = [
            self._encode(pad(padded[i : i + self.ENCODE_ROWS], multiple))
            for i in range(0, rows, self.ENCODE_ROWS)
        ]  # (encoded, limits) per slice
        encoded = concatenate_encoded([encoded for encoded, _ in slices])
        limits = np.concatenate([ops.convert_to_numpy(x) for _, x in slices])  # (rows,)
        max_steps = (
            np.int32(limits.max()) if backend.dynamic_shapes() else round_up(int(limits.max()), 8)
        )
        found = {
            name: ops.convert_to_numpy(x)
            for name, x in self._search(encoded, limits, max_steps, input_table, alignments).items()
        }
        read = [min(len(s), self.max_source_length or len(s)) for s in sources]
        return [_hypotheses(found, i, limits[i], read[i], alignments) for i in range(len(sources))]

    # Scoring: what the model gives an output under teacher forcing -----------------------

    def log_probs(
        self,
        sources: Sequence[Sequence[int]],
        targets: Sequence[Sequence[int]],
        ended: Sequence[bool] | None = None,
        batch_size: int | None = None,
    ) -> list[float]:
        """The log-probability the model gives each target (pieces' ids, no eos) for its
        source under teacher forcing, eos included where `ended` says the target ended
        with it (everywhere by default); 0.0 for an empty source."""
        batch_size = batch_size or self.decode_config.batch_size
        ended = [True] * len(targets) if ended is None else ended
        shifted = [_shifted(target, with_eos) for target, with_eos in zip(targets, ended)]
        results = [0.0] * len(sources)
        order = [i for i in np.argsort([len(t) for t, _ in shifted], kind="stable") if sources[i]]
        multiple = backend.shape_multiple()
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            source = pad([sources[i] for i in rows], multiple)
            target_input = pad([shifted[i][0] for i in rows], multiple)
            target_output = pad([shifted[i][1] for i in rows], multiple)
            sums = ops.convert_to_numpy(self._log_probs(source, target_input, target_output))
            for row, value in zip(rows, sums):
                results[row] = float(value)
        return results

    def _log_probs_fn(self, source_ids, target_input, target_output):
        source, _ = prepare_sources(source_ids, self.decode_config, self.max_source_length)
        logits = self.model({"source": source, "target_input": target_input})
        log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        picked = ops.take_along_axis(log_probs, ops.expand_dims(target_output, -1), axis=-1)
        real = ops.cast(ops.not_equal(target_output, PAD_ID), "float32")
        return ops.sum(ops.squeeze(picked, -1) * real, axis=1)  # (batch,)

    def _score_greedy(self, hypotheses: list[Hypothesis], sources, batch_size: int) -> None:
        values = self.log_probs(
            sources, [h.ids for h in hypotheses], [h.ended for h in hypotheses], batch_size
        )
        for hypothesis, value in zip(hypotheses, values):
            hypothesis.log_prob = hypothesis.score = value


def _hypotheses(found: dict, i: int, limit: int, read: int, alignments: bool) -> list[Hypothesis]:
    """Sentence `i`'s hypotheses from a search's arrays; `read`: its source pieces read."""
    hypotheses = []
    for n, row in enumerate(found["ids"][i]):
        ids = row[row != PAD_ID].tolist()
        hypothesis = Hypothesis(ids, ended=bool(len(ids) < limit))
        if "log_probs" in found:
            hypothesis.log_prob = float(found["log_probs"][i, n])
            hypothesis.score = float(found["scores"][i, n])
        if alignments:
            steps = len(ids) + hypothesis.ended  # eos's row, where it was written
            hypothesis.weights = found["weights"][i, n, :steps, :read]
        hypotheses.append(hypothesis)
    return hypotheses


def _shifted(target: Sequence[int], with_eos: bool) -> tuple[list[int], list[int]]:
    """(decoder input, labels): the one teacher-forcing shift, without eos's where the
    target did not end with it."""
    target_input, target_output = teacher_forcing(target)
    return (target_input, target_output) if with_eos else (target_input[:-1], target_output[:-1])


def trim_at_eos_rows(ids):
    """`search.trim_at_eos` for ids (batch, n, steps)."""
    shape = ops.shape(ids)
    return ops.reshape(trim_at_eos(ops.reshape(ids, (-1, shape[2]))), shape)


def concatenate_encoded(slices: list[dict]) -> dict:
    """Encoded sources of several batch slices (`Seq2Seq.encode`) as one: states stacked
    by row; the memory padded to the longest slice's source length (masked there)."""
    if len(slices) == 1:
        return slices[0]
    first = slices[0]
    joined = {
        "states": [
            [ops.concatenate([s["states"][layer][k] for s in slices], axis=0) for k in range(2)]
            for layer in range(len(first["states"]))
        ]
    }
    if "memory" in first:
        length = max(int(ops.shape(s["mask"])[1]) for s in slices)
        for key in ("memory", "keys", "mask"):
            joined[key] = ops.concatenate([_pad_length(s[key], length) for s in slices], axis=0)
    return joined


def _pad_length(x, length: int):
    """x (batch, len, ...) padded with zeros (False for a mask) to (batch, length, ...)."""
    missing = length - int(ops.shape(x)[1])
    widths = [(0, 0), (0, missing)] + [(0, 0)] * (len(x.shape) - 2)
    return x if missing == 0 else ops.pad(x, widths)
