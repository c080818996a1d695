"""Batched greedy decoding: text in, text out, in input order, one output per input.

The decode loop is one compiled `while_loop` over `Seq2Seq.decode_step`. A sentence is
finished when it has produced eos or reached its own length limit
(`length_ratio * source_length + length_offset`); where shapes are dynamic (TensorFlow)
it then leaves the batch, and the loop ends when no sentence is left.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from keras import ops

from . import backend
from .config import DecodeConfig, ModelConfig
from .data import round_up, source_array
from .model import Seq2Seq
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer

logger = logging.getLogger(__name__)


def greedy_search(model: Seq2Seq, source, limits, max_steps: int, compact: bool | None = None,
                  input_table=None):
    """Token ids (batch, max_steps), PAD after each sentence's eos or limit."""
    return search_from_states(model, model.encode(source), limits, max_steps, compact,
                              input_table)


def search_from_states(model: Seq2Seq, states: list[list], limits, max_steps: int,
                       compact: bool | None = None, input_table=None):
    """Greedy search from the encoder's final states (see `Seq2Seq.encode`).

    With `compact` (the default where shapes may change inside a compiled loop, i.e. on
    TensorFlow) a sentence leaves the batch as soon as it is finished, so every step
    costs only the sentences still going. Otherwise all rows step until all are finished.
    `input_table` (`Seq2Seq.input_table()`, optional) saves each step's input matmul.
    """
    compact = backend.dynamic_shapes() if compact is None else compact
    context = model.step_context(states)  # a loop invariant: None, or (batch, 4 * hidden)
    search = _compacting_search if compact else _masked_search
    return search(model, states, context, ops.convert_to_tensor(limits, "int32"), max_steps,
                  input_table)


def _masked_search(model: Seq2Seq, states, context, limits, max_steps: int, input_table):
    batch_size = ops.shape(limits)[0]
    positions = ops.expand_dims(ops.arange(max_steps, dtype="int32"), 0)  # (1, max_steps)

    def keep_going(step, token, states, output, finished):
        return ops.logical_not(ops.all(finished))

    def step_once(step, token, states, output, finished):
        logits, states = model.decode_step(token, states, context, input_table)  # (batch, vocab)
        token = ops.where(finished, PAD_ID, ops.cast(ops.argmax(logits, axis=-1), "int32"))
        output = ops.where(positions == step, ops.expand_dims(token, 1), output)
        finished = finished | ops.equal(token, EOS_ID) | (step + 1 >= limits)
        return step + 1, token, states, output, finished

    start = (ops.convert_to_tensor(0, "int32"),
             ops.full((batch_size,), BOS_ID, dtype="int32"),
             states,
             ops.zeros((batch_size, max_steps), dtype="int32"),
             ops.less_equal(limits, 0))
    return ops.while_loop(keep_going, step_once, start, maximum_iterations=max_steps)[3]


def _compacting_search(model: Seq2Seq, states, context, limits, max_steps: int, input_table):
    # The loop carries, for the unfinished sentences only: their rows in the output, the
    # last token, the limits, the states of every layer and the context's projection.
    layers = len(states)
    batch_size = ops.shape(limits)[0]

    def pack(token, limits, rows, states, context):
        return [token, limits, rows, *(x for state in states for x in state),
                *([] if context is None else [context])]

    def unpack(carry):
        token, limits, rows = carry[:3]
        states = [list(carry[3 + 2 * i:5 + 2 * i]) for i in range(layers)]
        return token, limits, rows, states, (carry[3 + 2 * layers] if context is not None
                                             else None)

    def keep(carry, going):
        rows = ops.nonzero(going)[0]
        return [ops.take(x, rows, axis=0) for x in carry]

    def keep_going(step, output, carry):
        return ops.shape(carry[0])[0] > 0

    def step_once(step, output, carry):
        token, limits, rows, states, context = unpack(carry)
        logits, states = model.decode_step(token, states, context, input_table)  # (going, vocab)
        token = ops.cast(ops.argmax(logits, axis=-1), "int32")
        where = ops.stack([rows, ops.full_like(rows, step)], axis=1)
        output = ops.scatter_update(output, where, token)
        going = ops.not_equal(token, EOS_ID) & ops.less(step + 1, limits)
        carry = pack(token, limits, rows, states, context)
        carry = ops.cond(ops.all(going), lambda: carry, lambda: keep(carry, going))
        return step + 1, output, carry

    start = pack(ops.full((batch_size,), BOS_ID, dtype="int32"), limits,
                 ops.arange(batch_size, dtype="int32"), states, context)
    start = keep(start, ops.greater(limits, 0))
    output = ops.zeros((batch_size, max_steps), dtype="int32")
    return backend.shrinking_while_loop(
        keep_going, step_once, (ops.convert_to_tensor(0, "int32"), output, start),
        maximum_iterations=max_steps)[1]


class GreedyDecoder:
    """Ids in, ids out: sorts by length, batches, runs the compiled search, restores order.

    The encoder runs on slices of at most `ENCODE_ROWS` sentences of a batch, each padded
    only to its own longest source: a large batch (1,024 sentences) would otherwise pay
    every recurrence step, and the input projection, for its longest sentence. The
    decoder then steps the whole batch at once, where large matmuls pay. Each `decode`
    call looks the first layer's input projections up in `Seq2Seq.input_table()`, computed
    once per call (it follows the weights as they train), unless the table would be
    larger than `INPUT_TABLE_BYTES`.
    """

    ENCODE_ROWS = 64
    INPUT_TABLE_BYTES = 256 << 20

    def __init__(self, model: Seq2Seq, reverse_source: bool,
                 decode_config: DecodeConfig = DecodeConfig()):
        self.model, self.reverse_source, self.decode_config = model, reverse_source, decode_config
        self._encode = backend.compile_inference(model, model.encode)
        self._search = backend.compile_inference(model, self._search_fn, static_argnums=(2,))
        self._input_table = backend.compile_inference(model, model.input_table)
        self.use_input_table = (model.target_vocab_size * 4 * model.hidden_size * 4
                                <= self.INPUT_TABLE_BYTES)

    def _search_fn(self, states, limits, max_steps, input_table):
        return search_from_states(self.model, states, limits, max_steps,
                                  input_table=input_table)

    def decode(self, sources: Sequence[Sequence[int]], batch_size: int | None = None
               ) -> list[list[int]]:
        """Target ids (eos stripped) for each source, in order; [] for an empty source."""
        batch_size = batch_size or self.decode_config.batch_size
        results: list[list[int]] = [[] for _ in sources]
        order = [i for i in np.argsort([len(s) for s in sources], kind="stable") if sources[i]]
        table = self._input_table() if order and self.use_input_table else None
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            for row, ids in zip(rows, self._decode_batch([sources[i] for i in rows], table)):
                results[row] = ids
        return results

    def _decode_batch(self, sources: list[Sequence[int]], input_table) -> list[list[int]]:
        # Where each shape compiles anew (JAX), pad the batch to a power of two and lengths
        # to a multiple, so the compiled functions see few distinct shapes.
        multiple = backend.shape_multiple()
        rows = len(sources) if multiple == 1 else 1 << (len(sources) - 1).bit_length()
        padded = list(sources) + [[]] * (rows - len(sources))
        config = self.decode_config
        limits = np.array([int(config.length_ratio * len(s) + config.length_offset) if s else 0
                           for s in padded], dtype=np.int32)
        max_steps = round_up(int(limits.max()), 8)
        slices = [self._encode(source_array(padded[i:i + self.ENCODE_ROWS], self.reverse_source,
                                            multiple))
                  for i in range(0, rows, self.ENCODE_ROWS)]
        states = slices[0] if len(slices) == 1 else [
            [ops.concatenate([s[layer][k] for s in slices], axis=0) for k in range(2)]
            for layer in range(len(slices[0]))]
        output = ops.convert_to_numpy(self._search(states, limits, max_steps, input_table))
        return [_strip(row) for row in output[:len(sources)]]


class Translator:
    """A loaded model ready to translate; load once, call `translate` many times."""

    def __init__(self, model: Seq2Seq, tokenizer: Tokenizer, model_config: ModelConfig,
                 decode_config: DecodeConfig = DecodeConfig()):
        self.model, self.tokenizer = model, tokenizer
        self.model_config, self.decode_config = model_config, decode_config
        self.decoder = GreedyDecoder(model, model_config.reverse_source, decode_config)

    @classmethod
    def from_model_dir(cls, path: Path | str, decode_config: DecodeConfig = DecodeConfig()
                       ) -> "Translator":
        from .model_dir import ModelDir

        model, tokenizer, config = ModelDir(path).load_model()
        return cls(model, tokenizer, config.model, decode_config)

    def translate(self, lines: Sequence[str], batch_size: int | None = None) -> list[str]:
        """Translate `lines`; the result has one string per line, in order ("" for "")."""
        return self._translate_chunk(list(lines), batch_size or self.decode_config.batch_size)

    def translate_stream(self, lines: Iterable[str], batch_size: int | None = None,
                         chunk_size: int = 4096, eager: bool = False) -> Iterator[str]:
        """Translate a stream, yielding in input order as each chunk is done.

        Chunks hold `chunk_size` lines, sorted by length inside a chunk for batching. With
        `eager` (for pipes), a chunk never waits for lines that have not arrived yet, so a
        slow producer gets each translation as soon as its line is in; without it (files),
        chunks are always full, so batches do not depend on timing.
        """
        from .files import available_chunks, fixed_chunks

        chunks = available_chunks if eager else fixed_chunks
        for chunk in chunks(lines, chunk_size):
            yield from self._translate_chunk(chunk, batch_size or self.decode_config.batch_size)

    def _translate_chunk(self, lines: list[str], batch_size: int) -> list[str]:
        sources = self.tokenizer.encode_source(lines)
        limit = self.model_config.max_source_length
        for number, ids in enumerate(sources):
            if len(ids) > limit:
                logger.warning("input line %d has %d pieces; translating its first %d "
                               "(the model's max_source_length)", number + 1, len(ids), limit)
                sources[number] = ids[:limit]
        targets = self.decoder.decode(sources, batch_size)
        texts = iter(self.tokenizer.decode_target(ids for ids, s in zip(targets, sources) if s))
        return [next(texts) if s else "" for s in sources]


def _strip(ids: np.ndarray) -> list[int]:
    """The ids before the first eos (or padding)."""
    stops = np.flatnonzero((ids == EOS_ID) | (ids == PAD_ID))
    return ids[:stops[0]].tolist() if len(stops) else ids.tolist()
