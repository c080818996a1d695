"""Commands that make models: train, prepare, check-data, average."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import Config, ModelConfig, TrainingConfig, load_config_file
from ..console import import_keras_quietly
from .options import TRAINING_OPTIONS, apply_options


@click.command()
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
@apply_options(TRAINING_OPTIONS)
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
    _check_data_paths(data)
    cluster = _cluster(devices, coordinator, num_processes, process_id)
    import_keras_quietly()
    from ..training.train import train as run_training

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


def _check_data_paths(data: tuple[Path, ...]) -> None:
    if len(data) > 2:
        raise click.UsageError(
            f"expected SOURCE TARGET (two files) or one PREPARED directory, got {len(data)} paths"
        )
    if len(data) == 1 and not data[0].is_dir():
        raise click.UsageError(
            f"{data[0]}: a single path must be a directory written by "
            f"`seq2seq-shared prepare`; or pass SOURCE TARGET files"
        )


def _cluster(devices: str, coordinator: str | None, processes: int, process: int):
    """The devices and processes a run asked for (`training.parallel.Cluster`)."""
    from ..training.parallel import Cluster

    try:
        return Cluster(
            devices=devices, coordinator=coordinator, processes=processes, process=process
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None


@click.command()
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
    from ..data.prepare import prepare as prepare_corpus
    from ..data.prepared import PrepareSettings

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


@click.command("check-data")
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
    from ..data.check import scan_corpus

    report = scan_corpus(source, target, max_length)  # streaming: the text is not kept
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.summary():
            click.echo(line)
    if not report.ok:
        raise click.exceptions.Exit(1)


@click.command()
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
    from ..training.average import average_checkpoints

    result = average_checkpoints(model_dir, last, output)
    steps = ", ".join(map(str, result["steps"]))
    click.echo(f"averaged the checkpoints at steps {steps} into {result['output']}")
