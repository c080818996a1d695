import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


@pytest.fixture(scope="session")
def numbers_corpus(tmp_path_factory) -> Path:
    """A tiny English -> German number-words corpus (0..199), from the data generator."""
    from make_numbers_data import english, german

    directory = tmp_path_factory.mktemp("numbers")
    numbers = list(range(200))
    (directory / "train.en").write_text("".join(english(n) + "\n" for n in numbers), encoding="utf-8")
    (directory / "train.de").write_text("".join(german(n) + "\n" for n in numbers), encoding="utf-8")
    return directory
