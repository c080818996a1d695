"""End to end through the command line (Click's CliRunner), on a shrunken config."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import TINY

from seq2seq_shared.cli import main


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def test_train_writes_a_complete_model_directory(trained):
    names = {p.name for p in trained.iterdir()}
    assert {
        "config.json",
        "sentencepiece.model",
        "model.weights.h5",
        "training_state.json",
        "metrics.csv",
        "train.log",
        "checksums.json",
    } <= names
    assert not [n for n in names if ".tmp-" in n], "temporary files left behind"
    state = json.loads((trained / "training_state.json").read_text())
    assert state["epoch"] == 2 and state["finished"]
    assert [row["epoch"] for row in state["history"]] == [1, 2]
    assert "valid_ppl" in state["history"][-1]
    assert "sample:" in (trained / "train.log").read_text()


def test_translate_keeps_one_line_per_input_line_with_empty_lines(trained, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("one hundred\n\ntwelve\n\n\nseven\n", encoding="utf-8")
    output = tmp_path / "out.txt"
    assert run("translate", "--model-dir", trained, "-i", source, "-o", output).exit_code == 0
    lines = output.read_text(encoding="utf-8").split("\n")
    assert len(lines) == 7 and lines[-1] == ""  # six lines, each ending in "\n"
    assert [lines[i] for i in (1, 3, 4)] == ["", "", ""]
    assert [n for n in tmp_path.iterdir() if n.name.startswith(".")] == []


def test_stdin_to_stdout_and_batch_size_do_not_change_the_output(trained):
    text = "".join(f"{w}\n" for w in ["one", "two hundred five", "", "ninety-nine"] * 5)
    first = run("translate", "--model-dir", trained, input=text)
    second = run("translate", "--model-dir", trained, "--batch-size", "3", input=text)
    assert first.exit_code == 0
    assert first.stdout == second.stdout
    assert first.stdout.count("\n") == 20


def test_save_then_load_gives_identical_translations(trained, tmp_path):
    from seq2seq_shared.decoding.translator import Translator
    from seq2seq_shared.model_dir import ModelDir

    lines = ["one hundred twenty-one", "seven", "forty-two"]
    translator = Translator.from_model_dir(trained)
    before = translator.translate(lines)
    copy = ModelDir(tmp_path / "copy")
    copy.path.mkdir()
    for name in ("config.json", "sentencepiece.model"):
        (copy.path / name).write_bytes((trained / name).read_bytes())
    copy.save_weights(translator.model)
    assert Translator.from_model_dir(copy.path).translate(lines) == before


def test_empty_input_gives_no_output(trained):
    result = run("translate", "--model-dir", trained, input="")
    assert result.exit_code == 0 and result.stdout == ""


def test_info_shows_the_shared_lstm_once(trained):
    result = run("info", "--model-dir", trained, "--json")
    report = json.loads(result.stdout)
    assert report["total"] == report["formula"]
    lstm_rows = [row for row in report["components"] if "lstm" in row["name"]]
    assert len(lstm_rows) == 1 and lstm_rows[0]["used_by"].startswith("encoder + decoder")
    # Its input is [embedding; context]: feed_context is on by default.
    assert lstm_rows[0]["parameters"] == 4 * ((16 + 32) * 32 + 32 * 32 + 32)
    text = run("info", "--model-dir", trained).stdout
    assert "one set of weights" in text and "separate LSTMs would need" in text


def test_evaluate_reports_bleu_chrf_exact_match_and_perplexity(trained, numbers_corpus):
    result = run(
        "evaluate",
        "--model-dir",
        trained,
        "--source",
        numbers_corpus / "train.en",
        "--reference",
        numbers_corpus / "train.de",
        "--json",
    )
    report = json.loads(result.stdout)
    assert {"bleu", "bleu_lowercase", "chrf", "exact_match", "perplexity", "signatures"} <= set(
        report
    )
    assert report["sentences"] == 200 and report["perplexity"] > 1


@pytest.mark.parametrize(
    "make_problem, message",
    [
        (lambda d: (d / "b.txt").write_text("eins\n"), "has 2 lines but"),
        (lambda d: (d / "a.txt").write_bytes(b"one\n\xfe\n"), r"a\.txt:2:1: invalid UTF-8"),
        (lambda d: (d / "b.txt").unlink(), r"b\.txt: no such file"),
    ],
)
def test_bad_training_data_is_a_clear_error_not_a_traceback(tmp_path, make_problem, message):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "b.txt").write_text("eins\nzwei\n")
    make_problem(tmp_path)
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(tmp_path / "a.txt"),
            str(tmp_path / "b.txt"),
            "--model-dir",
            str(tmp_path / "m"),
            *TINY,
        ],
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert "Traceback" not in result.output
    import re

    assert re.search(message, result.output), result.output


def test_non_empty_model_dir_is_refused_without_overwrite(trained, numbers_corpus):
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(numbers_corpus / "train.en"),
            str(numbers_corpus / "train.de"),
            "--model-dir",
            str(trained),
        ],
    )
    assert result.exit_code == 1 and "--overwrite" in result.output


def test_missing_model_dir_and_corrupt_files_name_the_file(trained, tmp_path):
    result = CliRunner().invoke(
        main, ["translate", "--model-dir", str(tmp_path / "nope")], input="x\n"
    )
    assert result.exit_code == 1 and "model directory not found" in result.output
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "sentencepiece.model", "model.weights.h5", "checksums.json"):
        (broken / name).write_bytes((trained / name).read_bytes())
    (broken / "sentencepiece.model").write_bytes(b"garbage")
    result = CliRunner().invoke(main, ["translate", "--model-dir", str(broken)], input="x\n")
    assert result.exit_code == 1 and "sentencepiece.model: does not match" in result.output
    (broken / "sentencepiece.model").write_bytes((trained / "sentencepiece.model").read_bytes())
    (broken / "model.weights.h5").write_bytes(b"not hdf5")
    result = CliRunner().invoke(main, ["translate", "--model-dir", str(broken)], input="x\n")
    assert result.exit_code == 1 and "model.weights.h5: damaged" in result.output
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "format_version": 1}))
    result = CliRunner().invoke(main, ["translate", "--model-dir", str(broken)], input="x\n")
    # A format-1 claim does not switch the checks off while checksums.json is there.
    assert result.exit_code == 1 and "config.json: damaged or changed" in result.output
    (broken / "checksums.json").unlink()  # a real format-1 directory: nothing to check
    result = CliRunner().invoke(main, ["translate", "--model-dir", str(broken)], input="x\n")
    assert result.exit_code == 1 and "model.weights.h5: cannot be loaded" in result.output


def test_usage_errors_exit_with_2():
    result = CliRunner().invoke(main, ["train", "--epochs", "0", "a", "b", "--model-dir", "m"])
    assert result.exit_code == 2


def test_config_file_is_overridden_by_options(numbers_corpus, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        "[model]\nhidden_size = 24\nembedding_dim = 8\nvocab_size = 100\n"
        "[training]\nepochs = 1\nbatch_tokens = 512\n"
    )
    model_dir = tmp_path / "m"
    result = run(
        "train",
        numbers_corpus / "train.en",
        numbers_corpus / "train.de",
        "--model-dir",
        model_dir,
        "--config",
        config,
        "--hidden-size",
        "20",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["model"]["hidden_size"] == 20 and saved["model"]["embedding_dim"] == 8
    assert saved["training"]["epochs"] == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nhiden_size = 3\n")
    result = CliRunner().invoke(main, ["train", "a", "b", "--model-dir", "m", "--config", str(bad)])
    assert result.exit_code == 1 and "unknown setting(s) ['hiden_size']" in result.output


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from click.testing import CliRunner; from seq2seq_shared.cli import main;"
        "r = CliRunner().invoke(main, ['--help']); r2 = CliRunner().invoke(main, ['train', '--help']);"
        "r3 = CliRunner().invoke(main, ['translate', '--help']);"
        "r4 = CliRunner().invoke(main, ['serve', '--help']);"
        "assert r.exit_code == r2.exit_code == r3.exit_code == r4.exit_code == 0;"
        "import seq2seq_shared;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', "
        "'jax', 'fastapi', 'uvicorn')))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "[]"
