"""check-data's warnings about corpora that look usable but are not what they seem, and
`info` refusing a model directory whose SentencePiece model is missing or swapped."""

import json
import logging
import shutil

from click.testing import CliRunner

from seq2seq_shared.cli import main
from seq2seq_shared.data.batches import read_parallel
from seq2seq_shared.data.check import check_corpus
from seq2seq_shared.data.tokenizer import train_sentencepiece

BOM = b"\xef\xbb\xbf"


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def check_data(*arguments):
    return CliRunner().invoke(main, ["check-data", *map(str, arguments)])


def test_the_same_file_as_source_and_target_is_a_warning(tmp_path):
    corpus = write(tmp_path / "corpus.txt", ["one", "two", "three"])
    report = check_corpus(corpus, tmp_path / "." / "corpus.txt")  # another spelling, same file
    assert report.ok
    assert any("are the same file" in warning for warning in report.warnings)
    other = write(tmp_path / "copy.txt", ["one", "two", "three"])
    assert not any("same file" in warning for warning in check_corpus(corpus, other).warnings)


def test_mostly_identical_pairs_are_counted_and_warned_about(tmp_path):
    source = write(tmp_path / "a.en", ["one", "two", "three", "four", "Paris"])
    target = write(tmp_path / "b.de", ["one", "two", "three", "vier", "Paris"])
    report = check_corpus(source, target)
    assert report.identical == [1, 2, 3, 5]
    assert any(
        "4 of 5 kept pairs (80%) have a target identical to their source (lines "
        "1, 2, 3, 5)" in warning
        for warning in report.warnings
    )
    assert report.to_dict()["identical"] == {"pairs": 4, "share": 0.8, "first_lines": [1, 2, 3, 5]}
    result = check_data(source, target)
    assert result.exit_code == 0
    assert "4 pair(s) (80%) have a target identical to their source" in result.output


def test_a_few_identical_pairs_are_counted_without_a_warning(tmp_path):
    source = write(tmp_path / "a.en", ["one", "two", "Paris"])
    target = write(tmp_path / "b.de", ["eins", "zwei", "Paris"])
    report = check_corpus(source, target)
    assert report.identical == [3] and not report.warnings
    assert "1 pair(s) (33%) have a target identical to their source (kept; lines 3)" in (
        report.summary()
    )
    clean = check_corpus(source, write(tmp_path / "c.de", ["eins", "zwei", "Parigi"]))
    assert clean.to_dict()["identical"] == {"pairs": 0, "share": 0.0, "first_lines": []}
    assert not any("identical to their source" in line for line in clean.summary())


def test_a_utf8_byte_order_mark_is_removed_with_a_warning(tmp_path):
    source = tmp_path / "a.en"
    source.write_bytes(BOM + b"one\ntwo\n")
    target = write(tmp_path / "b.de", ["eins", "zwei"])
    report = check_corpus(source, target)
    assert report.ok and report.sources == ["one", "two"]
    assert f"{source}:1: UTF-8 byte order mark removed" in report.warnings[0]
    result = check_data(source, target, "--json")
    assert result.exit_code == 0
    assert any("byte order mark removed" in w for w in json.loads(result.output)["warnings"])


def test_a_byte_order_mark_after_the_first_line_is_flagged_where_it_is(tmp_path):
    source = tmp_path / "a.en"
    source.write_bytes(b"one\n" + BOM + b"two\n")  # two files joined with `cat`
    target = write(tmp_path / "b.de", ["eins", "zwei"])
    report = check_corpus(source, target)
    assert any(w.startswith(f"{source}:2:1: byte order mark (U+FEFF)") for w in report.warnings)
    assert not any("removed" in w for w in report.warnings)


def test_train_logs_the_same_warnings_through_read_parallel(tmp_path, caplog):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(BOM + b"one\ntwo\n")
    with caplog.at_level(logging.WARNING, logger="seq2seq_shared.data.batches"):
        assert read_parallel(corpus, corpus) == (["one", "two"], ["one", "two"])
    for expected in (
        "are the same file",
        "1: UTF-8 byte order mark removed",
        "2 of 2 kept pairs (100%) have a target identical to their source",
    ):
        assert expected in caplog.text


def damaged_copy(trained, tmp_path, damage):
    model_dir = tmp_path / "model"
    shutil.copytree(trained, model_dir)
    damage(model_dir / "sentencepiece.model")
    return CliRunner().invoke(main, ["info", "--model-dir", str(model_dir)])


def test_info_refuses_a_missing_sentencepiece_model(trained, tmp_path):
    result = damaged_copy(trained, tmp_path, lambda path: path.unlink())
    assert result.exit_code == 1
    assert "sentencepiece.model: missing SentencePiece model" in result.output
    assert "Traceback" not in result.output


def test_info_refuses_a_swapped_sentencepiece_model(trained, tmp_path):
    def swap(path):  # a valid SentencePiece model, but not the one trained with
        path.write_bytes(
            train_sentencepiece(["eins zwei drei", "vier fünf sechs"] * 20, vocab_size=30)
        )

    result = damaged_copy(trained, tmp_path, swap)
    assert result.exit_code == 1
    assert "sentencepiece.model: does not match the model it was trained with" in result.output
    assert "Traceback" not in result.output
