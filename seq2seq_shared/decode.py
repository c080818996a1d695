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
        self._search = backend.compile_inference(model, self._search_fn,
                                                 static_argnums=(2, 4))
        self._input_table = backend.compile_inference(model, model.input_table)
        self.use_input_table = (model.target_vocab_size * 4 * model.hidden_size * 4
                                <= self.INPUT_TABLE_BYTES)

    def _encode_fn(self, source_ids):
        """Right-padded ids in natural order -> the encoded source, the step limits."""
        source, limits = prepare_sources(source_ids, self.decode_config,
                                         self.max_source_length)
        return self.model.encode(source), limits

    def _search_fn(self, encoded, limits, max_steps, input_table, alignments):
        found = greedy_search(self.model, encoded, limits, max_steps, input_table=input_table,
                              alignments=alignments)
        return (trim_at_eos(found[0]), found[1]) if alignments else trim_at_eos(found)

    def decode(self, sources: Sequence[Sequence[int]], batch_size: int | None = None,
               alignments: bool = False) -> list[list[int]] | tuple[list, list]:
        """Target ids (eos stripped) for each source, in order; [] for an empty source.

        With `alignments` (attention models), also each sentence's attention weights:
        an array (target pieces + eos, source pieces read), rows summing to 1."""
        batch_size = batch_size or self.decode_config.batch_size
        results: list[list[int]] = [[] for _ in sources]
        weights: list[np.ndarray] = [np.zeros((0, 0), "float32") for _ in sources]
        order = [i for i in np.argsort([len(s) for s in sources], kind="stable") if sources[i]]
        table = self._input_table() if order and self.use_input_table else None
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            found = self._decode_batch([sources[i] for i in rows], table, alignments)
            for row, ids, attention in zip(rows, *found):
                results[row], weights[row] = ids, attention
        return (results, weights) if alignments else results

    def _decode_batch(self, sources: list[Sequence[int]], input_table, alignments: bool
                      ) -> tuple[list[list[int]], list]:
        # Where each shape compiles anew (JAX), pad the batch to a power of two and lengths
        # to a multiple, so the compiled functions see few distinct shapes.
        multiple = backend.shape_multiple()
        rows = len(sources) if multiple == 1 else 1 << (len(sources) - 1).bit_length()
        padded = list(sources) + [[]] * (rows - len(sources))
        slices = [self._encode(pad(padded[i:i + self.ENCODE_ROWS], multiple))
                  for i in range(0, rows, self.ENCODE_ROWS)]  # (encoded, limits) per slice
        encoded = concatenate_encoded([encoded for encoded, _ in slices])
        limits = np.concatenate([ops.convert_to_numpy(x) for _, x in slices])  # (rows,)
        max_steps = round_up(int(limits.max()), 8)
        found = self._search(encoded, limits, max_steps, input_table, alignments)
        output = ops.convert_to_numpy(found[0] if alignments else found)
        ids = [row[row != PAD_ID].tolist() for row in output[:len(sources)]]  # eos trimmed
        if not alignments:
            return ids, [None] * len(ids)
        weights = ops.convert_to_numpy(found[1])  # (rows, max_steps, source_len)
        read = [min(len(s), self.max_source_length or len(s)) for s in sources]
        return ids, [weights[i, :len(ids[i]) + 1, :read[i]] for i in range(len(sources))]


def concatenate_encoded(slices: list[dict]) -> dict:
    """Encoded sources of several batch slices (`Seq2Seq.encode`) as one: states stacked
    by row; the memory padded to the longest slice's source length (masked there)."""
    if len(slices) == 1:
        return slices[0]
    first = slices[0]
    joined = {"states": [[ops.concatenate([s["states"][layer][k] for s in slices], axis=0)
                          for k in range(2)] for layer in range(len(first["states"]))]}
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
                         chunk_size: int = 4096, eager: bool = False,
                         alignments: list | None = None) -> Iterator[str]:
        """Translate a stream, yielding in input order as each chunk is done.

        Chunks hold `chunk_size` lines, sorted by length inside a chunk for batching. With
        `eager` (for pipes), a chunk never waits for lines that have not arrived yet, so a
        slow producer gets each translation as soon as its line is in; without it (files),
        chunks are always full, so batches do not depend on timing. With `alignments` (a
        list, attention models), each line's alignment (`alignment_record`) is appended
        to it as its translation is yielded.
        """
        from .files import available_chunks, fixed_chunks

        chunks = available_chunks if eager else fixed_chunks
        for chunk in chunks(lines, chunk_size):
            yield from self._translate_chunk(chunk, batch_size or self.decode_config.batch_size,
                                             alignments)

    def _translate_chunk(self, lines: list[str], batch_size: int,
                         alignments: list | None = None) -> list[str]:
        sources = self.tokenizer.encode_source(lines)
        limit = self.model_config.max_source_length
        for number, ids in enumerate(sources):
            if len(ids) > limit:  # the decoder reads the first `limit` (`prepare_sources`)
                logger.warning("input line %d has %d pieces; translating its first %d "
                               "(the model's max_source_length)", number + 1, len(ids), limit)
        if alignments is None:
            targets = self.decoder.decode(sources, batch_size)
        else:
            targets, weights = self.decoder.decode(sources, batch_size, alignments=True)
            alignments.extend(self.alignment_record(source[:limit], target, matrix)
                              for source, target, matrix in zip(sources, targets, weights))
        texts = iter(self.tokenizer.decode_target(ids for ids, s in zip(targets, sources) if s))
        return [next(texts) if s else "" for s in sources]

    def alignment_record(self, source: Sequence[int], target: Sequence[int],
                         weights: np.ndarray) -> dict:
        """One line of `translate --alignments`: the source pieces read, the target pieces
        written (eos last), and `weights[t][s]`, the attention target piece t paid to
        source piece s (each row sums to 1; [] for an empty line)."""
        return {"source": self.tokenizer.source_pieces(source),
                "target": self.tokenizer.target_pieces(target) + ["</s>"] if source else [],
                "weights": np.round(weights.astype("float64"), 4).tolist()}
