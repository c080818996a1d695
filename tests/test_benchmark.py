"""scripts/benchmark.py: its workers measure the product's own training step and decoder."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # trains models or starts processes: the full run only

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import benchmark  # noqa: E402

SIZE = ["--vocab-size", "50", "--embedding-dim", "8", "--hidden-size", "16"]


def worker(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "worker", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_batches_follow_the_reference_format(tmp_path):
    path = tmp_path / "batches.npz"
    benchmark.save_batches(path, benchmark.synthetic_batches(50, 4, count=3))
    for source, target_input, target_output in benchmark.load_batches(path):
        assert (target_input[:, 0] == benchmark.BOS).all()
        ends = (target_output == benchmark.EOS).sum(1)
        assert (ends == 1).all()  # exactly one eos per target, before the padding
        np.testing.assert_array_equal(target_input[:, 1:] != 0, target_output[:, :-1] > 3)
        assert 8 <= (source != 0).sum(1).min() and (source != 0).sum(1).max() <= 20


def test_train_and_decode_workers(tmp_path):
    batches, sources, weights = (tmp_path / n for n in ("b.npz", "s.npz", "w.npz"))
    benchmark.save_batches(batches, benchmark.synthetic_batches(50, 4, count=2))
    train = worker("train", "--batches", str(batches), "--steps", "2", "--repeats", "1", *SIZE)
    assert train["tokens_per_s"] > 0 and train["peak_rss_mib"] > 0 and train["warmup_s"] > 0

    benchmark.save_sources(sources, [[5, 6, 7], [8, 9], [10, 11, 12, 13]])
    benchmark.save_reference_weights(
        weights, argparse.Namespace(vocab_size=50, embedding_dim=8, hidden_size=16)
    )
    ids = tmp_path / "ids.npy"
    decode = worker(
        "decode",
        "--sources",
        str(sources),
        "--weights",
        str(weights),
        "--batch-size",
        "2",
        "--max-steps",
        "6",
        "--repeats",
        "1",
        "--output",
        str(ids),
    )
    assert decode["sentences"] == 3 and decode["sentences_per_s"] > 0
    assert np.load(ids).shape == (3, 6)


def test_agreement_compares_up_to_the_first_eos(tmp_path):
    eos = benchmark.EOS
    ours = np.array([[5, eos, 0, 0], [5, 6, 7, 8], [5, 6, eos, 0]])
    theirs = np.array([[5, eos, 9, 9], [5, 6, 7, 9], [5, 7, eos, 0]])
    np.save(tmp_path / "a.npy", ours)
    np.save(tmp_path / "b.npy", theirs)
    assert benchmark.agreement(tmp_path / "a.npy", tmp_path / "b.npy") == round(1 / 3, 4)


def test_attention_train_and_search_workers(tmp_path, trained):
    batches = tmp_path / "b.npz"
    benchmark.save_batches(batches, benchmark.synthetic_batches(50, 4, count=2))
    train = worker(
        "train",
        "--batches",
        str(batches),
        "--steps",
        "2",
        "--repeats",
        "1",
        "--recipe-shape",
        "--attention",
        "general",
        *SIZE,
    )
    assert train["tokens_per_s"] > 0
    lines = tmp_path / "lines.txt"
    lines.write_text("twelve\none hundred\n", encoding="utf-8")
    search = worker(
        "search",
        "--model-dir",
        str(trained),
        "--sources",
        str(lines),
        "--beam-size",
        "3",
        "--batch-size",
        "2",
        "--repeats",
        "1",
    )
    assert search["sentences"] == 2 and search["sentences_per_s"] > 0
