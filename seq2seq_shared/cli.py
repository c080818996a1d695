"""The `seq2seq-shared` command line: options -> one library call -> printed result.

Keras (and so TensorFlow) is imported inside commands only, so `--help` is instant.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import click

from .config import PRECISIONS, Config, DecodeConfig, ModelConfig, TrainingConfig, load_config_file
from .console import Group, import_keras_quietly
from .serve.command import serve

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter


@click.group(
    cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="seq2seq-shared")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log debugging detail, and show TensorFlow's start-up messages.",
)
def main(verbose: bool) -> None:
    """Compact translation models with ONE LSTM shared by encoder and decoder.

    \b
    Two commands to a working translator:
      seq2seq-shared train data/train.en data/train.de --valid data/dev.en data/dev.de --model-dir m
      echo "three hundred twenty-one" | seq2seq-shared translate --model-dir m
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(message)s" if verbose else "%(message)s",
        stream=sys.stderr,
    )


def _default(cls: type, name: str):
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def _setting(name: str, type_, help_: str, cls: type = ModelConfig):
    """An option that overrides config field `name`; its help shows the built-in default."""
    flag = "--" + name.replace("_", "-")
    return click.option(
        flag, name, type=type_, default=None, help=f"{help_} [default: {_default(cls, name)}]"
    )


def _switch(name: str, help_: str, cls: type = ModelConfig):
    flag = name.replace("_", "-")
    return click.option(
        f"--{flag}/--no-{flag}",
        name,
        default=None,
        help=f"{help_} [default: {'on' if _default(cls, name) else 'off'}]",
    )


def search_options(command):
    """--beam-size and --length-penalty, for every command that decodes."""
    command = click.option(
        "--length-penalty",
        type=click.FloatRange(0),
        default=0.0,
        show_default=True,
        help="GNMT length penalty alpha: beam hypotheses are ranked by "
        "log-prob / ((5 + length) / 6) ** alpha (0: none).",
    )(command)
    return click.option(
        "--beam-size",
        type=click.IntRange(1),
        default=1,
        show_default=True,
        help="Beam search with this many hypotheses per sentence (1: greedy search, the fastest).",
    )(command)


TRAINING_OPTIONS = [
    _setting("embedding_dim", click.IntRange(1), "Embedding size."),
    _setting("hidden_size", click.IntRange(1), "LSTM hidden size."),
    _setting("num_layers", click.IntRange(1), "LSTM layers, each shared by encoder and decoder."),
    _setting(
        "dropout",
        click.FloatRange(0, 1, max_open=True),
        "Dropout on embeddings and LSTM outputs (never inside the recurrence).",
    ),
    _setting("vocab_size", click.IntRange(8), "SentencePiece vocabulary size (an upper bound)."),
    _setting("max_source_length", click.IntRange(1), "Longest source, in pieces."),
    _switch(
        "share_lstm", "One LSTM per layer for encoder and decoder (--no-share-lstm: the ablation)."
    ),
    _switch("share_embeddings", "One embedding table for source and target."),
    _switch("tie_output", "Output projection reuses the embedding table."),
    _switch("reverse_source", "Read the source backwards."),
    _switch("feed_context", "Feed the encoder's final state to every decoder step."),
    _setting(
        "attention",
        click.Choice(["none", "dot", "general"]),
        "Luong attention over the source's LSTM outputs (dot or general scores).",
    ),
    _setting(
        "role_signal",
        click.Choice(["none", "bias", "embedding"]),
        "Tell the shared LSTM whether it reads or writes: a gate bias or an input vector per role.",
    ),
    _setting("epochs", click.IntRange(1), "Passes over the training data.", TrainingConfig),
    _setting(
        "batch_tokens",
        click.IntRange(16),
        "Target tokens per batch, padding included.",
        TrainingConfig,
    ),
    _setting(
        "learning_rate", click.FloatRange(0, min_open=True), "Adam learning rate.", TrainingConfig
    ),
    _setting(
        "clip_norm",
        click.FloatRange(0),
        "Clip gradients to this global norm (0: off).",
        TrainingConfig,
    ),
    _setting(
        "label_smoothing", click.FloatRange(0, 1, max_open=True), "Label smoothing.", TrainingConfig
    ),
    _setting("max_target_length", click.IntRange(1), "Longest target, in pieces.", TrainingConfig),
    _setting(
        "seed", int, "Random seed (data order, initialisation, SentencePiece).", TrainingConfig
    ),
    _setting(
        "warmup_steps", click.IntRange(0), "Linear learning-rate warm-up steps.", TrainingConfig
    ),
    _setting(
        "validate_every",
        click.IntRange(0),
        "Validate every N steps (0: every epoch).",
        TrainingConfig,
    ),
    _setting(
        "best_metric",
        click.Choice(["bleu", "loss"]),
        "Validation measure that picks the best model and stops early.",
        TrainingConfig,
    ),
    _setting(
        "plateau_metric",
        click.Choice(["loss", "bleu"]),
        "Validation measure whose plateau lowers the learning rate.",
        TrainingConfig,
    ),
    _setting(
        "lr_patience",
        click.IntRange(0),
        "Validations without improvement (of --plateau-metric) before the learning "
        "rate drops (0: never).",
        TrainingConfig,
    ),
    _setting(
        "lr_decay",
        click.FloatRange(0, 1, min_open=True),
        "Factor the learning rate is multiplied by on a plateau.",
        TrainingConfig,
    ),
    _setting(
        "patience",
        click.IntRange(0),
        "Validations without improvement before training stops (0: never).",
        TrainingConfig,
    ),
    _setting(
        "max_minutes",
        click.FloatRange(0),
        "Stop after this many minutes of training, resumes included (0: no limit).",
        TrainingConfig,
    ),
    _setting(
        "checkpoint_every",
        click.IntRange(0),
        "Save a resumable checkpoint every N steps (also at every validation; 0: only then).",
        TrainingConfig,
    ),
    _setting(
        "keep_checkpoints", click.IntRange(1), "How many checkpoints to keep.", TrainingConfig
    ),
    _switch("tensorboard", "Write TensorBoard logs to MODEL_DIR/tensorboard.", TrainingConfig),
    _setting(
        "log_every",
        click.IntRange(0),
        "Read the loss back from the device every N steps (0: every step on a CPU, "
        "every 50 on a GPU).",
        TrainingConfig,
    ),
    _setting(
        "accumulate_steps",
        click.IntRange(1),
        "Batches per optimizer step: one step over N batches, equal to one batch N "
        "times larger (gradient accumulation).",
        TrainingConfig,
    ),
    _setting(
        "precision",
        click.Choice(PRECISIONS),
        "Training computation: mixed_* runs layers in float16 or bfloat16 (float16 with "
        "loss scaling); weights, the loss, validation and translation stay float32.",
        TrainingConfig,
    ),
]


def _apply(options):
    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


@main.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--model-dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Where the model is written (config, SentencePiece, weights, logs).",
)
@click.option(
    "--valid",
    nargs=2,
    type=click.Path(path_type=Path),
    default=None,
    metavar="SOURCE TARGET",
    help="Validation pair: loss, perplexity, greedy BLEU and chrF at every "
    "validation; the best model is kept.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="JSON or TOML file with [model] and [training] settings; options override it.",
)
@click.option(
    "--separate-vocab",
    is_flag=True,
    default=None,
    help="One SentencePiece model per language instead of a joint one.",
)
@_apply(TRAINING_OPTIONS)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Start over: delete the run that --model-dir holds instead of resuming it.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--devices",
    default="1",
    show_default=True,
    metavar="N|all",
    help="Data parallel over N devices (all: every device of every process); "
    "needs KERAS_BACKEND=jax.",
)
@click.option(
    "--coordinator",
    metavar="HOST:PORT",
    default=None,
    help="Several processes (hosts): process 0's address, the same in every one.",
)
@click.option(
    "--num-processes",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Several processes: how many take part.",
)
@click.option(
    "--process-id",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Several processes: this one's index (0 writes the model directory).",
)
def train(
    data: tuple[Path, ...],
    model_dir: Path,
    valid,
    config_file: Path | None,
    separate_vocab: bool | None,
    overwrite: bool,
    quiet: bool,
    devices: str,
    coordinator: str | None,
    num_processes: int,
    process_id: int,
    **settings,
) -> None:
    """Train a model on a parallel corpus: SOURCE TARGET files (line i translates line i),
    or a PREPARED directory (see prepare).

    Files are checked (see check-data) and prepared into MODEL_DIR/prepared-corpus first. Run the
    same command again to resume an interrupted run exactly where its last checkpoint
    left it; Ctrl-C saves one.
    """
    if len(data) > 2:
        raise click.UsageError(
            f"expected SOURCE TARGET (two files) or one PREPARED directory, got {len(data)} paths"
        )
    if len(data) == 1 and not data[0].is_dir():
        raise click.UsageError(
            f"{data[0]}: a single path must be a directory written by "
            f"`seq2seq-shared prepare`; or pass SOURCE TARGET files"
        )
    from .training.parallel import Cluster

    try:
        cluster = Cluster(
            devices=devices, coordinator=coordinator, processes=num_processes, process=process_id
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    import_keras_quietly()
    from .training.train import train as run_training

    config = load_config_file(config_file) if config_file else Config()
    if separate_vocab:
        settings.update(joint_vocab=False, share_embeddings=False)
    config = config.updated({name: value for name, value in settings.items() if value is not None})
    valid_source, valid_target = valid if valid else (None, None)
    metrics = run_training(
        data[0],
        data[1] if len(data) == 2 else None,
        model_dir,
        config,
        valid_source,
        valid_target,
        overwrite=overwrite,
        progress=not quiet,
        cluster=None if cluster.single else cluster,
    )
    click.echo(json.dumps(metrics))


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@click.argument("prepared", type=click.Path(path_type=Path))
@click.option(
    "--vocab-size",
    type=click.IntRange(8),
    default=ModelConfig.vocab_size,
    show_default=True,
    help="SentencePiece pieces (per language with --separate-vocab).",
)
@click.option(
    "--separate-vocab",
    is_flag=True,
    help="One SentencePiece model per language instead of a joint one.",
)
@click.option(
    "--sentencepiece-model-type",
    type=click.Choice(["unigram", "bpe"]),
    default=TrainingConfig.sentencepiece_model_type,
    show_default=True,
)
@click.option(
    "--sentencepiece-sample-lines",
    type=click.IntRange(1),
    default=TrainingConfig.sentencepiece_sample_lines,
    show_default=True,
    help="Lines SentencePiece trains on, sampled from the whole corpus.",
)
@click.option(
    "--seed", type=int, default=TrainingConfig.seed, show_default=True, help="Seed of the sample."
)
@click.option(
    "--max-length",
    type=click.IntRange(1),
    show_default=True,
    default=max(ModelConfig.max_source_length, TrainingConfig.max_target_length),
    help="Drop pairs with more words than this, or more than 10 characters per word "
    "of it, on either side (train drops pairs over its piece limits later).",
)
@click.option("--overwrite", is_flag=True, help="Replace PREPARED if it exists.")
def prepare(
    source: Path,
    target: Path,
    prepared: Path,
    vocab_size: int,
    separate_vocab: bool,
    sentencepiece_model_type: str,
    sentencepiece_sample_lines: int,
    seed: int,
    max_length: int,
    overwrite: bool,
) -> None:
    """Check, tokenize and encode SOURCE / TARGET once into PREPARED, for `train PREPARED`.

    One streaming pass checks the corpus (the findings of check-data) and samples lines
    for SentencePiece; a second encodes the pairs into flat id files. Memory does
    not grow with the corpus; training reads PREPARED without the text.
    """
    from .data.prepared import PrepareSettings
    from .data.prepared import prepare as prepare_corpus

    settings = PrepareSettings(
        joint_vocab=not separate_vocab,
        vocab_size=vocab_size,
        model_type=sentencepiece_model_type,
        sample_lines=sentencepiece_sample_lines,
        seed=seed,
        max_length=max_length,
    )
    corpus = prepare_corpus(source, target, prepared, settings, overwrite=overwrite)
    click.echo(
        json.dumps(
            {
                "prepared": str(prepared),
                "pairs": len(corpus),
                "tokens": corpus.manifest["tokens"],
                "sha256": corpus.manifest["check"]["sha256"],
            }
        )
    )


@main.command("check-data")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--max-length",
    type=click.IntRange(1),
    default=None,
    help="Drop pairs with more words than this, or more than 10 characters per word of "
    "it, on either side [default: no limit].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def check_data(source: Path, target: Path, max_length: int | None, as_json: bool) -> None:
    """Check a parallel corpus before training: alignment, encoding, odd line breaks.

    Exits with 1 if the corpus cannot be used as it is (different line counts, invalid
    UTF-8); warnings (\\r, NUL, U+0085, U+2028, U+2029, a byte order mark, source and
    target being one file or mostly identical pairs) and dropped or duplicate pairs are
    reported with their line numbers.
    """
    from .data.check import scan_corpus

    report = scan_corpus(source, target, max_length)  # streaming: the text is not kept
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.summary():
            click.echo(line)
    if not report.ok:
        raise click.exceptions.Exit(1)


@main.command()
@click.option(
    "--model-dir", required=True, type=click.Path(path_type=Path), help="A trained model."
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
    model_dir: Path,
    input_path: Path | None,
    output_path: Path | None,
    batch_size: int,
    errors: str,
    alignments_path: Path | None,
    beam_size: int,
    length_penalty: float,
    n_best: int,
    scores: bool,
) -> None:
    """Translate text: exactly one output line per input line, in order (greedy search
    unless --beam-size is over 1)."""
    import_keras_quietly()
    from .data import files
    from .decoding.translator import Translator

    if n_best > 1 and scores:
        raise click.UsageError("--n-best already writes each hypothesis' score; drop --scores")
    try:
        decode_config = DecodeConfig(
            batch_size=batch_size, beam_size=beam_size, length_penalty=length_penalty, n_best=n_best
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    for path in (output_path, alignments_path):
        if path is not None:
            files.check_output_writable(path)
    lines = files.iter_lines(input_path, errors=errors)
    translator = Translator.from_model_dir(model_dir, decode_config)
    if alignments_path is not None and translator.model.attention is None:
        raise click.UsageError(
            f"--alignments: {model_dir} has no attention (trained with "
            f"--attention none); there are no alignments to write"
        )
    # From a pipe, translate whatever has arrived; from a file, in full chunks.
    translations = translator.translate_stream(
        lines,
        batch_size=batch_size,
        eager=input_path is None,
        details=True,
        scores=scores,
        alignments=alignments_path is not None,
    )

    def output_lines(write_alignment):
        for translation in translations:
            if write_alignment is not None:
                write_alignment(json.dumps(translation.alignment, ensure_ascii=False))
            if n_best > 1:
                yield json.dumps({"hypotheses": translation.hypotheses}, ensure_ascii=False)
            elif scores:
                yield f"{translation.text}\t{translation.hypotheses[0]['log_prob']}"
            else:
                yield translation.text

    if alignments_path is None:
        files.write_lines(output_lines(None), output_path)
    else:  # (streamed beside the translations: never all held in memory)
        files.write_lines_during(
            alignments_path,
            lambda write_alignment: files.write_lines(output_lines(write_alignment), output_path),
        )


@main.command()
@click.option(
    "--model-dir", required=True, type=click.Path(path_type=Path), help="A trained model."
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
    model_dir: Path,
    source: Path,
    reference: Path,
    batch_size: int,
    output_path: Path | None,
    as_json: bool,
    beam_size: int,
    length_penalty: float,
) -> None:
    """Score translations of SOURCE against REFERENCE: BLEU, chrF, exact match, perplexity."""
    import_keras_quietly()
    from .decoding.evaluate import evaluate as run_evaluation

    decode_config = DecodeConfig(
        batch_size=batch_size, beam_size=beam_size, length_penalty=length_penalty
    )
    result = run_evaluation(
        model_dir, source, reference, output_path=output_path, decode_config=decode_config
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
    for name, signature in result["signatures"].items():
        click.echo(f"  {name} signature: {signature}")


@main.command()
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
    from .decoding.export import export_saved_model

    click.echo(f"exported to {export_saved_model(model_dir, output)}")


@main.command()
@click.option(
    "--model-dir",
    required=True,
    type=click.Path(path_type=Path),
    help="A model directory with the run's checkpoints.",
)
@click.option(
    "--last",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Average the newest N checkpoints (train with --keep-checkpoints N or more).",
)
@click.option(
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="A new model directory for the averaged model.",
)
def average(model_dir: Path, last: int, output: Path) -> None:
    """Average the weights of a run's newest checkpoints into a new model directory."""
    import_keras_quietly()
    from .training.average import average_checkpoints

    result = average_checkpoints(model_dir, last, output)
    steps = ", ".join(map(str, result["steps"]))
    click.echo(f"averaged the checkpoints at steps {steps} into {result['output']}")


@main.command()
@click.option(
    "--model-dir", required=True, type=click.Path(path_type=Path), help="A trained model."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(model_dir: Path, as_json: bool) -> None:
    """Show a model's config and its parameters by component, shared weights counted once."""
    import_keras_quietly()
    from .model_dir import parameter_report

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


main.add_command(serve)  # serve/command.py: FastAPI and uvicorn imported only when it runs

if __name__ == "__main__":
    main()
