"""Greedy decoding: ids in, ids out (`GreedyDecoder`); text in, text out (`Translator`).

"Decoding" here means producing the target for a source, one greedy step at a time
(`Seq2Seq.decode_step`). Both classes run the path of search.py: its source-side rules
(truncation, length limits), its search and its eos trimming, which the
SavedModel export traces too, so `translate` and the export cannot disagree.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from keras import ops

from . import backend
from .config import DecodeConfig, ModelConfig
from .data import pad, round_up
from .model import Seq2Seq
from .search import greedy_search, prepare_sources, trim_at_eos
from .tokenizer import PAD_ID, Tokenizer

logger = logging.getLogger(__name__)


class GreedyDecoder:
    """Ids in, ids out: sorts by length, batches, runs the compiled search, restores order.

    Sources are ids in natural order; one longer than `max_source_length` is read up to
    there, as the SavedModel export reads it (`search.prepare_sources`).

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

    def __init__(self, model: Seq2Seq,
                 decode_config: DecodeConfig = DecodeConfig(),
                 max_source_length: int | None = None):
        self.model, self.decode_config = model, decode_config
        self.max_source_length = max_source_length  # None: sources are never cut
        self._encode = backend.compile_inference(model, self._encode_fn)
        self._search = backend.compile_inference(model, self._search_fn, static_argnums=(2,))
        self._input_table = backend.compile_inference(model, model.input_table)
        self.use_input_table = (model.target_vocab_size * 4 * model.hidden_size * 4
                                <= self.INPUT_TABLE_BYTES)

    def _encode_fn(self, source_ids):
        """Right-padded ids in natural order -> the encoder's final states, the step limits."""
        source, limits = prepare_sources(source_ids, self.decode_config,
                                         self.max_source_length)
        return self.model.encode(source), limits

    def _search_fn(self, states, limits, max_steps, input_table):
        return trim_at_eos(greedy_search(self.model, states, limits, max_steps,
                                         input_table=input_table))

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
        encoded = [self._encode(pad(padded[i:i + self.ENCODE_ROWS], multiple))
                   for i in range(0, rows, self.ENCODE_ROWS)]  # (states, limits) per slice
        slice_states, slice_limits = zip(*encoded)
        states = slice_states[0] if len(slice_states) == 1 else [
            [ops.concatenate([s[layer][k] for s in slice_states], axis=0) for k in range(2)]
            for layer in range(len(slice_states[0]))]  # each (rows, hidden)
        limits = np.concatenate([ops.convert_to_numpy(x) for x in slice_limits])  # (rows,)
        max_steps = round_up(int(limits.max()), 8)
        output = ops.convert_to_numpy(self._search(states, limits, max_steps, input_table))
        return [row[row != PAD_ID].tolist() for row in output[:len(sources)]]  # eos trimmed


class Translator:
    """A loaded model ready to translate; load once, call `translate` many times."""

    def __init__(self, model: Seq2Seq, tokenizer: Tokenizer, model_config: ModelConfig,
                 decode_config: DecodeConfig = DecodeConfig()):
        self.model, self.tokenizer = model, tokenizer
        self.model_config, self.decode_config = model_config, decode_config
        self.decoder = GreedyDecoder(model, decode_config,
                                     model_config.max_source_length)

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
            if len(ids) > limit:  # the decoder reads the first `limit` (`prepare_sources`)
                logger.warning("input line %d has %d pieces; translating its first %d "
                               "(the model's max_source_length)", number + 1, len(ids), limit)
        targets = self.decoder.decode(sources, batch_size)
        texts = iter(self.tokenizer.decode_target(ids for ids, s in zip(targets, sources) if s))
        return [next(texts) if s else "" for s in sources]
