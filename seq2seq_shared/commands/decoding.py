"""Commands that use models: translate, evaluate, export, info."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from ..config import RELEASE_PRECISIONS, RELEASE_RUNTIMES, DecodeConfig
from ..config import SHORTLIST_FREQUENT as FREQUENT
from ..config import SHORTLIST_PER_SOURCE as PER_SOURCE
from ..console import import_keras_quietly
from .options import search_options


@click.command()
@click.option(
    "--model-dir",
    "model_dirs",
    required=True,
    multiple=True,
    type=click.Path(path_type=Path),
    help="A trained model or a release; given more than once, an ensemble: the models' "
    "log-probabilities averaged at every step (they must share one SentencePiece model).",
)
@click.option(
    "-i",
    "--input",
    "input_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Text to translate, one sentence per line [default: stdin].",
)
@click.option(
    "-o",
    "--output",
    "output_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Where translations go, one line per input line [default: stdout].",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=DecodeConfig.batch_size,
    show_default=True,
    help="Sentences decoded together.",
)
@click.option(
    "--errors",
    type=click.Choice(["strict", "replace"]),
    default="strict",
    show_default=True,
    help="Invalid UTF-8 in the input: stop, or replace it with U+FFFD.",
)
@click.option(
    "--alignments",
    "alignments_path",
    type=click.Path(path_type=Path),
    help="Also write each line's attention weights here, as JSON lines: "
    '{"source": pieces, "target": pieces, "weights": [[...], ...]} '
    "(attention models; the best hypothesis').",
)
@search_options
@click.option(
    "--n-best",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Write the N best hypotheses per input line (N <= --beam-size), as one "
    'JSON line each: {"hypotheses": [{"translation", "log_prob", "score"}, '
    "...]}, best first.",
)
@click.option(
    "--scores",
    is_flag=True,
    help="Write 'TRANSLATION<TAB>LOG_PROB' lines: the log-probability the model "
    "gives its output (eos included), one line per input line.",
)
def translate(
    model_dirs: tuple[Path, ...],
    input_path: Path | None,
    output_path: Path | None,
    batch_size: int,
    errors: str,
    alignments_path: Path | None,
    beam_size: int,
    length_penalty: float,
    shortlist: bool,
    n_best: int,
    scores: bool,
) -> None:
    """Translate text: exactly one output line per input line, in order (greedy search
    unless --beam-size is over 1)."""
    from ..data import files, writer

    decode_config = _decode_config(batch_size, beam_size, length_penalty, n_best, scores)
    decode_config = dataclasses.replace(decode_config, shortlist=shortlist)
    if input_path is not None:
        files.check_input(input_path)
    writer.check_outputs(
        {"--output": output_path, "--alignments": alignments_path}, {"--input": input_path}
    )
    lines = files.iter_lines(input_path, errors=errors)
    translator = _load(model_dirs, decode_config, alignments_path is not None)
    # From a pipe, translate whatever has arrived; from a file, in full chunks.
    translations = translator.translate_stream(
        lines,
        batch_size=batch_size,
        eager=input_path is None,
        details=True,
        scores=scores,
        alignments=alignments_path is not None,
    )

    if alignments_path is None:
        writer.write_lines(_output_lines(translations, n_best, scores, None), output_path)
    else:  # (streamed beside the translations: never all held in memory)
        writer.write_lines_during(
            alignments_path,
            lambda write_alignment: writer.write_lines(
                _output_lines(translations, n_best, scores, write_alignment), output_path
            ),
        )


def _load(model_dirs: tuple[Path, ...], decode_config: DecodeConfig, alignments: bool):
    """The Translator of a model directory or release, or of an ensemble of them; Keras
    imported only for a model directory."""
    from ..runtime import check_shortlist, is_release
    from ..runtime.ensemble import load_translators

    if len(model_dirs) > 1 and alignments:
        raise click.UsageError("--alignments: an ensemble has no one attention; give one model")
    if len(model_dirs) == 1:
        check_shortlist(model_dirs[0], decode_config)  # (before Keras is imported)
    if not all(is_release(model_dir) for model_dir in model_dirs):
        import_keras_quietly()
    translator = load_translators(list(model_dirs), decode_config)
    if alignments and translator.model.attention is None:
        raise click.UsageError(
            f"--alignments: {model_dirs[0]} has no attention (trained with "
            f"--attention none); there are no alignments to write"
        )
    return translator


def _decode_config(
    batch_size: int, beam_size: int, length_penalty: float, n_best: int, scores: bool
) -> DecodeConfig:
    if n_best > 1 and scores:
        raise click.UsageError("--n-best already writes each hypothesis' score; drop --scores")
    try:
        return DecodeConfig(
            batch_size=batch_size, beam_size=beam_size, length_penalty=length_penalty, n_best=n_best
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None


def _output_lines(translations, n_best: int, scores: bool, write_alignment):
    """translate's output lines: the text, text and score, or the n-best as JSON; each
    line's alignment handed to `write_alignment` first (where given)."""
    for translation in translations:
        if write_alignment is not None:
            write_alignment(json.dumps(translation.alignment, ensure_ascii=False))
        if n_best > 1:
            yield json.dumps({"hypotheses": translation.hypotheses}, ensure_ascii=False)
        elif scores:
            yield f"{translation.text}\t{translation.hypotheses[0]['log_prob']}"
        else:
            yield translation.text


@click.command()
@click.option(
    "--model-dir",
    "model_dirs",
    required=True,
    multiple=True,
    type=click.Path(path_type=Path),
    help="A trained model or a release; given more than once, their ensemble (as translate).",
)
@click.option("--source", required=True, type=click.Path(path_type=Path), help="Source sentences.")
@click.option(
    "--reference",
    required=True,
    type=click.Path(path_type=Path),
    help="Reference translations, line-aligned with --source.",
)
@click.option(
    "--batch-size", type=click.IntRange(1), default=DecodeConfig.batch_size, show_default=True
)
@click.option(
    "-o",
    "--output",
    "output_path",
    type=click.Path(path_type=Path),
    help="Also write the translations here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@search_options
def evaluate(
    model_dirs: tuple[Path, ...],
    source: Path,
    reference: Path,
    batch_size: int,
    output_path: Path | None,
    as_json: bool,
    beam_size: int,
    length_penalty: float,
    shortlist: bool,
) -> None:
    """Score translations of SOURCE against REFERENCE: BLEU, chrF, exact match, perplexity
    (not for a release or an ensemble)."""
    from ..decoding.evaluate import evaluate as run_evaluation
    from ..runtime import is_release

    if not all(is_release(model_dir) for model_dir in model_dirs):
        import_keras_quietly()

    decode_config = DecodeConfig(
        batch_size=batch_size,
        beam_size=beam_size,
        length_penalty=length_penalty,
        shortlist=shortlist,
    )
    result = run_evaluation(
        list(model_dirs), source, reference, output_path=output_path, decode_config=decode_config
    )
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['source']} ({result['sentences']} sentences)")
    for key, label in (
        ("bleu", "BLEU"),
        ("bleu_lowercase", "BLEU (lowercased)"),
        ("chrf", "chrF"),
        ("exact_match", "exact match %"),
        ("perplexity", "perplexity"),
    ):
        click.echo(f"  {label:<20}{result[key]}")
    left_out = result["excluded"]["from_perplexity_an_empty_side"]
    if left_out:
        click.echo(
            f"  (perplexity over {result['perplexity_sentences']} sentences: "
            f"{left_out} with an empty side left out; BLEU and chrF score every line)"
        )
    for name, signature in result["signatures"].items():
        click.echo(f"  {name} signature: {signature}")


@click.command()
@click.option(
    "--model-dir", required=True, type=click.Path(path_type=Path), help="A trained model."
)
@click.option(
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="A new directory for the SavedModel and its SentencePiece model(s).",
)
def export(model_dir: Path, output: Path) -> None:
    """Export a TensorFlow SavedModel: ids in, ids out (see the README.txt it writes)."""
    import_keras_quietly()
    from ..decoding.export import export_saved_model

    click.echo(f"exported to {export_saved_model(model_dir, output)}")


@click.command()
@click.option(
    "--model-dir", required=True, type=click.Path(path_type=Path), help="A trained model."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(model_dir: Path, as_json: bool) -> None:
    """Show a model's config and its parameters by component, shared weights counted once."""
    from ..runtime import LoadedRelease, is_release

    if is_release(model_dir):  # (no Keras: the settings, the release and the total)
        release = LoadedRelease(model_dir).info()
        click.echo(json.dumps(release, indent=2))
        return
    import_keras_quietly()
    from ..model_dir import parameter_report

    report = parameter_report(model_dir)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(json.dumps(report["config"], indent=2))
    click.echo()
    click.echo(f"{'component':<24}{'parameters':>12}  used by")
    for row in report["components"]:
        click.echo(f"{row['name']:<24}{row['parameters']:>12,}  {row['used_by']}")
    click.echo(f"{'total':<24}{report['total']:>12,}  (formula: {report['formula']:,})")
    for line in report["notes"]:
        click.echo(line)


@click.command()
@click.option(
    "--model-dir", required=True, type=click.Path(path_type=Path), help="A trained model."
)
@click.option(
    "--out",
    "output",
    required=True,
    type=click.Path(path_type=Path),
    help="A new directory for the release.",
)
@click.option(
    "--precision",
    type=click.Choice(RELEASE_PRECISIONS),
    default="int8",
    show_default=True,
    help="How the weights are stored (int8: per output channel, scales in float32).",
)
@click.option(
    "--runtime",
    type=click.Choice(RELEASE_RUNTIMES),
    default="numpy",
    show_default=True,
    help="What runs it: numpy (weights.npz, needs nothing more) or onnx (ONNX graphs, "
    "run by ONNX Runtime with int8 products: faster; needs onnxruntime).",
)
def release(model_dir: Path, output: Path, precision: str, runtime: str) -> None:
    """Write a translate-only release of a trained model: its weights alone (no optimizer
    state, no checkpoints), SentencePiece and settings, with checksums; `translate`,
    `evaluate`, `serve` and the Python API run it without TensorFlow."""
    import_keras_quietly()
    from ..runtime.release import write_release

    result = write_release(model_dir, output, precision, runtime)
    click.echo(
        f"released {model_dir} ({precision}, {runtime}) into {output}: {result['bytes']:,} bytes"
    )


@click.command()
@click.option(
    "--model-dir",
    required=True,
    type=click.Path(path_type=Path),
    help="A trained model or a release: the shortlist is written into it.",
)
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--frequent",
    type=click.IntRange(0),
    default=FREQUENT,
    show_default=True,
    help="The most frequent target pieces, always candidates.",
)
@click.option(
    "--per-source",
    type=click.IntRange(1),
    default=PER_SOURCE,
    show_default=True,
    help="Candidates per source piece: the target pieces that co-occur with it most.",
)
def shortlist(model_dir: Path, source: Path, target: Path, frequent: int, per_source: int) -> None:
    """Build a vocabulary shortlist from parallel text (SOURCE, TARGET: the training data,
    as a rule): `translate --shortlist` then scores only the pieces a batch's source words
    make likely. `release` takes it along."""
    from ..runtime.shortlist import write_shortlist

    found = write_shortlist(model_dir, source, target, frequent, per_source)
    click.echo(
        f"wrote {found['path']}: the sentences' shortlists hold {found['coverage']}% of their "
        f"target pieces, with {found['pieces_per_sentence']} candidates per sentence"
    )
