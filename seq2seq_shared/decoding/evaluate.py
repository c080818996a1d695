"""Scoring: teacher-forced perplexity, and translation quality with sacreBLEU."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .. import backend
from ..config import DecodeConfig
from ..data.batches import ParallelBatches, encoded_batches, read_parallel


def teacher_forced_nll(model, batches: ParallelBatches, replicas: Any = None) -> float:
    """Mean negative log-likelihood per target token (eos included), without label smoothing;
    `replicas`: a data-parallel run's (`backend.compiled_step`)."""
    if not model.compiled:  # a freshly loaded model: only the loss is needed, no optimizer state
        model.compile()
    step = backend.compiled_step(model, training=False, replicas=replicas)
    total, tokens = 0.0, 0
    for index in range(len(batches)):
        batch = batches.batch(index)
        logs = step(batch.source, batch.target_input, batch.target_output)
        total += float(logs["nll"]) * batch.num_target_tokens
        tokens += batch.num_target_tokens
    return total / max(tokens, 1)


def perplexity(nll: float) -> float:
    """exp(nll), rounded; inf where it would overflow (a model far from trained)."""
    return round(math.exp(nll), 3) if nll < 700 else math.inf


def quality(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """Cased and lowercased BLEU, chrF (sacreBLEU, 13a tokenization) and exact match."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, bleu_lowercase, chrf = BLEU(), BLEU(lowercase=True), CHRF()
    exact = sum(h.strip() == r.strip() for h, r in zip(hypotheses, references))
    return {
        "bleu": round(bleu.corpus_score(hypotheses, [references]).score, 2),
        "bleu_lowercase": round(bleu_lowercase.corpus_score(hypotheses, [references]).score, 2),
        "chrf": round(chrf.corpus_score(hypotheses, [references]).score, 2),
        "exact_match": round(100.0 * exact / max(len(references), 1), 2),
        "sentences": len(references),
        "signatures": {
            "bleu": str(bleu.get_signature()),
            "bleu_lowercase": str(bleu_lowercase.get_signature()),
            "chrf": str(chrf.get_signature()),
        },
    }


def evaluate(
    model_dir: Path | str,
    source_path: Path | str,
    reference_path: Path | str,
    batch_size: int | None = None,
    output_path: Path | None = None,
    decode_config: DecodeConfig | None = None,
) -> dict[str, Any]:
    """Translate `source_path` (greedily unless `decode_config` says otherwise), score it
    against `reference_path`, and add perplexity."""
    from ..data.files import check_output_writable, write_lines
    from .translator import Translator

    if output_path is not None:
        check_output_writable(Path(output_path))  # fail before the work, not after
    sources, references = read_parallel(source_path, reference_path)
    translator = Translator.from_model_dir(model_dir, decode_config or DecodeConfig())
    hypotheses = translator.translate(sources, batch_size=batch_size)
    if output_path is not None:
        write_lines(hypotheses, Path(output_path))  # a file atomically; a device in place
    batches = encoded_batches(
        translator.tokenizer,
        sources,
        references,
        batch_tokens=4096,
        multiple=backend.shape_multiple(),
        fixed_shapes=not backend.dynamic_shapes(),
    )
    nll = teacher_forced_nll(translator.model, batches)
    search = translator.decode_config
    return {
        "source": str(source_path),
        "reference": str(reference_path),
        "beam_size": search.beam_size,
        "length_penalty": search.length_penalty,
        **quality(hypotheses, references),
        "perplexity": perplexity(nll),
    }
