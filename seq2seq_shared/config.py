"""Settings as frozen dataclasses: defaults < config file < command-line options.

Nothing here imports Keras, so the CLI can parse and validate settings instantly.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Keras dtype policies a run may train under: float32, or float16 / bfloat16 computation on
# float32 variables (loss scaling comes with float16).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
RELEASE_PRECISIONS = ("float32", "float16", "int8")  # a release's arrays (`release`)
RELEASE_RUNTIMES = ("numpy", "onnx")  # what runs a release: runtime/network.py, onnx_network.py
# `shortlist`'s defaults: the most frequent target pieces, and candidates per source piece.
SHORTLIST_FREQUENT, SHORTLIST_PER_SOURCE = 100, 50


@dataclass(frozen=True)
class ModelConfig:
    """The network's shape. Saved in the model directory; the model is rebuilt from it."""

    vocab_size: int = 8000  # SentencePiece pieces (per language with separate vocabularies)
    joint_vocab: bool = True  # one SentencePiece model for source and target
    embedding_dim: int = 256
    hidden_size: int = 512
    num_layers: int = 1  # each layer is ONE LSTM shared by encoder and decoder
    share_lstm: bool = True  # False builds separate encoder/decoder LSTMs (ablation)
    share_embeddings: bool = True  # one table for source and target (needs joint_vocab)
    tie_output: bool = True  # output projection reuses the target embedding table
    dropout: float = 0.3  # on embeddings and LSTM outputs, never inside the recurrence
    reverse_source: bool = True  # feed the source backwards (Sutskever et al., 2014)
    # The shared LSTM also reads the source the other way, with the same weights, and
    # attention reads the average of both reads (needs attention; no new parameters).
    bidirectional: bool = False
    feed_context: bool = True  # the decoder reads the encoder's final state every step
    attention: str = "dot"  # Luong attention over the source: "dot", "general" or "none"
    role_signal: str = "bias"  # the LSTM knows reading from writing: "bias", "embedding", "none"
    max_source_length: int = 128  # pieces; longer training pairs are dropped, inputs truncated

    def __post_init__(self) -> None:
        _require(self.vocab_size >= 8, "vocab_size must be at least 8 (4 special pieces + text)")
        for name in ("embedding_dim", "hidden_size", "num_layers", "max_source_length"):
            _require(getattr(self, name) >= 1, f"{name} must be a positive integer")
        _require(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        _require(
            self.attention in ("none", "dot", "general"),
            "attention must be 'none', 'dot' or 'general'",
        )
        _require(
            self.role_signal in ("none", "bias", "embedding"),
            "role_signal must be 'none', 'bias' or 'embedding'",
        )
        _require(
            not self.bidirectional or self.attention != "none",
            "bidirectional needs attention (only attention reads the second read): "
            "drop --bidirectional or set --attention",
        )
        _require(
            not self.share_embeddings or self.joint_vocab,
            "share_embeddings needs a joint vocabulary: drop --separate-vocab "
            "or pass --no-share-embeddings",
        )


@dataclass(frozen=True)
class TrainingConfig:
    """How to train. Saved beside the model config so a run can be reproduced."""

    epochs: int = 10
    batch_tokens: int = 3072  # target tokens per batch (padding included)
    learning_rate: float = 2e-3
    clip_norm: float = 1.0  # gradient clipping by global norm; 0 turns it off
    label_smoothing: float = 0.1
    seed: int = 1234
    max_target_length: int = 128  # pieces; longer training pairs are dropped
    sentencepiece_model_type: str = "unigram"
    # Lines SentencePiece trains on, sampled from the corpus: its trainer holds about
    # 1.6 KB per line, so 300,000 keep `prepare` under 1 GiB (1,000,000 took 1.9 GiB).
    sentencepiece_sample_lines: int = 300_000
    warmup_steps: int = 100  # linear learning-rate warm-up from 0
    # Subword regularization (Kudo 2018): each training batch's pieces are sampled anew
    # from SentencePiece's segmentations, with this smoothing (unigram: the lattice's
    # sharpness, 0.1-0.5; bpe: BPE-dropout's rate); 0 keeps the one best segmentation.
    # Validation and translation always read the best segmentation.
    subword_alpha: float = 0.0
    # unigram: sample among the best N segmentations (-1: all of them, which with a
    # small alpha about doubles a sentence's pieces on Multi30k; 64: +11% at alpha 0.1).
    subword_nbest: int = 64
    # Validation (with --valid): every `validate_every` steps, or every epoch when 0.
    validate_every: int = 0
    best_metric: str = "bleu"  # "bleu" (greedy, on the validation set) or "loss"
    plateau_metric: str = "loss"  # what the rate's plateau watches: "loss" (smooth) or "bleu"
    lr_patience: int = (
        2  # validations without improvement (of plateau_metric) before the rate drops
    )
    lr_decay: float = 0.5  # ... by this factor
    min_learning_rate: float = 1e-5  # the rate never drops below this
    # In the last this much of the run's budget (the nearer of --max-minutes and --epochs),
    # every validation decays the rate by lr_decay, plateau or not; 0: off.
    anneal_fraction: float = 0.0
    patience: int = 6  # validations without improvement before stopping (0: never)
    max_minutes: float = 0.0  # stop after this much training time, resumes included (0: no limit)
    # Checkpoints (full training state, for resuming) every N steps and at every validation.
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    deterministic: bool = True  # deterministic kernels (TensorFlow), for bitwise resume
    tensorboard: bool = True  # TensorBoard logs in the model directory (TensorFlow backend)
    # Steps between reads of the loss from the device (progress bar, divergence check);
    # 0: every step on a CPU, where it costs nothing, every 50 on a GPU, which would wait.
    log_every: int = 0
    # Batches per optimizer step: N > 1 steps once over N batches, as on one batch N times
    # larger (a large effective batch on a small GPU); steps and warm-up count updates.
    accumulate_steps: int = 1
    precision: str = "float32"  # training computation: PRECISIONS; weights stay float32
    # An exponential moving average of the weights (training/ema.py): validation and the
    # saved model read it; 0 (the default) keeps the raw weights. The decay after update n
    # is min(ema_decay, (1 + n) / (10 + n)): about the last tenth of a short run, at most
    # about the last 500 updates with 0.998.
    ema_decay: float = 0.0

    # The settings a resumed run may change: when to stop, how often to checkpoint and to
    # read the loss, the step size (to recover from divergence) and the precision (the
    # weights are float32 in every one). Changing the latter two ends exactness. The
    # SentencePiece sample is read only when a run begins (earlier runs used 1,000,000).
    RESUMABLE = (
        "epochs",
        "patience",
        "max_minutes",
        "checkpoint_every",
        "keep_checkpoints",
        "tensorboard",
        "learning_rate",
        "clip_norm",
        "warmup_steps",
        "log_every",
        "precision",
        "sentencepiece_sample_lines",
    )

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "epochs must be at least 1")
        _require(self.batch_tokens >= 16, "batch_tokens must be at least 16")
        _require(self.learning_rate > 0, "learning_rate must be positive")
        _require(self.clip_norm >= 0, "clip_norm must be >= 0 (0 turns clipping off)")
        _require(0.0 <= self.label_smoothing < 1.0, "label_smoothing must be in [0, 1)")
        _require(0.0 <= self.anneal_fraction < 1.0, "anneal_fraction must be in [0, 1) (0: off)")
        _require(0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1) (0: off)")
        _require(0.0 <= self.subword_alpha < 1.0, "subword_alpha must be in [0, 1) (0: off)")
        _require(
            self.subword_nbest == -1 or self.subword_nbest >= 2,
            "subword_nbest must be -1 (all segmentations) or at least 2",
        )
        _require(self.max_target_length >= 1, "max_target_length must be positive")
        _require(
            self.sentencepiece_model_type in ("unigram", "bpe"),
            "sentencepiece_model_type must be 'unigram' or 'bpe'",
        )
        for name in (
            "warmup_steps",
            "validate_every",
            "lr_patience",
            "patience",
            "checkpoint_every",
            "log_every",
        ):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0")
        for name in ("best_metric", "plateau_metric"):
            _require(getattr(self, name) in ("bleu", "loss"), f"{name} must be 'bleu' or 'loss'")
        _require(0.0 < self.lr_decay <= 1.0, "lr_decay must be in (0, 1]")
        _require(self.min_learning_rate >= 0, "min_learning_rate must be >= 0")
        _require(self.max_minutes >= 0, "max_minutes must be >= 0 (0: no limit)")
        _require(self.keep_checkpoints >= 1, "keep_checkpoints must be at least 1")
        _require(self.accumulate_steps >= 1, "accumulate_steps must be at least 1")
        # Keras's loss scaling skips an update whose gradients overflow without counting
        # the call, which would shift every later group of accumulated batches.
        _require(
            self.accumulate_steps == 1 or self.precision != "mixed_float16",
            "accumulate_steps above 1 needs --precision float32 or mixed_bfloat16 "
            "(mixed_float16 skips overflowing updates, which breaks the groups)",
        )
        _require(
            self.precision in PRECISIONS,
            f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}",
        )


@dataclass(frozen=True)
class DecodeConfig:
    """How to decode: the search, and its limits (a sentence stops at eos or at
    length_ratio * source + length_offset pieces)."""

    batch_size: int = 64  # sentences decoded together (each with its beam)
    length_ratio: float = 2.0
    length_offset: int = 10
    beam_size: int = 1  # 1: greedy search, the fastest path
    length_penalty: float = 0.0  # GNMT's alpha: score = log-prob / ((5 + len) / 6) ** alpha
    n_best: int = 1  # hypotheses returned per sentence (<= beam_size)
    shortlist: bool = False  # choose from the model's shortlist.npz (runtime/shortlist.py)

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "batch_size must be at least 1")
        _require(
            self.length_ratio > 0 and self.length_offset >= 0,
            "length_ratio must be positive and length_offset >= 0",
        )
        _require(self.beam_size >= 1, "beam_size must be at least 1")
        _require(self.length_penalty >= 0, "length_penalty must be >= 0 (0: none)")
        _require(
            self.beam_size > 1 or self.length_penalty == 0,
            "length_penalty ranks a beam's hypotheses: it needs --beam-size 2 or more",
        )
        _require(
            1 <= self.n_best <= self.beam_size,
            f"n_best ({self.n_best}) must be between 1 and the beam size "
            f"({self.beam_size}); pass --beam-size {self.n_best} or more",
        )


@dataclass(frozen=True)
class ServeLimits:
    """What `serve` accepts and how it batches (each field is a `serve` option)."""

    max_lines: int = 256  # lines per request
    max_chars: int = 50_000  # characters per request, all lines together
    max_batch_lines: int = 64  # lines decoded together, across requests
    max_wait_ms: float = 5.0  # how long a batch waits for more lines
    request_timeout: float = 60.0  # seconds a request may wait for its translations
    max_pending_lines: int = 4096  # lines waiting or decoding; more: 503 at once
    max_beam_size: int = 16  # the largest beam_size a request may ask for
    body_timeout: float = 10.0  # seconds a client may take to send its request's body

    @property
    def max_body_bytes(self) -> int:
        """Room for max_chars characters JSON-escaped (up to 12 bytes: a surrogate pair
        of \\uXXXX) and the framing."""
        return 12 * self.max_chars + 8 * self.max_lines + 4096


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> Config:
        unknown = set(data) - {"model", "training"}
        if unknown:
            raise ValueError(
                f"{source}: unknown section(s) {sorted(unknown)}; expected 'model' and 'training'"
            )
        return cls(
            model=_build(ModelConfig, data.get("model", {}), f"{source} [model]"),
            training=_build(TrainingConfig, data.get("training", {}), f"{source} [training]"),
        )

    def resume_differences(self, requested: Config) -> list[str]:
        """What `requested` changes in this (saved) run's settings beyond what a resume may
        change (`TrainingConfig.RESUMABLE`), one readable item per setting."""
        before, now = self.to_dict(), requested.to_dict()
        found = []
        for section, values in before.items():
            for name, value in values.items():
                if section == "training" and name in TrainingConfig.RESUMABLE:
                    continue
                if now[section][name] != value:
                    found.append(f"{name} is {value!r} there, {now[section][name]!r} now")
        return found

    def updated(self, overrides: dict[str, Any]) -> Config:
        """Apply flat `name=value` overrides (command-line options) to whichever section has the name."""
        model, training = {}, {}
        for name, value in overrides.items():
            if name in _field_names(ModelConfig):
                model[name] = value
            elif name in _field_names(TrainingConfig):
                training[name] = value
            else:
                raise ValueError(f"unknown setting {name!r}")
        return Config(
            model=dataclasses.replace(self.model, **model),
            training=dataclasses.replace(self.training, **training),
        )


def load_config_file(path: Path) -> Config:
    """Read a JSON or TOML file with optional `model` and `training` sections."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: config file not found") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(
            f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {error}"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object with 'model' and 'training' sections")
    return Config.from_dict(data, source=str(path))


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _build(cls: type, values: dict[str, Any], source: str) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"{source}: expected a table of settings, got {values!r}")
    unknown = set(values) - _field_names(cls)
    if unknown:
        raise ValueError(
            f"{source}: unknown setting(s) {sorted(unknown)}; known: {sorted(_field_names(cls))}"
        )
    for field_ in dataclasses.fields(cls):
        if field_.name in values and not _has_type_of(values[field_.name], field_.default):
            raise ValueError(
                f"{source}: {field_.name} = {values[field_.name]!r} should be "
                f"{type(field_.default).__name__} like its default "
                f"{field_.default!r}"
            )
    try:
        return cls(**values)
    except ValueError as error:  # a value out of range: say where it was read
        raise ValueError(f"{source}: {error}") from None


def _has_type_of(value: Any, default: Any) -> bool:
    """A file's value fits a setting whose default is `default`: a flag takes only
    true/false, a count only an integer, a rate an integer or a decimal."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
