"""Options shared by several commands: model and training settings, the search."""

from __future__ import annotations

import dataclasses

import click

from ..config import PRECISIONS, ModelConfig, TrainingConfig


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
    """--beam-size, --length-penalty and --shortlist, for every command that decodes."""
    command = click.option(
        "--shortlist",
        is_flag=True,
        help="Choose each output piece from the release's vocabulary shortlist (built by "
        "`seq2seq-shared shortlist`): faster, a little less exact.",
    )(command)
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
    _switch(
        "bidirectional",
        "The shared LSTM reads the source both ways (same weights); attention reads both.",
    ),
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
    _setting(
        "ema_decay",
        click.FloatRange(0, 1, max_open=True),
        "Validate and save an exponential moving average of the weights with at most "
        "this decay per update (0: off; warmed up, so a short run averages about its "
        "last tenth; 0.998 caps that at about the last 500 updates).",
        TrainingConfig,
    ),
    _setting(
        "subword_alpha",
        click.FloatRange(0, 1, max_open=True),
        "Subword regularization: sample each training batch's pieces with this "
        "smoothing (0: off; unigram 0.1-0.5, bpe: the dropout rate).",
        TrainingConfig,
    ),
    _setting(
        "subword_nbest",
        click.IntRange(-1),
        "Subword regularization, unigram: sample among the best N segmentations (-1: all).",
        TrainingConfig,
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
        "anneal_fraction",
        click.FloatRange(0, 1, max_open=True),
        "In the last this fraction of the run's budget (--max-minutes or --epochs, the "
        "nearer), decay the learning rate at every validation (0: off).",
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


def apply_options(options):
    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function

    return decorate
