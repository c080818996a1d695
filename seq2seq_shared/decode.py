"""Batched greedy decoding: text in, text out, in input order, one output per input.

The decode loop is one compiled `while_loop` over `Seq2Seq.decode_step`. It stops as
soon as every sentence has produced eos or reached its own length limit
(`length_ratio * source_length + length_offset`).
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


def greedy_search(model: Seq2Seq, source, limits, max_steps: int):
    """Token ids (batch, max_steps), PAD after each sentence's eos or limit."""
    batch_size = ops.shape(source)[0]
    positions = ops.expand_dims(ops.arange(max_steps, dtype="int32"), 0)  # (1, max_steps)

    def keep_going(step, token, states, output, finished):
        return ops.logical_not(ops.all(finished))

    def step_once(step, token, states, output, finished):
        logits, states = model.decode_step(token, states, context)  # (batch, vocab)
        token = ops.where(finished, PAD_ID, ops.cast(ops.argmax(logits, axis=-1), "int32"))
        output = ops.where(positions == step, ops.expand_dims(token, 1), output)
        finished = finished | ops.equal(token, EOS_ID) | (step + 1 >= limits)
        return step + 1, token, states, output, finished

    encoded = model.encode(source)
    context = model.step_context(encoded)  # a loop invariant: None, or (batch, 4 * hidden)
    start = (ops.convert_to_tensor(0, "int32"),
             ops.full((batch_size,), BOS_ID, dtype="int32"),
             encoded,
             ops.zeros((batch_size, max_steps), dtype="int32"),
             ops.less_equal(limits, 0))
    return ops.while_loop(keep_going, step_once, start, maximum_iterations=max_steps)[3]


class GreedyDecoder:
    """Ids in, ids out: sorts by length, batches, runs the compiled search, restores order."""

    def __init__(self, model: Seq2Seq, reverse_source: bool,
                 decode_config: DecodeConfig = DecodeConfig()):
        self.model, self.reverse_source, self.decode_config = model, reverse_source, decode_config
        self._search = backend.compile_inference(model, self._search_fn, static_argnums=(2,))

    def _search_fn(self, source, limits, max_steps):
        return greedy_search(self.model, source, limits, max_steps)

    def decode(self, sources: Sequence[Sequence[int]], batch_size: int | None = None
               ) -> list[list[int]]:
        """Target ids (eos stripped) for each source, in order; [] for an empty source."""
        batch_size = batch_size or self.decode_config.batch_size
        results: list[list[int]] = [[] for _ in sources]
        order = [i for i in np.argsort([len(s) for s in sources], kind="stable") if sources[i]]
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            for row, ids in zip(rows, self._decode_batch([sources[i] for i in rows])):
                results[row] = ids
        return results

    def _decode_batch(self, sources: list[Sequence[int]]) -> list[list[int]]:
        # Where each shape compiles anew (JAX), pad the batch to a power of two and lengths
        # to a multiple, so the compiled search sees few distinct shapes.
        multiple = backend.shape_multiple()
        rows = len(sources) if multiple == 1 else 1 << (len(sources) - 1).bit_length()
        padded = list(sources) + [[]] * (rows - len(sources))
        config = self.decode_config
        limits = np.array([int(config.length_ratio * len(s) + config.length_offset) if s else 0
                           for s in padded], dtype=np.int32)
        max_steps = round_up(int(limits.max()), 8)
        source = source_array(padded, self.reverse_source, multiple)
        output = ops.convert_to_numpy(self._search(source, limits, max_steps))
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
