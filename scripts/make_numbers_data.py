"""Generate the embedded default corpus: English number words -> German number words.

    python scripts/make_numbers_data.py --output data

The task has the structure that makes translation non-trivial: reordering (German says
units before tens, "one and twenty"), agreement-like form changes ("eins" alone but
"ein" inside a compound, "sechs" but "sechzig", "sieben" but "siebzig"), and compounding
(German writes every number below a million as one word).

    three hundred twenty-one  ->  dreihunderteinundzwanzig
    seventy thousand one      ->  siebzigtausendeins

Numbers are drawn with a seeded generator, with the number of digits uniform so that small
numbers are as frequent as large ones, and the three splits never share a number.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

ENGLISH_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
ENGLISH_TENS = [
    "",
    "",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
]

GERMAN_ONES = [
    "null",
    "eins",
    "zwei",
    "drei",
    "vier",
    "fünf",
    "sechs",
    "sieben",
    "acht",
    "neun",
    "zehn",
    "elf",
    "zwölf",
    "dreizehn",
    "vierzehn",
    "fünfzehn",
    "sechzehn",
    "siebzehn",
    "achtzehn",
    "neunzehn",
]
GERMAN_TENS = [
    "",
    "",
    "zwanzig",
    "dreißig",
    "vierzig",
    "fünfzig",
    "sechzig",
    "siebzig",
    "achtzig",
    "neunzig",
]

MAX_NUMBER = 999_999
SPLITS = {"train": 20_000, "dev": 500, "test": 1_000}


def english_below_thousand(number: int) -> list[str]:
    words = []
    hundreds, rest = divmod(number, 100)
    if hundreds:
        words += [ENGLISH_ONES[hundreds], "hundred"]
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(ENGLISH_TENS[tens] + (f"-{ENGLISH_ONES[ones]}" if ones else ""))
    elif rest:
        words.append(ENGLISH_ONES[rest])
    return words


def english(number: int) -> str:
    """American style, no "and": 321 -> "three hundred twenty-one"."""
    if number == 0:
        return "zero"
    thousands, rest = divmod(number, 1000)
    words = english_below_thousand(thousands) + ["thousand"] if thousands else []
    return " ".join(words + english_below_thousand(rest))


def german_below_thousand(number: int, final: bool) -> str:
    """`final` is False inside a compound ("eintausend"), where "eins" loses its "s"."""
    hundreds, rest = divmod(number, 100)
    word = "ein" if hundreds == 1 else GERMAN_ONES[hundreds] if hundreds else ""
    word += "hundert" if hundreds else ""
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        word += ("ein" if ones == 1 else GERMAN_ONES[ones]) + "und" if ones else ""
        word += GERMAN_TENS[tens]
    elif rest == 1:
        word += "eins" if final else "ein"
    elif rest:
        word += GERMAN_ONES[rest]
    return word


def german(number: int) -> str:
    """One compound word: 321 -> "dreihunderteinundzwanzig", 1001 -> "eintausendeins"."""
    if number == 0:
        return "null"
    thousands, rest = divmod(number, 1000)
    word = german_below_thousand(thousands, final=False) + "tausend" if thousands else ""
    return word + german_below_thousand(rest, final=True)


def sample_numbers(seed: int) -> dict[str, list[int]]:
    """Distinct numbers per split, digit count uniform in 1..6 (so 7 and 700,007 are alike likely)."""
    rng = random.Random(seed)
    wanted = sum(SPLITS.values())
    seen: set[int] = set()
    numbers: list[int] = []
    while len(numbers) < wanted:
        digits = rng.randint(1, len(str(MAX_NUMBER)))
        number = rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)
        if number not in seen:
            seen.add(number)
            numbers.append(number)
    splits, start = {}, 0
    for name, size in SPLITS.items():
        splits[name] = numbers[start : start + size]
        start += size
    return splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=Path("data"))
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    for name, numbers in sample_numbers(args.seed).items():
        for language, spell in (("en", english), ("de", german)):
            path = args.output / f"{name}.{language}"
            path.write_text("".join(spell(n) + "\n" for n in numbers), encoding="utf-8")
        print(f"{name}: {len(numbers)} pairs")


if __name__ == "__main__":
    main()
