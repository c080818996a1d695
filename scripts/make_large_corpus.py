"""Generate a large seeded synthetic parallel corpus, for memory and speed benchmarks.

    python scripts/make_large_corpus.py /tmp/large --pairs 5000000 --seed 0

writes /tmp/large/train.src and /tmp/large/train.tgt (UTF-8, one sentence per line, the
same number of lines), to measure `prepare` and `train` on large data. The corpus is never
committed: 5,000,000 pairs are about 0.8 GB (two files of about 0.4 GB).

The text looks like natural language statistically, so that SentencePiece and length
bucketing behave as they would on real data:

* The source language has 20,000 made-up lowercase words of 2-10 letters (consonants and
  vowels in turn). Word frequencies follow Zipf's law (exponent 1.1), and frequent words
  tend to be short, as in real languages: 4 letters on average in running text.
* Sentences have 3-40 words: a lognormal clipped to that range, most often 11 words.
  80% end with ".", 12% with "?", the rest with nothing; 30% of those with 6 words or more
  have one comma.
* The target is a deterministic translation, so a model can learn it: source word i becomes
  word i of another made-up vocabulary (other letters, made the same way); the words at
  positions (0, 1), (2, 3), ... are swapped; punctuation stays where it is; and questions
  start with one extra function word, the question particle.
* About 5% of pairs are exact repeats of an earlier pair of the same chunk, as real corpora
  have duplicates.

Pairs are generated with numpy, 50,000 at a time, and written chunk by chunk, so memory
stays around 150 MB whatever --pairs is. The same --seed gives byte-identical files (with
the same numpy version: numpy does not promise its random streams across versions).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

VOCABULARY_SIZE = 20_000
ZIPF_EXPONENT = 1.1
MIN_WORDS, MAX_WORDS = 3, 40
LENGTH_MODE = 11  # the most frequent sentence length, in words
LENGTH_SIGMA = 0.45  # the spread of the lognormal; its mode is exp(mu - sigma**2)
LENGTH_MU = np.log(LENGTH_MODE) + LENGTH_SIGMA**2
QUESTION_SHARE = 0.12
NO_PUNCTUATION_SHARE = 0.08
COMMA_SHARE = 0.3  # of the sentences with 6 words or more
DUPLICATE_SHARE = 0.05
CHUNK_PAIRS = 50_000

SOURCE_CONSONANTS, SOURCE_VOWELS = "bcdfghklmnprstvz", "aeiou"
TARGET_CONSONANTS, TARGET_VOWELS = "bdfgjklmnprstwxz", "aeiouy"

# A sentence is written as pieces: word, separator, word, separator, ..., word, ending
# (the target may start with the question particle). Pieces 0 .. VOCABULARY_SIZE - 1 are
# the words of the language, then come these:
SPACE, COMMA, PERIOD_END, QUESTION_END, PLAIN_END, QUESTION_PARTICLE = range(
    VOCABULARY_SIZE, VOCABULARY_SIZE + 6
)
PIECE_BYTES = 12  # room for the longest piece (a 10-letter particle and its space)


def make_vocabulary(rng: np.random.Generator, size: int, consonants: str, vowels: str) -> list[str]:
    """`size` distinct made-up words of 2-10 letters (7 on average), consonants and vowels
    in turn, roughly shortest first: word i is the i-th most frequent."""
    words: dict[str, None] = {}  # a dict keeps the order in which words were made
    while len(words) < size:
        length = 2 + rng.binomial(8, 0.6)
        consonant_choices = rng.integers(len(consonants), size=length)
        vowel_choices = rng.integers(len(vowels), size=length)
        starts_with_vowel = rng.random() < 0.3
        letters = []
        for position in range(length):
            if (position % 2 == 0) == starts_with_vowel:
                letters.append(vowels[vowel_choices[position]])
            else:
                letters.append(consonants[consonant_choices[position]])
        words["".join(letters)] = None
    # Frequent words tend to be short, but not strictly: order by length plus some noise.
    unique_words = list(words)
    word_lengths = np.array([len(word) for word in unique_words])
    sort_keys = word_lengths + rng.normal(0, 1.5, len(unique_words))
    return [unique_words[index] for index in np.argsort(sort_keys, kind="stable")]


def make_piece_table(words: list[str], particle: str) -> np.ndarray:
    """The UTF-8 bytes of every piece, one row each, padded with zero bytes."""
    pieces = words + [" ", ", ", ".\n", "?\n", "\n", particle + " "]
    table = np.zeros((len(pieces), PIECE_BYTES), dtype=np.uint8)
    for index, piece in enumerate(pieces):
        encoded = piece.encode("utf-8")
        assert len(encoded) <= PIECE_BYTES, piece
        table[index, : len(encoded)] = np.frombuffer(encoded, dtype=np.uint8)
    return table


def zipf_cumulative(size: int, exponent: float) -> np.ndarray:
    """The cumulative probabilities of ranks 1 .. size under Zipf's law."""
    weights = 1.0 / np.arange(1, size + 1) ** exponent
    return np.cumsum(weights) / weights.sum()


def target_orders(max_words: int) -> np.ndarray:
    """Row n: the source position of each target word in an n-word sentence, where the
    words at positions (0, 1), (2, 3), ... are swapped (a last odd word stays)."""
    orders = np.tile(np.arange(max_words), (max_words + 1, 1))
    for length in range(max_words + 1):
        for first in range(0, length - 1, 2):
            orders[length, first] = first + 1
            orders[length, first + 1] = first
    return orders


def duplicate_origins(rng: np.random.Generator, pairs: int) -> np.ndarray:
    """For each row of a chunk, the row it is a copy of: itself, or for about 5% of rows
    an earlier row that is not itself a copy."""
    is_duplicate = rng.random(pairs) < DUPLICATE_SHARE
    is_duplicate[0] = False
    originals = np.flatnonzero(~is_duplicate)
    duplicates = np.flatnonzero(is_duplicate)
    originals_before = np.searchsorted(originals, duplicates)  # >= 1: row 0 is an original
    chosen = (rng.random(len(duplicates)) * originals_before).astype(np.int64)
    origins = np.arange(pairs)
    origins[duplicates] = originals[chosen]
    return origins


def make_chunk(
    rng: np.random.Generator, pairs: int, word_cumulative: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The source sentences of a chunk: words (pairs x MAX_WORDS, word ids), separators
    (the piece after each word: a space, a comma or the ending) and lengths (in words).
    Only the first `length` columns of a row are used."""
    lengths = np.rint(rng.lognormal(LENGTH_MU, LENGTH_SIGMA, pairs)).astype(np.int64)
    lengths = np.clip(lengths, MIN_WORDS, MAX_WORDS)
    words = np.searchsorted(word_cumulative, rng.random((pairs, MAX_WORDS)), side="right")
    words = np.minimum(words, VOCABULARY_SIZE - 1).astype(np.int32)

    rows = np.arange(pairs)
    separators = np.full((pairs, MAX_WORDS), SPACE, dtype=np.int32)
    draw = rng.random(pairs)
    endings = np.select(
        [draw < QUESTION_SHARE, draw < QUESTION_SHARE + NO_PUNCTUATION_SHARE],
        [QUESTION_END, PLAIN_END],
        PERIOD_END,
    )
    separators[rows, lengths - 1] = endings
    has_comma = (lengths >= 6) & (rng.random(pairs) < COMMA_SHARE)
    comma_after = rng.integers(1, np.maximum(lengths - 2, 2))  # at least 2 words follow
    separators[rows[has_comma], comma_after[has_comma]] = COMMA

    origins = duplicate_origins(rng, pairs)
    return words[origins], separators[origins], lengths[origins]


def interleave(
    words: np.ndarray, separators: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The pieces word, separator, word, separator, ... of each row, and which are used."""
    pairs, max_words = words.shape
    pieces = np.empty((pairs, 2 * max_words), dtype=np.int32)
    pieces[:, 0::2] = words
    pieces[:, 1::2] = separators
    used = np.arange(2 * max_words) < 2 * lengths[:, None]
    return pieces, used


def to_text(piece_table: np.ndarray, pieces: np.ndarray, used: np.ndarray) -> bytes:
    """The text of the used pieces, row after row: each piece's padded bytes, less the
    padding."""
    text = piece_table[pieces[used]].ravel()
    return text[text != 0].tobytes()


def source_text(
    piece_table: np.ndarray, words: np.ndarray, separators: np.ndarray, lengths: np.ndarray
) -> bytes:
    return to_text(piece_table, *interleave(words, separators, lengths))


def target_text(
    piece_table: np.ndarray,
    orders: np.ndarray,
    words: np.ndarray,
    separators: np.ndarray,
    lengths: np.ndarray,
) -> bytes:
    """The translation: source word i is target word i; the words are reordered, the
    separators stay in place, and questions start with the question particle."""
    reordered = np.take_along_axis(words, orders[lengths], axis=1)
    pieces, used = interleave(reordered, separators, lengths)
    is_question = separators[np.arange(len(lengths)), lengths - 1] == QUESTION_END
    particles = np.full((len(lengths), 1), QUESTION_PARTICLE, dtype=np.int32)
    pieces = np.concatenate([particles, pieces], axis=1)
    used = np.concatenate([is_question[:, None], used], axis=1)
    return to_text(piece_table, pieces, used)


def write_corpus(output_dir: Path, pairs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    source_words = make_vocabulary(rng, VOCABULARY_SIZE, SOURCE_CONSONANTS, SOURCE_VOWELS)
    target_words = make_vocabulary(rng, VOCABULARY_SIZE + 1, TARGET_CONSONANTS, TARGET_VOWELS)
    particle, target_words = target_words[0], target_words[1:]  # a short function word
    source_table = make_piece_table(source_words, particle)  # the source has no particle
    target_table = make_piece_table(target_words, particle)
    word_cumulative = zipf_cumulative(VOCABULARY_SIZE, ZIPF_EXPONENT)
    orders = target_orders(MAX_WORDS)

    output_dir.mkdir(parents=True, exist_ok=True)
    source_path, target_path = output_dir / "train.src", output_dir / "train.tgt"
    written = 0
    with open(source_path, "wb") as source_file, open(target_path, "wb") as target_file:
        while written < pairs:
            chunk_pairs = min(CHUNK_PAIRS, pairs - written)
            words, separators, lengths = make_chunk(rng, chunk_pairs, word_cumulative)
            source_file.write(source_text(source_table, words, separators, lengths))
            target_file.write(target_text(target_table, orders, words, separators, lengths))
            written += chunk_pairs
            if written % 1_000_000 == 0 and written < pairs:
                print(f"{written:,} pairs", file=sys.stderr, flush=True)

    print(f"lines: {written:,} in each file")
    for path in (source_path, target_path):
        size = path.stat().st_size
        print(f"{path}: {size:,} bytes ({size / 1e6:,.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Write OUT_DIR/train.src and OUT_DIR/train.tgt: a seeded synthetic "
        "parallel corpus for memory and speed benchmarks."
    )
    parser.add_argument("output_dir", type=Path, metavar="OUT_DIR")
    parser.add_argument(
        "--pairs", type=int, default=5_000_000, help="sentence pairs to write (default: 5,000,000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    arguments = parser.parse_args()
    if arguments.pairs < 1:
        parser.error("--pairs must be at least 1")
    if arguments.seed < 0:
        parser.error("--seed must be 0 or more")
    start = time.perf_counter()
    write_corpus(arguments.output_dir, arguments.pairs, arguments.seed)
    print(f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
