"""Text in, text out: a loaded model ready to translate (`Translator`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import DecodeConfig, ModelConfig
from ..data.tokenizer import Tokenizer
from .hypothesis import Hypothesis

if TYPE_CHECKING:
    from ..model.seq2seq import Seq2Seq

logger = logging.getLogger(__name__)


@dataclass
class Translation:
    """One input line's result with everything asked for: its text, its hypotheses as
    ({"translation", "log_prob", "score"}, best first), its alignment record."""

    text: str
    hypotheses: list[dict]
    alignment: dict | None = None
    truncated: bool = False  # the source was longer than max_source_length: its start read


class Translator:
    """A loaded model ready to translate; load once, call `translate` many times.

    `decode_config` chooses the search (greedy, or a beam with its length penalty and
    `n_best`) and the length limits. `fixed_weights`: nothing will train the model while
    this translator lives (true of a model loaded from its directory), so what depends
    only on the weights is computed once (`Decoder`)."""

    def __init__(
        self,
        model: Seq2Seq | Any,  # (the runtime's NumPy `Network` for a release)
        tokenizer: Tokenizer,
        model_config: ModelConfig,
        decode_config: DecodeConfig = DecodeConfig(),
        fixed_weights: bool = False,
        decoder: Any = None,
    ):
        """`decoder`: ids in, ids out (`search`), where not the Keras `Decoder` of `model`:
        the light runtime's (runtime/), which runs a release without TensorFlow."""
        self.model, self.tokenizer = model, tokenizer
        self.model_config, self.decode_config = model_config, decode_config
        if decoder is None:
            from .decoder import Decoder

            decoder = Decoder(model, decode_config, model_config.max_source_length, fixed_weights)
        self.decoder = decoder

    @classmethod
    def from_model_dir(
        cls, path: Path | str, decode_config: DecodeConfig = DecodeConfig()
    ) -> Translator:
        from ..model_dir import ModelDir

        model, tokenizer, config = ModelDir(path).load_model()  # (Keras: a trained model)
        return cls(model, tokenizer, config.model, decode_config, fixed_weights=True)

    def translate(self, lines: Sequence[str], batch_size: int | None = None) -> list[str]:
        """Translate `lines`; the result has one string per line, in order ("" for "")."""
        return [t.text for t in self.translate_details(lines, batch_size)]

    def translate_details(
        self,
        lines: Sequence[str],
        batch_size: int | None = None,
        scores: bool = False,
        alignments: bool = False,
    ) -> list[Translation]:
        """`translate` with each line's hypotheses (`n_best` of them; scored with `scores`
        or a beam) and, with `alignments` (attention models), its alignment record."""
        return self._translate_chunk(
            list(lines), batch_size or self.decode_config.batch_size, scores, alignments
        )

    def translate_stream(
        self,
        lines: Iterable[str],
        batch_size: int | None = None,
        chunk_size: int = 4096,
        eager: bool = False,
        details: bool = False,
        scores: bool = False,
        alignments: bool = False,
    ) -> Iterator:
        """Translate a stream, yielding in input order as each chunk is done: strings, or
        with `details` `Translation`s (see `translate_details`).

        Chunks hold `chunk_size` lines, sorted by length inside a chunk for batching. With
        `eager` (for pipes), a chunk never waits for lines that have not arrived yet, so a
        slow producer gets each translation as soon as its line is in; without it (files),
        chunks are always full, so batches do not depend on timing.
        """
        from ..data.files import available_chunks, fixed_chunks

        chunks = available_chunks if eager else fixed_chunks
        for chunk in chunks(lines, chunk_size):
            done = self._translate_chunk(
                chunk, batch_size or self.decode_config.batch_size, scores, alignments
            )
            yield from (done if details else (t.text for t in done))

    def _translate_chunk(
        self, lines: list[str], batch_size: int, scores: bool = False, alignments: bool = False
    ) -> list[Translation]:
        sources = self.tokenizer.encode_source(lines)
        limit = self.model_config.max_source_length
        for number, ids in enumerate(sources):
            if len(ids) > limit:  # the decoder reads the first `limit` (`prepare_sources`)
                logger.warning(
                    "input line %d has %d pieces; translating its first %d "
                    "(the model's max_source_length)",
                    number + 1,
                    len(ids),
                    limit,
                )
        found = self.decoder.search(sources, batch_size, alignments, scores)
        texts = iter(
            self.tokenizer.decode_target(
                h.ids for hypotheses, s in zip(found, sources) if s for h in hypotheses
            )
        )
        results = []
        for source, hypotheses in zip(sources, found):
            listed = [
                {
                    "translation": next(texts) if source else "",
                    "log_prob": _rounded(h.log_prob),
                    "score": _rounded(h.score),
                }
                for h in hypotheses
            ]
            alignment = self.alignment_record(source[:limit], hypotheses[0]) if alignments else None
            results.append(
                Translation(str(listed[0]["translation"]), listed, alignment, len(source) > limit)
            )
        return results

    def alignment_record(self, source: Sequence[int], hypothesis: Hypothesis) -> dict:
        """One line of `translate --alignments`: the source pieces read, the target pieces
        written (eos last, unless the length limit stopped the sentence), and
        `weights[t][s]`, the attention target piece t paid to source piece s (each row
        sums to 1; [] for an empty line)."""
        if not source:
            return {"source": [], "target": [], "weights": []}
        assert hypothesis.weights is not None  # (searched with alignments)
        return {
            "source": self.tokenizer.source_pieces(source),
            "target": self.tokenizer.target_pieces(hypothesis.ids) + ["</s>"] * hypothesis.ended,
            "weights": np.round(hypothesis.weights.astype("float64"), 4).tolist(),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
