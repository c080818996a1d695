"""The Multi30k recipe script runs as written, on a stand-in corpus with a shrunken config."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains models or starts processes: the full run only

ROOT = Path(__file__).resolve().parent.parent


def test_recipe_trains_evaluates_and_writes_results(numbers_corpus, tmp_path):
    # the recipe translates German -> English
    corpus = _multi30k_folder(tmp_path, numbers_corpus / "train.de", numbers_corpus / "train.en")
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[model]\nvocab_size = 120\nembedding_dim = 16\nhidden_size = 32\n"
        "feed_context = true\ntie_output = true\n"
        "[training]\nepochs = 2\nbatch_tokens = 256\ntensorboard = false\n"
    )
    model_dir = tmp_path / "model"
    command = [
        sys.executable,
        str(ROOT / "scripts" / "multi30k.py"),
        str(corpus),
        "--model-dir",
        str(model_dir),
        "--config",
        str(config),
        "--",
        "--no-share-lstm",
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    results = json.loads((model_dir / "results.json").read_text(encoding="utf-8"))
    assert {
        "bleu_lowercase",
        "bleu",
        "chrf",
        "signatures",
        "parameters",
        "training",
        "machine",
        "command",
    } <= set(results)
    assert results["training"]["steps"] > 0 and results["training"]["stopped"] == "2 epochs done"
    assert "case:lc" in results["signatures"]["bleu_lowercase"]
    assert results["config"]["share_lstm"] is False  # the options after `--` reached train
    hypotheses = (model_dir / "test2016.hyp.en").read_text(encoding="utf-8")
    assert hypotheses.count("\n") == 200

    missing = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "multi30k.py"), str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0 and "train.de not found" in missing.stderr


def test_distillation_writes_a_line_per_source_line_and_resumes(trained, numbers_corpus, tmp_path):
    """`--teacher`: the student trains on the teacher's beam-search output of train.de, one
    line per line; a run interrupted after the teachers' translation reuses it."""
    from seq2seq_shared.config import DecodeConfig
    from seq2seq_shared.decoding.translator import Translator

    corpus, config = _reversed_corpus(numbers_corpus, tmp_path)
    source = (corpus / "train.de").read_text(encoding="utf-8")
    model_dir = tmp_path / "runs" / "student"  # a folder not made yet
    command = [
        sys.executable,
        str(ROOT / "scripts" / "multi30k.py"),
        str(corpus),
        "--model-dir",
        str(model_dir),
        "--config",
        str(config),
        "--teacher",
        str(trained),
        "--teacher-beam-size",
        "3",
    ]
    # Interrupted after the teacher's translation: the student's training fails to start.
    failed = subprocess.run([*command, "--", "--dropout", "2"], capture_output=True, text=True)
    assert failed.returncode != 0 and "--dropout" in failed.stderr
    distilled = tmp_path / "runs" / "student.distilled.en"
    lines = source.splitlines()
    teacher = Translator.from_model_dir(trained, DecodeConfig(beam_size=3))
    assert distilled.read_text(encoding="utf-8").splitlines() == teacher.translate(lines)
    written = distilled.stat().st_mtime_ns

    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    assert "the teachers' translations, reused" in finished.stderr
    assert distilled.stat().st_mtime_ns == written  # not translated again
    results = json.loads((model_dir / "results.json").read_text(encoding="utf-8"))
    assert results["distillation"]["lines"] == len(lines) == 200
    assert results["distillation"]["beam_size"] == 3
    assert results["distillation"]["teacher_training_minutes"][0] > 0


def _multi30k_folder(tmp_path, de_text, en_text):
    """tmp_path/multi30k with train, val and test2016 .de/.en: the .de files copies of
    `de_text`, the .en files copies of `en_text`."""
    corpus = tmp_path / "multi30k"
    corpus.mkdir()
    for name in ("train", "val", "test2016"):
        (corpus / f"{name}.de").write_text(de_text.read_text(encoding="utf-8"), encoding="utf-8")
        (corpus / f"{name}.en").write_text(en_text.read_text(encoding="utf-8"), encoding="utf-8")
    return corpus


def _reversed_corpus(numbers_corpus, tmp_path):
    """A Multi30k-shaped folder of the numbers corpus, English to German (the side the
    `trained` fixture translates), and a tiny one-epoch config."""
    corpus = _multi30k_folder(tmp_path, numbers_corpus / "train.en", numbers_corpus / "train.de")
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[model]\nvocab_size = 120\nembedding_dim = 16\nhidden_size = 32\n"
        "[training]\nepochs = 1\nbatch_tokens = 256\ntensorboard = false\n"
    )
    return corpus, config


def test_distil_trains_the_teacher_then_the_student_in_one_command(numbers_corpus, tmp_path):
    """`--distil`: a teacher by the same recipe in MODEL_DIR.teacher, then the student on
    its translations of train.de; both have results, the student's names its teacher."""
    corpus, config = _reversed_corpus(numbers_corpus, tmp_path)
    model_dir = tmp_path / "runs" / "student"
    command = [sys.executable, str(ROOT / "scripts" / "multi30k.py"), str(corpus)]
    options = ["--model-dir", str(model_dir), "--config", str(config), "--distil"]
    finished = subprocess.run(
        [*command, *options, "--teacher-beam-size", "2"], capture_output=True, text=True
    )
    assert finished.returncode == 0, finished.stderr
    teacher = tmp_path / "runs" / "student.teacher"
    assert json.loads((teacher / "results.json").read_text(encoding="utf-8"))["parameters"] > 0
    results = json.loads((model_dir / "results.json").read_text(encoding="utf-8"))
    assert results["distillation"]["teachers"] == [str(teacher)]
    assert results["distillation"]["lines"] == 200


def test_frontier_trains_a_point_scores_it_twice_and_skips_it_after(numbers_corpus, tmp_path):
    """scripts/frontier.py: a point's greedy and beam-5 scores in the results file, the
    run skipped once it is there, and the plot drawn from that file."""
    corpus = _multi30k_folder(tmp_path, numbers_corpus / "train.de", numbers_corpus / "train.en")
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[model]\nvocab_size = 120\n[training]\nepochs = 1\nbatch_tokens = 512\n"
        "tensorboard = false\n"
    )
    results = tmp_path / "frontier.json"
    command = [
        sys.executable,
        str(ROOT / "scripts" / "frontier.py"),
        str(corpus),
        *("--models-dir", str(tmp_path / "models"), "--results", str(results)),
        *("--config", str(config), "--point", "separate-1.3m"),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    (point,) = json.loads(results.read_text(encoding="utf-8"))["points"]
    assert point["name"] == "separate-1.3m" and point["kind"] == "separate"
    assert (point["embedding_dim"], point["hidden_size"]) == (96, 144)
    assert {"bleu_lowercase", "bleu", "chrf"} <= set(point["greedy"]) & set(point["beam5"])
    assert "--no-share-lstm" in point["command"] and point["training"]["steps"] > 0

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "skipped" in again.stderr

    pytest.importorskip(
        "matplotlib", reason="the plot needs the docs extra: pip install -e '.[docs]'"
    )
    sys.path.insert(0, str(ROOT / "scripts"))
    from plot_results import frontier

    frontier(json.loads(results.read_text(encoding="utf-8")), tmp_path / "frontier.png")
    assert (tmp_path / "frontier.png").stat().st_size > 1000
