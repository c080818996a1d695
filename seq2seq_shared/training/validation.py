"""Validation during training: teacher-forced loss, greedy BLEU and chrF, sample translations.

It reads the model the run is training, through the very `Translator` that `translate`
uses, so the scores are those of the model a user would get at that step. Under a
mixed-precision policy it reads a float32 copy of the model's weights, since `translate`
runs in float32.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..config import Config
from ..data.batches import ParallelBatches
from ..data.tokenizer import Tokenizer
from ..decoding.evaluate import perplexity, quality, teacher_forced_nll
from . import parallel

logger = logging.getLogger(__name__)

SAMPLE_TRANSLATIONS = 3


class Validator:
    """Scores a model on one validation set; `validate()` returns the metrics row."""

    def __init__(
        self,
        model,
        tokenizer: Tokenizer,
        config: Config,
        sources: list[str],
        references: list[str],
        batches: ParallelBatches,
        float32_copy=None,
    ):
        """`float32_copy`: a float32 model of `model`'s shape that validation scores
        instead, given `model`'s weights first (where `model` is mixed-precision)."""
        from ..decoding.translator import Translator

        self.trained = model
        self.model = model if float32_copy is None else float32_copy
        self.sources, self.references = sources, references
        self.batches = batches
        self.translator = Translator(self.model, tokenizer, config.model)

    def validate(self) -> dict[str, Any]:
        """valid_loss (nll per target token, unsmoothed), perplexity, BLEU and chrF; the
        loss may be NaN or Inf (a diverged model): the caller decides what that means."""
        if self.model is not self.trained:  # copies (on JAX, shared arrays could be donated)
            self.model.set_weights(self.trained.get_weights())
        nll = teacher_forced_nll(self.model, self.batches, parallel.current())
        row: dict[str, Any] = {"valid_loss": round(nll, 4) if np.isfinite(nll) else nll}
        if not np.isfinite(nll):
            return row
        hypotheses = self.translator.translate(self.sources)
        scores = quality(hypotheses, self.references)
        row.update(valid_ppl=perplexity(nll), valid_bleu=scores["bleu"], valid_chrf=scores["chrf"])
        self._log_samples(hypotheses)
        return row

    def _log_samples(self, hypotheses: list[str]) -> None:
        picks = np.linspace(0, len(self.sources) - 1, SAMPLE_TRANSLATIONS).astype(int).tolist()
        for i in picks:
            logger.info(
                "sample: %s\n    reference:  %s\n    hypothesis: %s",
                self.sources[i],
                self.references[i],
                hypotheses[i],
            )
