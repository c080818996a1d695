import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

TINY = ["--embedding-dim", "16", "--hidden-size", "32", "--vocab-size", "120", "--epochs", "2",
        "--batch-tokens", "256", "--quiet"]


@pytest.fixture(scope="session")
def numbers_corpus(tmp_path_factory) -> Path:
    """A tiny English -> German number-words corpus (0..199), from the data generator."""
    from make_numbers_data import english, german

    directory = tmp_path_factory.mktemp("numbers")
    numbers = list(range(200))
    (directory / "train.en").write_text("".join(english(n) + "\n" for n in numbers), encoding="utf-8")
    (directory / "train.de").write_text("".join(german(n) + "\n" for n in numbers), encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def trained(numbers_corpus, tmp_path_factory) -> Path:
    """A model directory trained for 2 epochs on the tiny corpus, through the CLI."""
    from click.testing import CliRunner

    from seq2seq_shared.cli import main

    model_dir = tmp_path_factory.mktemp("cli") / "model"
    corpus = numbers_corpus
    arguments = ["train", corpus / "train.en", corpus / "train.de", "--model-dir", model_dir,
                 "--valid", corpus / "train.en", corpus / "train.de", *TINY]
    result = CliRunner().invoke(main, [str(a) for a in arguments], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return model_dir
