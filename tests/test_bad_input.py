"""Malformed input, built here byte by byte: check-data's report, and translate's behaviour."""

import json
import random
import re
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from seq2seq_shared.cli import main
from seq2seq_shared.data.check import check_corpus, first_divergence

LENGTHS = [random.Random(i).randint(1, 30) for i in range(60)]  # words per sentence
SOURCE = [f"sentence {i}: " + "word " * n for i, n in enumerate(LENGTHS)]
TARGET = [f"Satz {i}: " + "Wort " * n for i, n in enumerate(LENGTHS)]


def write(path, lines, ending=b"\n"):
    path.write_bytes(
        b"".join(
            line.encode() + ending if isinstance(line, str) else line + ending for line in lines
        )
    )
    return path


def check_data(*arguments):
    return CliRunner().invoke(main, ["check-data", *map(str, arguments)])


def test_a_missing_line_is_located_by_sentence_lengths(tmp_path):
    source = write(tmp_path / "a.en", SOURCE)
    target = write(tmp_path / "b.de", TARGET[:23] + TARGET[24:])  # line 24 lost
    result = check_data(source, target)
    assert result.exit_code == 1
    assert "a.en has 60 lines but" in result.output and "b.de has 59" in result.output
    line = int(re.search(r"stop corresponding near line (\d+)", result.output).group(1))
    assert abs(line - 24) <= 1
    assert first_divergence(SOURCE[:40] + ["an extra line"] + SOURCE[40:], TARGET) == 41


def test_line_breaks_other_tools_count_nul_and_invalid_utf8_are_flagged_by_file_line_byte(tmp_path):
    lines = [line.encode() for line in SOURCE[:6]]
    lines[1] = b"caf\xe9 au lait"  # Latin-1, not UTF-8
    lines[2] = "two\u2028lines?".encode()
    lines[3] = b"nul\x00byte"
    lines[4] = "next\u0085line".encode()
    lines[5] = "para\u2029graph".encode()
    source = write(tmp_path / "a.en", lines)
    target = write(tmp_path / "b.de", TARGET[:6], ending=b"\r\n")
    result = check_data(source, target, "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["source_lines"] == report["target_lines"] == 6  # counted as wc -l does
    assert any(e.startswith(f"{source}:2:4: invalid UTF-8") for e in report["errors"])
    warnings = "\n".join(report["warnings"])
    for expected in (
        "a.en:3:4: LINE SEPARATOR (U+2028)",
        "a.en:4:4: NUL byte",
        "a.en:5:5: NEXT LINE (U+0085)",
        "a.en:6:5: PARAGRAPH SEPARATOR (U+2029)",
        "b.de: 6 line(s) end in \\r\\n",
    ):
        assert expected in warnings


def test_empty_and_long_pairs_are_dropped_together_and_duplicates_reported(tmp_path):
    source_lines = ["one", "", "three", "four " * 20, "one", "six"]
    target_lines = ["eins", "zwei", "", "vier", "eins", "sechs"]
    source = write(tmp_path / "a.en", source_lines)
    target = write(tmp_path / "b.de", target_lines)
    report = check_corpus(source, target, max_length=10)
    assert report.ok
    assert report.dropped == {"with an empty side": [2, 3], "longer than 10 words": [4]}
    assert report.duplicates == [5]
    assert report.sources == ["one", "one", "six"]
    assert report.targets == ["eins", "eins", "sechs"]
    result = check_data(source, target, "--max-length", "10")
    assert result.exit_code == 0
    assert "dropped 2 pair(s) with an empty side (both sides; lines 2, 3)" in result.output
    assert "1 pair(s) repeat an earlier pair (kept; lines 5)" in result.output
    assert "kept 3 of 6 pairs" in result.output


def test_training_refuses_misaligned_data_before_building_anything(tmp_path):
    source = write(tmp_path / "a.en", SOURCE)
    target = write(tmp_path / "b.de", TARGET[:-1])
    model_dir = tmp_path / "model"
    result = CliRunner().invoke(
        main, ["train", str(source), str(target), "--model-dir", str(model_dir), "--quiet"]
    )
    assert result.exit_code == 1 and "stop corresponding near line" in result.output
    assert not (model_dir / "config.json").exists()


# translate ------------------------------------------------------------------------------


def translate(trained, *arguments, input=None):
    return CliRunner().invoke(
        main, ["translate", "--model-dir", str(trained), *map(str, arguments)], input=input
    )


def test_invalid_utf8_is_an_error_with_its_line_or_replaced_on_request(trained):
    data = b"seven\ncaf\xe9\ntwelve\n"
    result = translate(trained, input=data)
    assert result.exit_code == 1 and "<stdin>:2:4: invalid UTF-8" in result.output
    assert "--errors replace" in result.output
    result = translate(trained, "--errors", "replace", input=data)
    assert result.exit_code == 0 and result.stdout.count("\n") == 3


def test_an_over_long_line_is_truncated_with_a_warning_and_still_one_output_line(trained, caplog):
    text = "seven\n" + "one hundred " * 200 + "\ntwelve\n"
    result = translate(trained, input=text)
    assert result.exit_code == 0 and result.stdout.count("\n") == 3
    assert "input line 2 has" in caplog.text and "max_source_length" in caplog.text


def test_unwritable_output_fails_before_loading_the_model(trained, tmp_path):
    result = translate(
        tmp_path / "no-model-here", "-o", tmp_path / "missing" / "out.txt", input="seven\n"
    )
    assert result.exit_code == 1 and "does not exist; create it first" in result.output


@pytest.mark.slow
def test_a_killed_translation_leaves_no_output_file_that_looks_complete(trained, tmp_path):
    output = tmp_path / "out.txt"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "seq2seq_shared.cli",
            "translate",
            "--model-dir",
            str(trained),
            "-o",
            str(output),
        ],
        stdin=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    process.stdin.write(b"seven\ntwelve\n" * 50)
    process.stdin.flush()
    # Kill only once writing has begun (its temporary file is there), the input unfinished.
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.txt.tmp-*")) and time.monotonic() < deadline:
        assert process.poll() is None, "translate ended before its input did"
        time.sleep(0.1)
    assert list(tmp_path.glob(".out.txt.tmp-*")), "translate never began writing"
    process.kill()
    process.wait()
    assert not output.exists()


def test_an_unwritable_model_directory_fails_before_reading_the_data(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(tmp_path / "missing.en"),
            str(tmp_path / "missing.de"),
            "--model-dir",
            str(blocker / "model"),
            "--quiet",
        ],
    )
    assert result.exit_code == 1 and "model directory is not writable" in result.output
