#!/usr/bin/env python3
"""Write a Joey NMT 2.3.0 config for the peer benchmark (issue 29): our recipe in Joey's terms.

    python scripts/peers/joey_config.py --model-dir MODEL_DIR --data MULTI30K_DIR \\
        --out runs/joey-matched.yaml [--variant matched|joey-best]

MODEL_DIR is one of our model directories: its joint SentencePiece model gives Joey the same
pieces (a Joey vocabulary file, written beside the config, lists them in our id order).
MULTI30K_DIR holds train, val and test2016 .de/.en. Settings come from data/multi30k.toml
(--recipe). Variants:

- `matched`: our recipe as closely as Joey allows (the deviations are listed in the
  config's header and in DEVIATIONS below);
- `joey-best`: Joey's own best published RNN for German -> English (configs/
  iwslt14_deen_bpe.yaml of Joey 1.x, the "RNN" row of its IWSLT14 benchmark: 30.74 test
  BLEU, 61M parameters on 32k BPE), on our data and pieces.

Runs with the product's environment (it reads our settings and SentencePiece model); Joey
itself runs in its own environment (scripts/peers/setup_joey.sh, run_joey.py).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from seq2seq_shared.config import Config, load_config_file  # noqa: E402  (no Keras: cheap)
from seq2seq_shared.data.tokenizer import (  # noqa: E402
    BOS_ID,
    EOS_ID,
    JOINT_SPM,
    PAD_ID,
    UNK_ID,
)

VARIANTS = ("matched", "joey-best")
JOEY_VERSION = "2.3.0"
SOURCE_LANGUAGE, TARGET_LANGUAGE = "de", "en"
SPLITS = {"train": "train", "dev": "val", "test": "test2016"}  # Joey's name: our file stem
# Joey's Vocabulary always puts <unk> first and <pad> second (it asserts both): our pad=0,
# unk=1 swap places there; every other piece keeps our id.
JOEY_SPECIALS = {"<unk>": 0, "<pad>": 1, "<s>": 2, "</s>": 3}
OUR_SPECIALS = {"<pad>": PAD_ID, "<unk>": UNK_ID, "<s>": BOS_ID, "</s>": EOS_ID}

DEVIATIONS = {
    "matched": [
        "separate encoder and decoder LSTMs (Joey cannot share one LSTM or add a role bias)",
        "attention 'luong' is Luong's general score h.W_a.m (+hidden^2 weights): Joey has no dot",
        "input_feeding feeds the previous attentional vector (Luong); ours feeds the encoder's"
        " final h (feed_context): the same input width, embedding + hidden",
        "output layer untied: tied_softmax needs embedding_dim == hidden_size (256 != 512) and"
        " Joey has no bridge; source and target embeddings are tied",
        "source read forwards: Joey has no reverse_source",
        "the plateau watches validation BLEU (Joey's early_stopping_metric); ours watches loss",
        "no warm-up (Joey's plateau schedule has none; ours warms up over 100 steps)",
        "no patience stop: Joey stops at learning_rate_min (ours clamps there); the wall clock"
        " (run_joey.py) ends both",
        "token batches count (longest side + 1) x sentences of randomly drawn pairs; ours count"
        " target tokens of length-sorted pairs (less padding)",
        "ids 0 and 1 swapped (Joey needs <unk>=0, <pad>=1); all other piece ids are ours",
        "validation every validation_freq steps (about one epoch); ours after every epoch",
        "decoding stops at 1.5 x the batch's longest source; ours at 2 x source + 10",
    ],
    "joey-best": [
        "our data and pieces (joint SentencePiece, cased) instead of Joey's lowercased 32k BPE",
        "validation every validation_freq steps (about one epoch) instead of every 2000",
        "the plateau's patience of 8 counts those validations",
    ],
}


def joey_vocabulary(sentencepiece_model: Path) -> list[str]:
    """Our SentencePiece pieces in Joey's id order: line i holds the piece with id i, except
    that <unk> and <pad> trade ids 0 and 1 (JOEY_SPECIALS)."""
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(sentencepiece_model))
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    for piece, piece_id in OUR_SPECIALS.items():
        if piece_id >= len(pieces) or pieces[piece_id] != piece:
            raise ValueError(
                f"{sentencepiece_model}: expected piece {piece!r} at id {piece_id} (our ids: "
                f"pad=0, unk=1, bos=2, eos=3); train it with `seq2seq-shared train`"
            )
    for piece, piece_id in JOEY_SPECIALS.items():
        pieces[piece_id] = piece
    return pieces


def recipe_sections(settings: Config) -> dict[str, Any]:
    """The `matched` variant's model, training and testing sections (the schedule of
    logging and validation is added by `joey_config`)."""
    model, training = settings.model, settings.training
    embeddings = {"embedding_dim": model.embedding_dim, "scale": False, "dropout": model.dropout}
    rnn = {
        "type": "recurrent",
        "rnn_type": "lstm",
        "embeddings": embeddings,
        "hidden_size": model.hidden_size,
        "num_layers": model.num_layers,
        "dropout": model.dropout,  # between layers only: none with one layer
    }
    decoder = {
        **rnn,
        "hidden_dropout": model.dropout,  # on the input of the attentional layer
        "input_feeding": True,
        "init_hidden": "last",  # the encoder's final state, as ours
        "attention": "luong",
    }
    return {
        "model": {
            # Keras's defaults, which our model keeps: Glorot kernels, orthogonal recurrent
            # kernels, forget-gate bias 1, embeddings uniform in +-0.05, zero biases.
            "initializer": "xavier_uniform",
            "init_gain": 1.0,
            "bias_initializer": "zeros",
            "embed_initializer": "uniform",
            "embed_init_weight": 0.05,
            "init_rnn_orthogonal": True,
            "lstm_forget_gate": 1.0,
            "tied_embeddings": model.share_embeddings,
            "tied_softmax": False,
            "encoder": {**rnn, "bidirectional": False},
            "decoder": decoder,
        },
        "training": _recipe_training(training),
        "testing": _testing(beam_alpha=-1.0, max_output_length=-1),  # -1: no length penalty
    }


def _recipe_training(training: Any) -> dict[str, Any]:
    return {
        "optimizer": "adam",
        "adam_betas": [0.9, 0.999],
        "learning_rate": training.learning_rate,
        "learning_rate_min": training.min_learning_rate,
        "scheduling": "plateau",
        "patience": training.lr_patience,
        "decrease_factor": training.lr_decay,
        "clip_grad_norm": training.clip_norm or None,
        "label_smoothing": training.label_smoothing,
        "normalization": "tokens",
        "loss": "crossentropy",
        "batch_size": training.batch_tokens,
        "batch_type": "token",
        "early_stopping_metric": training.best_metric,
    }


def joey_best_sections() -> dict[str, Any]:
    """The `joey-best` variant: Joey's published IWSLT14 de-en RNN (configs/
    iwslt14_deen_bpe.yaml of Joey 1.x, with Joey 1.x's defaults written out)."""
    embeddings = {"embedding_dim": 620, "scale": False}
    gru = {"type": "recurrent", "rnn_type": "gru", "embeddings": embeddings, "num_layers": 1}
    return {
        "model": {
            "initializer": "xavier_uniform",  # Joey 1.x defaults
            "init_gain": 1.0,
            "bias_initializer": "zeros",
            "embed_initializer": "normal",
            "embed_init_weight": 0.01,
            "tied_embeddings": False,
            "tied_softmax": False,
            "encoder": {**gru, "hidden_size": 500, "bidirectional": True, "dropout": 0.0},
            "decoder": {
                **gru,
                "hidden_size": 1000,
                "dropout": 0.0,
                "hidden_dropout": 0.2,
                "input_feeding": True,
                "init_hidden": "bridge",
                "attention": "bahdanau",
            },
        },
        "training": {
            "optimizer": "adam",
            "adam_betas": [0.9, 0.999],
            "learning_rate": 0.0002,
            "learning_rate_min": 1.0e-8,  # Joey 1.x's default (2.3's, 1e-4, would stop it)
            "scheduling": "plateau",
            "patience": 8,
            "decrease_factor": 0.7,
            "weight_decay": 0.0,
            "label_smoothing": 0.0,
            "normalization": "tokens",
            "loss": "crossentropy",
            "batch_size": 80,
            "batch_type": "sentence",
            "early_stopping_metric": "loss",
        },
        "testing": _testing(beam_alpha=1.0, max_output_length=80),
    }


def _schedule(validation_freq: int) -> dict[str, Any]:
    """How often Joey logs and validates (it wants the first to divide the second)."""
    return {
        "epochs": 100,  # the wall clock (run_joey.py) ends the run first
        "validation_freq": validation_freq,
        "logging_freq": math.gcd(validation_freq, 50),
        "shuffle": True,
        "keep_best_ckpts": 1,  # best.ckpt is what the test is decoded with
        "print_valid_sents": [0, 1, 2],
        "overwrite": False,
    }


def _testing(beam_alpha: float, max_output_length: int) -> dict[str, Any]:
    return {
        "n_best": 1,
        "beam_size": 5,  # run_joey.py decodes the test set with 1 and with 5
        "beam_alpha": beam_alpha,
        "batch_size": 64,
        "batch_type": "sentence",
        "max_output_length": max_output_length,
        "eval_metrics": ["bleu"],
        "sacrebleu_cfg": {"tokenize": "13a", "lowercase": False},
    }


def data_section(
    sentencepiece_model: Path, vocabulary_file: Path, data_dir: Path, settings: Config
) -> dict[str, Any]:
    """Joey's data section: plain text files, our SentencePiece model and pieces, our
    length limits (training pairs with a longer side are dropped, as ours are)."""
    data: dict[str, Any] = {name: str((data_dir / stem).resolve()) for name, stem in SPLITS.items()}
    limits = {
        SOURCE_LANGUAGE: settings.model.max_source_length,
        TARGET_LANGUAGE: settings.training.max_target_length,
    }
    for side, language in (("src", SOURCE_LANGUAGE), ("trg", TARGET_LANGUAGE)):
        data[side] = {
            "lang": language,
            "level": "bpe",
            "lowercase": False,
            "normalize": False,
            "max_length": limits[language],
            "voc_file": str(vocabulary_file.resolve()),
            "tokenizer_type": "sentencepiece",
            "tokenizer_cfg": {
                "model_file": str(sentencepiece_model.resolve()),
                "pretokenizer": "none",
                "alpha": 0.0,  # no subword sampling: the pieces we train on
            },
        }
    special_symbols: dict[str, Any] = {}
    for piece, piece_id in JOEY_SPECIALS.items():
        role = {"<unk>": "unk", "<pad>": "pad", "<s>": "bos", "</s>": "eos"}[piece]
        special_symbols |= {f"{role}_token": piece, f"{role}_id": piece_id}
    return {"dataset_type": "plain", **data, "special_symbols": special_symbols}


def read_pairs(data_dir: Path, stem: str) -> tuple[list[str], list[str]]:
    """One split's lines, checked: Joey drops empty lines one side at a time (misaligning
    the pairs) and assumes both sides have as many lines."""
    sides = []
    for language in (SOURCE_LANGUAGE, TARGET_LANGUAGE):
        path = data_dir / f"{stem}.{language}"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the data directory must hold {stem}.de/en")
        lines = path.read_text(encoding="utf-8").splitlines()
        empty = [number for number, line in enumerate(lines, 1) if not line.strip()]
        if empty:
            raise ValueError(f"{path}: line {empty[0]} is empty; Joey would misalign the pairs")
        sides.append(lines)
    if len(sides[0]) != len(sides[1]):
        raise ValueError(f"{data_dir}/{stem}.de and .en differ in length")
    return sides[0], sides[1]


def steps_per_epoch(
    sentencepiece_model: Path, data_dir: Path, sections: dict[str, Any], seed: int = 1234
) -> int:
    """About how many batches Joey draws from the training set in one epoch, counted as its
    samplers count (a token batch closes once (longest side + 1) x sentences reaches the
    batch size; the order is random, so this is one draw)."""
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(sentencepiece_model))
    sources, targets = read_pairs(data_dir, SPLITS["train"])
    limits = (sections["data"]["src"]["max_length"], sections["data"]["trg"]["max_length"])
    lengths = [
        (len(source), len(target))
        for source, target in zip(processor.encode(sources), processor.encode(targets))
        if len(source) <= limits[0] and len(target) <= limits[1]
    ]
    batch_size = sections["training"]["batch_size"]
    if sections["training"]["batch_type"] == "sentence":
        return max(1, math.ceil(len(lengths) / batch_size))
    random.Random(seed).shuffle(lengths)
    batches, sentences, longest = 0, 0, 0
    for source_length, target_length in lengths:
        sentences, longest = sentences + 1, max(longest, source_length + 1, target_length + 1)
        if longest * sentences >= batch_size:
            batches, sentences, longest = batches + 1, 0, 0
    return max(1, batches + (sentences > 0))


def joey_config(
    variant: str,
    sentencepiece_model: Path,
    vocabulary_file: Path,
    data_dir: Path,
    joey_model_dir: Path,
    settings: Config,
    validation_freq: int = 0,
    use_cuda: bool = False,
) -> dict[str, Any]:
    """The whole Joey config of `variant`. `validation_freq` 0: about once per epoch."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    sections = {"data": data_section(sentencepiece_model, vocabulary_file, data_dir, settings)}
    sections |= recipe_sections(settings) if variant == "matched" else joey_best_sections()
    if validation_freq <= 0:
        validation_freq = steps_per_epoch(sentencepiece_model, data_dir, sections)
        if validation_freq >= 100:
            validation_freq = round(validation_freq / 50) * 50  # a round number of steps
    sections["training"] |= _schedule(validation_freq)
    return {
        "name": f"multi30k_deen_joey_{variant}",
        "joeynmt_version": JOEY_VERSION,
        "model_dir": str(joey_model_dir.resolve()),
        "use_cuda": use_cuda,
        "fp16": False,
        "random_seed": settings.training.seed,
        **sections,
    }


def to_yaml(mapping: dict[str, Any], indent: int = 0) -> list[str]:
    """Block-style YAML lines for nested dicts of scalars and lists of scalars: enough for a
    Joey config, without PyYAML in the product's environment."""
    lines = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            lines += [f"{' ' * indent}{key}:", *to_yaml(value, indent + 4)]
        else:
            lines.append(f"{' ' * indent}{key}: {_yaml_scalar(value)}")
    return lines


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_scalar(item) for item in value) + "]"
    if isinstance(value, float):
        # PyYAML (YAML 1.1) reads 1e-05 as a string: a float needs a dot and a signed exponent.
        mantissa, _, exponent = repr(value).partition("e")
        if "." not in mantissa and mantissa not in ("inf", "-inf", "nan"):
            mantissa += ".0"
        if exponent and exponent[0] not in "+-":
            exponent = "+" + exponent
        return mantissa + (f"e{exponent}" if exponent else "")
    return json.dumps(value)  # strings double-quoted, true / false / null, integers


def write_config(
    variant: str,
    model_dir: Path,
    data_dir: Path,
    out: Path,
    settings: Config,
    joey_model_dir: Path | None = None,
    validation_freq: int = 0,
    use_cuda: bool = False,
) -> dict[str, Any]:
    """Write OUT (the YAML) and OUT's vocabulary file beside it; return the config."""
    sentencepiece_model = model_dir / JOINT_SPM
    if not sentencepiece_model.is_file():
        raise FileNotFoundError(
            f"{sentencepiece_model} not found: Joey needs our joint SentencePiece model "
            f"(a model directory trained with a joint vocabulary)"
        )
    for stem in SPLITS.values():
        read_pairs(data_dir, stem)
    vocabulary_file = out.with_name(f"{out.stem}.vocab.txt")
    pieces = joey_vocabulary(sentencepiece_model)
    config = joey_config(
        variant,
        sentencepiece_model,
        vocabulary_file,
        data_dir,
        joey_model_dir or out.with_suffix(""),
        settings,
        validation_freq,
        use_cuda,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    vocabulary_file.write_text("".join(piece + "\n" for piece in pieces), encoding="utf-8")
    header = [f"# Joey NMT {JOEY_VERSION}, variant {variant!r}: written by {Path(__file__).name}"]
    header += ["# Where it differs from our recipe:"] if variant == "matched" else []
    header += [f"#   - {deviation}" for deviation in DEVIATIONS[variant]]
    out.write_text("\n".join([*header, *to_yaml(config)]) + "\n", encoding="utf-8")
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="our model directory")
    parser.add_argument("--data", type=Path, required=True, help="train/val/test2016 .de/.en")
    parser.add_argument("--out", type=Path, required=True, help="the YAML config to write")
    parser.add_argument("--variant", choices=VARIANTS, default="matched")
    parser.add_argument("--recipe", type=Path, default=ROOT / "data" / "multi30k.toml")
    parser.add_argument("--joey-model-dir", type=Path, help="default: OUT without .yaml")
    parser.add_argument("--validation-freq", type=int, default=0, help="0: about an epoch")
    parser.add_argument("--use-cuda", action="store_true")
    args = parser.parse_args()
    try:
        config = write_config(
            args.variant,
            args.model_dir,
            args.data,
            args.out,
            load_config_file(args.recipe),
            args.joey_model_dir,
            args.validation_freq,
            args.use_cuda,
        )
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    frequency = config["training"]["validation_freq"]
    print(f"wrote {args.out} ({args.variant}; validation every {frequency} steps)")


if __name__ == "__main__":
    main()
