"""The same code under KERAS_BACKEND=jax: a small train-then-translate run, in a fresh process."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # trains models or starts processes: the full run only

pytest.importorskip("jax")


def test_train_then_translate_under_jax(numbers_corpus, tmp_path):
    environment = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    corpus = numbers_corpus
    command = [sys.executable, "-m", "seq2seq_shared.cli"]
    train = [
        *command,
        "train",
        str(corpus / "train.en"),
        str(corpus / "train.de"),
        "--model-dir",
        str(tmp_path / "m"),
        "--valid",
        str(corpus / "train.en"),
        str(corpus / "train.de"),
        "--embedding-dim",
        "16",
        "--hidden-size",
        "32",
        "--vocab-size",
        "120",
        "--batch-tokens",
        "512",
        "--quiet",
        "--attention",
        "general",
        "--role-signal",
        "bias",
    ]
    subprocess.run(
        [*train, "--epochs", "1"], env=environment, check=True, capture_output=True, text=True
    )
    assert "jax" in (tmp_path / "m" / "train.log").read_text()
    # A resume (one more epoch, in a new process) compiles nothing: every program comes
    # from the model directory's compile cache.
    subprocess.run(
        [*train, "--epochs", "2"], env=environment, check=True, capture_output=True, text=True
    )
    counts = [
        line.split("XLA programs this process: ")[1]
        for line in (tmp_path / "m" / "train.log").read_text().splitlines()
        if "XLA programs" in line
    ]
    assert len(counts) == 2 and counts[0].split()[0] != "0"
    assert counts[1].startswith("0 compiled, ")
    alignments = tmp_path / "alignments.jsonl"
    beam = subprocess.run(
        [
            *command,
            "translate",
            "--model-dir",
            str(tmp_path / "m"),
            "--beam-size",
            "3",
            "--n-best",
            "2",
            "--alignments",
            str(alignments),
        ],
        input="one hundred\n\nseven\n",
        env=environment,
        check=True,
        capture_output=True,
        text=True,
    )
    assert [len(json.loads(line)["hypotheses"]) for line in beam.stdout.splitlines()] == [2, 1, 2]
    assert len(alignments.read_text().splitlines()) == 3
