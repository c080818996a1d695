"""The strongest end-to-end check: a small model learns a tiny deterministic task exactly."""

import pytest
from make_numbers_data import english, german

from seq2seq_shared.config import Config
from seq2seq_shared.decoding.translator import Translator
from seq2seq_shared.training.train import train

pytestmark = pytest.mark.slow  # trains models or starts processes: the full run only


def test_small_model_learns_number_words_to_exact_match(numbers_corpus, tmp_path):
    # 200 pairs (0..199): reordering (einundzwanzig), eins/ein-, compounds. No dropout,
    # a high learning rate, many short epochs: about 600 updates.
    config = Config().updated(
        dict(
            vocab_size=120,
            embedding_dim=32,
            hidden_size=64,
            epochs=150,
            batch_tokens=256,
            learning_rate=0.01,
            dropout=0.0,
        )
    )
    train(
        numbers_corpus / "train.en",
        numbers_corpus / "train.de",
        tmp_path / "m",
        config,
        progress=False,
    )
    numbers = range(200)
    hypotheses = Translator.from_model_dir(tmp_path / "m").translate([english(n) for n in numbers])
    wrong = [(english(n), h) for n, h in zip(numbers, hypotheses, strict=True) if h != german(n)]
    assert wrong == []
