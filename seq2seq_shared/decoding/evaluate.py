"""Scoring: teacher-forced perplexity, and translation quality with sacreBLEU."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from ..config import DecodeConfig
from ..data.batches import ParallelBatches, encoded_batches
from ..data.check import check_corpus
from ..data.files import check_rereadable, iter_lines

logger = logging.getLogger(__name__)


def teacher_forced_nll(model, batches: ParallelBatches, replicas: Any = None) -> float:
    """Mean negative log-likelihood per target token (eos included), without label smoothing;
    `replicas`: a data-parallel run's (`backend.compiled_step`)."""
    from .. import backend

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


def require_sacrebleu() -> None:
    """Scoring needs sacreBLEU, which the light install (translation only) leaves out."""
    try:
        import sacrebleu  # noqa: F401
    except ImportError:
        raise ValueError(
            "scoring needs sacreBLEU, which is not installed: pip install sacrebleu "
            "(or the checkout's extra: pip install -e '.[evaluate]')"
        ) from None


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
    model_dir: Path | str | list[Path],
    source_path: Path | str,
    reference_path: Path | str,
    batch_size: int | None = None,
    output_path: Path | None = None,
    decode_config: DecodeConfig | None = None,
) -> dict[str, Any]:
    """Translate every line of `source_path` (greedily unless `decode_config` says
    otherwise) and score all of them against `reference_path`, as sacreBLEU scores the
    two files; an empty source line gets an empty translation, and is charged for it.
    `output_path` gets exactly one translation per source line. Perplexity needs both
    sides: pairs with an empty side are left out of it, and counted. A list of model
    directories is their ensemble (no perplexity)."""
    from ..data.writer import check_outputs, write_lines
    from ..runtime.ensemble import load_translators

    require_sacrebleu()  # before the translating, not after it
    sources, references = read_test_set(Path(source_path), Path(reference_path))
    check_outputs(
        {"--output": output_path}, {"SOURCE": Path(source_path), "REFERENCE": Path(reference_path)}
    )
    paths = list(model_dir) if isinstance(model_dir, list) else [model_dir]
    translator = load_translators(paths, decode_config or DecodeConfig())
    hypotheses = translator.translate(sources, batch_size=batch_size)
    if output_path is not None:
        write_lines(hypotheses, Path(output_path))  # a file atomically; a device in place
    both = [(s, r) for s, r in zip(sources, references, strict=True) if s.strip() and r.strip()]
    # (A release runs without Keras, an ensemble has no one model: no perplexity for them.)
    light = not hasattr(translator.model, "compiled")
    nll = _nll(translator, both) if both and not light else math.nan
    search = translator.decode_config
    return {
        "source": str(source_path),
        "reference": str(reference_path),
        "beam_size": search.beam_size,
        "length_penalty": search.length_penalty,
        **quality(hypotheses, references),
        "perplexity": perplexity(nll) if math.isfinite(nll) else None,
        "perplexity_sentences": len(both),
        "excluded": {"from_perplexity_an_empty_side": len(sources) - len(both)},
    }


def _nll(translator, pairs: list[tuple[str, str]]) -> float:
    """The teacher-forced nll per target token over `pairs` (both sides non-empty)."""
    from .. import backend

    batches = encoded_batches(
        translator.tokenizer,
        [source for source, _ in pairs],
        [reference for _, reference in pairs],
        batch_tokens=4096,
        multiple=backend.shape_multiple(),
        fixed_shapes=not backend.dynamic_shapes(),
    )
    return teacher_forced_nll(translator.model, batches)


def read_test_set(source_path: Path, reference_path: Path) -> tuple[list[str], list[str]]:
    """Every line of both files, line-aligned (the checks of `check-data`: equal line
    counts, valid UTF-8; a byte order mark and CRLF endings removed)."""
    for path in (source_path, reference_path):
        check_rereadable(path, "evaluate reads it twice (checked, then translated)")
        if os.path.getsize(path) == 0:
            raise ValueError(f"{path}: empty; there is nothing to score")
    report = check_corpus(source_path, reference_path)
    if not report.ok and report.kept == 0 and report.source_lines == report.target_lines:
        report.errors = [e for e in report.errors if "no usable pair" not in e]
    report.raise_if_unusable()
    for warning in report.warnings:
        logger.warning("%s", warning)
    sides = []
    for path in (source_path, reference_path):
        lines = [line.removesuffix("\r") for line in iter_lines(path)]
        if lines:
            lines[0] = lines[0].removeprefix("\ufeff")
        sides.append(lines)
    return sides[0], sides[1]
