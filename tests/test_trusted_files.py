"""Every file a command trusts is checked first: a damaged or reshaped config.json,
checksums.json, prepared.json or ids file is one clear error naming the file, never a
traceback and never a silently wrong translation."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seq2seq_shared.cli import main
from seq2seq_shared.data.prepared import PreparedCorpus


def translate(model_dir: Path):
    return CliRunner().invoke(main, ["translate", "--model-dir", str(model_dir)], input="seven\n")


def one_line_error(result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for word in words:
        assert word in lines[0], lines[0]


def edited(document: dict, change: str):
    if change == "a list":
        return [document]
    if change == "a number":
        return 3
    document = json.loads(json.dumps(document))
    if change == "vocab a list":
        document["vocab"] = [1, 2]
    elif change == "no sentencepiece_sha256":
        del document["vocab"]["sentencepiece_sha256"]
    elif change == "model a number":
        document["model"] = 5
    elif change == "reverse_source flipped":
        document["model"]["reverse_source"] = not document["model"]["reverse_source"]
    elif change == "format 1":
        document["format_version"] = 1
    return document


CONFIG_CHANGES = {  # change: words of the error
    "a list": ["config.json", "not an object"],
    "a number": ["config.json", "not an object"],
    "vocab a list": ["config.json", "vocab"],
    "no sentencepiece_sha256": ["config.json", "sentencepiece_sha256"],
    "model a number": ["config.json", "model"],
    "reverse_source flipped": ["config.json", "changed"],  # valid shape: caught by its sha256
    "format 1": ["config.json", "changed"],  # not a way to switch the checks off
}


@pytest.mark.parametrize("change", list(CONFIG_CHANGES))
def test_a_reshaped_or_edited_config_json_is_refused(trained, tmp_path, change):
    model_dir = tmp_path / "model"
    shutil.copytree(trained, model_dir)
    config = model_dir / "config.json"
    config.write_text(json.dumps(edited(json.loads(config.read_text()), change)))
    one_line_error(translate(model_dir), *CONFIG_CHANGES[change])


@pytest.mark.parametrize(
    "content, words",
    [
        ("[1, 2]", ["checksums.json", "not a mapping"]),
        ("7", ["checksums.json", "not a mapping"]),
        ('{"model.weights.h5": "abc"}', ["checksums.json", "not a mapping"]),
        ("{not json", ["checksums.json", "corrupt"]),
        ('{"config.json": []}', ["config.json", "checksums.json"]),
    ],
)
def test_a_reshaped_checksums_json_is_refused(trained, tmp_path, content, words):
    model_dir = tmp_path / "model"
    shutil.copytree(trained, model_dir)
    (model_dir / "checksums.json").write_text(content)
    one_line_error(translate(model_dir), *words)


def test_a_model_directory_of_format_3_still_loads_and_checks_its_weights(trained, tmp_path):
    """Format 3 recorded only the weights' sha256: its config.json is read unchecked."""
    model_dir = tmp_path / "model"
    shutil.copytree(trained, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "format_version": 3}))
    checksums = json.loads((model_dir / "checksums.json").read_text())
    (model_dir / "checksums.json").write_text(
        json.dumps({"model.weights.h5": checksums["model.weights.h5"]})
    )
    assert translate(model_dir).exit_code == 0
    (model_dir / "model.weights.h5").write_bytes(b"damaged")
    one_line_error(translate(model_dir), "model.weights.h5", "damaged")


@pytest.fixture(scope="module")
def prepared(numbers_corpus, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prepared") / "corpus"
    result = CliRunner().invoke(
        main,
        [
            "prepare",
            str(numbers_corpus / "train.en"),
            str(numbers_corpus / "train.de"),
            str(path),
            "--vocab-size",
            "120",
        ],
    )
    assert result.exit_code == 0, result.output
    return path


def damaged_copy(prepared: Path, folder: Path) -> Path:
    copy = folder / "corpus"
    shutil.copytree(prepared, copy)
    return copy


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda m: [m], "not an object"),
        (lambda m: {**m, "pairs": "many"}, "pairs"),
        (lambda m: {k: v for k, v in m.items() if k != "tokens"}, "tokens"),
        (lambda m: {**m, "files": {"source": 1}}, "files.source"),
        (lambda m: {**m, "ids_dtype": "f8"}, "ids_dtype"),
        (lambda m: {**m, "settings": {"colour": 1}}, "settings"),
    ],
)
def test_a_reshaped_prepared_json_is_refused(prepared, tmp_path, change, words):
    corpus = damaged_copy(prepared, tmp_path)
    manifest = corpus / "prepared.json"
    manifest.write_text(json.dumps(change(json.loads(manifest.read_text()))))
    with pytest.raises(ValueError, match=words) as caught:
        PreparedCorpus(corpus).pairs()
    assert "prepared.json" in str(caught.value)


def test_four_bytes_overwritten_in_the_ids_are_refused_by_the_cli(prepared, tmp_path):
    corpus = damaged_copy(prepared, tmp_path)
    ids = corpus / "source.ids"
    data = bytearray(ids.read_bytes())
    data[10:14] = b"\x05\x00\x06\x00"  # inside the vocabulary: only the sha256 sees it
    ids.write_bytes(bytes(data))
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(corpus),
            "--model-dir",
            str(tmp_path / "m"),
            "--epochs",
            "1",
            "--hidden-size",
            "16",
            "--embedding-dim",
            "8",
            "--quiet",
        ],
    )
    one_line_error(result, "source.ids", "damaged")


def test_ids_outside_the_vocabulary_are_refused_where_no_sha256_was_recorded(prepared, tmp_path):
    corpus = damaged_copy(prepared, tmp_path)
    manifest = json.loads((corpus / "prepared.json").read_text())
    del manifest["arrays_sha256"]  # as format 1 wrote it
    (corpus / "prepared.json").write_text(json.dumps({**manifest, "format": 1}))
    ids = np.fromfile(corpus / "target.ids", "<u2")
    ids[3] = 60000
    ids.tofile(corpus / "target.ids")
    pairs = PreparedCorpus(corpus).pairs()
    with pytest.raises(ValueError, match="target.ids: damaged: id 60000"):
        for index in range(len(pairs)):
            pairs.target(index)


def test_offsets_that_do_not_follow_the_lengths_are_refused(prepared, tmp_path):
    corpus = damaged_copy(prepared, tmp_path)
    manifest = json.loads((corpus / "prepared.json").read_text())
    del manifest["arrays_sha256"]
    (corpus / "prepared.json").write_text(json.dumps({**manifest, "format": 1}))
    offsets = np.fromfile(corpus / "source.offsets", "<i8")
    offsets[5] += 1
    offsets.tofile(corpus / "source.offsets")
    with pytest.raises(ValueError, match="source.offsets: damaged"):
        PreparedCorpus(corpus).pairs()


def test_more_hostile_cases_are_one_clear_line(trained, tmp_path):
    """From a hostile run: each was a traceback or an error without its file."""
    model_dir = tmp_path / "model"
    shutil.copytree(trained, model_dir)
    checksums = json.loads((model_dir / "checksums.json").read_text())
    (model_dir / "checksums.json").write_text(json.dumps({**checksums, "../x": ["0" * 64]}))
    one_line_error(translate(model_dir), "checksums.json", "'../x'")
    (model_dir / "checksums.json").write_text(json.dumps(checksums))
    # A value out of range, its checksum made to match: the error names the file.
    from seq2seq_shared.model_dir import ModelDir

    config = json.loads((model_dir / "config.json").read_text())
    config["model"]["hidden_size"] = -1
    ModelDir(model_dir).checksums.write(
        "config.json", lambda path: path.write_text(json.dumps(config))
    )
    one_line_error(translate(model_dir), "config.json", "hidden_size")
    # SentencePiece bytes that are no model, their sha256 made to match.
    shutil.rmtree(model_dir)
    shutil.copytree(trained, model_dir)
    garbage = b"not a sentencepiece model"
    (model_dir / "sentencepiece.model").write_bytes(garbage)
    import hashlib

    config = json.loads((model_dir / "config.json").read_text())
    config["vocab"]["sentencepiece_sha256"]["sentencepiece.model"] = hashlib.sha256(
        garbage
    ).hexdigest()
    ModelDir(model_dir).checksums.write(
        "config.json", lambda path: path.write_text(json.dumps(config))
    )
    one_line_error(translate(model_dir), "SentencePiece model cannot be read")
    one_line_error(translate(tmp_path / "model" / "config.json"), "a file, not a model directory")


def test_empty_test_files_and_a_damaged_checkpoint_are_clear_errors(trained, tmp_path):
    (tmp_path / "empty.en").write_text("")
    (tmp_path / "empty.de").write_text("")
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--model-dir",
            str(trained),
            "--source",
            str(tmp_path / "empty.en"),
            "--reference",
            str(tmp_path / "empty.de"),
            "-o",
            str(tmp_path / "out"),
        ],
    )
    one_line_error(result, "empty.en: empty")
    assert not (tmp_path / "out").exists()
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    newest = sorted((run / "checkpoints").glob("step-*.npz"))[-1]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    result = CliRunner().invoke(
        main, ["average", "--model-dir", str(run), "--last", "1", "--output", str(tmp_path / "avg")]
    )
    one_line_error(result, newest.name, "unreadable")
