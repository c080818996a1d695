"""SentencePiece: train on the parallel text, then strings <-> ids.

Ids are fixed for every model: pad=0, unk=1, bos=2, eos=3. A joint vocabulary (one model
for both languages) is the default; separate vocabularies give one model per language.
"""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece

from .files import sha256

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

logger = logging.getLogger(__name__)


def train_sentencepiece(
    lines: Sequence[str],
    vocab_size: int,
    model_type: str = "unigram",
    sample_lines: int = 300_000,
    seed: int = 1234,
) -> bytes:
    """Train a SentencePiece model in memory and return its serialized bytes.

    `vocab_size` is an upper bound: on small corpora SentencePiece stops at the largest
    vocabulary the text supports instead of failing.
    """
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise ValueError("cannot train SentencePiece: the training text has no non-empty lines")
    if len(lines) > sample_lines:
        lines = random.Random(seed).sample(lines, sample_lines)
    sentencepiece.set_random_generator_seed(seed)
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=1.0,
        hard_vocab_limit=False,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        pad_piece="<pad>",
        unk_piece="<unk>",
        bos_piece="<s>",
        eos_piece="</s>",
        num_threads=2,
        minloglevel=2,
    )
    return model.getvalue()


def train_tokenizer(
    sources: Sequence[str],
    targets: Sequence[str],
    joint: bool,
    vocab_size: int,
    model_type: str = "unigram",
    sample_lines: int = 300_000,
    seed: int = 1234,
) -> Tokenizer:
    """SentencePiece on the training text: one model for both sides (joint) or one each."""

    def train(lines: Sequence[str]) -> bytes:
        return train_sentencepiece(
            lines,
            vocab_size=vocab_size,
            model_type=model_type,
            sample_lines=sample_lines,
            seed=seed,
        )

    if joint:
        tokenizer = Tokenizer(train([*sources, *targets]))
    else:
        tokenizer = Tokenizer(train(sources), train(targets))
    logger.info(
        "SentencePiece: %d source / %d target pieces (%s vocabulary)",
        tokenizer.source_vocab_size,
        tokenizer.target_vocab_size,
        "joint" if joint else "separate",
    )
    return tokenizer


# The SentencePiece files' names, in a model directory and in a prepared corpus alike.
JOINT_SPM, SOURCE_SPM, TARGET_SPM = "sentencepiece.model", "source.model", "target.model"


class Tokenizer:
    """Source and target SentencePiece processors (the same one for a joint vocabulary)."""

    def __init__(self, source_model: bytes, target_model: bytes | None = None):
        self.source = sentencepiece.SentencePieceProcessor(model_proto=source_model)
        self.target = (
            self.source
            if target_model is None
            else sentencepiece.SentencePieceProcessor(model_proto=target_model)
        )
        for processor in {id(self.source): self.source, id(self.target): self.target}.values():
            ids = (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id())
            if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
                raise ValueError(
                    f"SentencePiece model has special ids {ids}; seq2seq-shared "
                    f"needs pad=0, unk=1, bos=2, eos=3"
                )

    @classmethod
    def from_files(cls, directory: Path, expected: dict[str, str], record: Path, remedy: str):
        """The tokenizer saved in `directory`: `expected` is {file name: sha256} as `record`
        (a file) has it; a missing or different file is refused, `remedy` saying what to do."""
        models = {}
        for name, digest in expected.items():
            path = directory / name
            if not path.exists():
                raise FileNotFoundError(f"{path}: missing SentencePiece model; {remedy}")
            models[name] = path.read_bytes()
            if sha256(models[name]) != digest:
                raise ValueError(
                    f"{path}: does not match the model it was trained with (sha256 "
                    f"differs from {record}); {remedy}"
                )
        try:
            if JOINT_SPM in models:
                return cls(models[JOINT_SPM])
            return cls(models[SOURCE_SPM], models[TARGET_SPM])
        except RuntimeError as error:  # (SentencePiece's own, for bytes it cannot parse)
            raise ValueError(
                f"{directory}: its SentencePiece model cannot be read ({error}); {remedy}"
            ) from None

    def files(self) -> dict[str, bytes]:
        """{file name: SentencePiece model bytes}, as a directory stores them."""
        source, target = self.serialized()
        if target is None:
            return {JOINT_SPM: source}
        return {SOURCE_SPM: source, TARGET_SPM: target}

    def serialized(self) -> tuple[bytes, bytes | None]:
        """The SentencePiece model(s) as bytes: (source, target), target None when joint."""
        return (
            self.source.serialized_model_proto(),
            None if self.joint else self.target.serialized_model_proto(),
        )

    @property
    def joint(self) -> bool:
        return self.source is self.target

    @property
    def source_vocab_size(self) -> int:
        return self.source.get_piece_size()

    @property
    def target_vocab_size(self) -> int:
        return self.target.get_piece_size()

    def encode_source(self, lines: Iterable[str]) -> list[list[int]]:
        return self.source.encode(list(lines))

    def encode_target(self, lines: Iterable[str]) -> list[list[int]]:
        return self.target.encode(list(lines))

    def source_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.source.id_to_piece(int(i)) for i in ids]

    def target_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.target.id_to_piece(int(i)) for i in ids]

    def decode_target(self, ids: Iterable[Sequence[int]]) -> list[str]:
        return self.target.decode([list(map(int, sentence)) for sentence in ids])
