"""`prepare`: the corpus checked, tokenized and encoded once into memory-mapped arrays, and
`train` reading them; text files go through the same path (into MODEL_DIR/prepared-corpus)."""

import hashlib
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY

from seq2seq_shared.cli import main
from seq2seq_shared.data import prepare as prepare_module
from seq2seq_shared.data import prepared as prepared_module
from seq2seq_shared.data.batches import ParallelBatches, round_up
from seq2seq_shared.data.encoded import EncodedPairs
from seq2seq_shared.data.prepared import PreparedCorpus
from seq2seq_shared.training import checkpoint

# prepare's options matching TINY's training settings (--vocab-size 120, default seed and
# lengths), so that a prepared run and a text-file run see the same ids.
PREPARE_TINY = ["--vocab-size", "120"]


def invoke(*arguments):
    return CliRunner().invoke(main, [str(a) for a in arguments])


def write(path, lines):
    path.write_bytes(b"".join((x.encode() if isinstance(x, str) else x) + b"\n" for x in lines))
    return path


def test_prepare_encodes_the_kept_pairs_with_their_lines_and_the_files_sha256(tmp_path):
    source = write(tmp_path / "a.en", ["one two", "", "three", "one two", "five six seven"])
    target = write(tmp_path / "b.de", ["eins zwei", "zwei", "drei", "eins zwei", "fuenf"])
    result = invoke("prepare", source, target, tmp_path / "prepared", "--vocab-size", "40")
    assert result.exit_code == 0, result.output
    corpus = PreparedCorpus(tmp_path / "prepared")
    assert corpus.data_sha256 == {
        "train_source": hashlib.sha256(source.read_bytes()).hexdigest(),
        "train_target": hashlib.sha256(target.read_bytes()).hexdigest(),
    }
    record = corpus.manifest["check"]
    assert record["dropped"]["with an empty side"]["first_lines"] == [2]
    assert record["duplicates"]["first_lines"] == [4]
    pairs, tokenizer = corpus.pairs(), corpus.tokenizer()
    assert isinstance(pairs.source_offsets, np.memmap)  # read as batches ask, not loaded
    kept = [
        ("one two", "eins zwei"),
        ("three", "drei"),
        ("one two", "eins zwei"),
        ("five six seven", "fuenf"),
    ]
    assert len(pairs) == len(corpus) == 4
    for i, (source_text, target_text) in enumerate(kept):
        assert pairs.source(i).tolist() == tokenizer.encode_source([source_text])[0]
        assert pairs.target(i).tolist() == tokenizer.encode_target([target_text])[0]
        assert pairs.lengths[i].tolist() == [len(pairs.source(i)), len(pairs.target(i))]
    lines = np.fromfile(tmp_path / "prepared" / "lines", dtype="<i4")
    assert lines.tolist() == [1, 3, 4, 5]


def test_prepare_refuses_a_bad_corpus_with_check_datas_file_line_and_leaves_nothing(tmp_path):
    source = write(tmp_path / "a.en", ["one", b"caf\xe9", "three"])
    target = write(tmp_path / "b.de", ["eins", "zwei", "drei"])
    result = invoke("prepare", source, target, tmp_path / "prepared")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{source}:2:4: invalid UTF-8" in result.output and "iconv" in result.output
    assert not (tmp_path / "prepared").exists()
    assert not list(tmp_path.glob(".prepared*"))
    write(tmp_path / "a.en", ["one", "two"])
    result = invoke("prepare", source, target, tmp_path / "prepared")
    assert result.exit_code == 1 and "a.en has 2 lines but" in result.output


def test_a_killed_prepare_leaves_the_previous_data_whole(tmp_path, monkeypatch):
    source = write(tmp_path / "a.en", [f"line {i}" for i in range(50)])
    target = write(tmp_path / "b.de", [f"Zeile {i}" for i in range(50)])
    assert (
        invoke("prepare", source, target, tmp_path / "prepared", "--vocab-size", "30").exit_code
        == 0
    )
    before = (tmp_path / "prepared" / "prepared.json").read_bytes()

    def killed(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module._ArrayWriter, "_flush", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare_module.prepare(
            source,
            target,
            tmp_path / "prepared",
            prepared_module.PrepareSettings(vocab_size=30),
            overwrite=True,
        )
    assert (tmp_path / "prepared" / "prepared.json").read_bytes() == before
    assert not list(tmp_path.glob(".prepared*"))
    assert len(PreparedCorpus(tmp_path / "prepared").pairs()) == 50


@pytest.mark.slow
def test_training_on_a_prepared_directory_equals_training_on_the_files(numbers_corpus, tmp_path):
    source, target = numbers_corpus / "train.en", numbers_corpus / "train.de"
    assert invoke("prepare", source, target, tmp_path / "prepared", *PREPARE_TINY).exit_code == 0
    from_files = invoke("train", source, target, "--model-dir", tmp_path / "files", *TINY)
    from_prepared = invoke(
        "train", tmp_path / "prepared", "--model-dir", tmp_path / "prepared_run", *TINY
    )
    assert from_files.exit_code == 0, from_files.output
    assert from_prepared.exit_code == 0, from_prepared.output
    vocabularies = [
        PreparedCorpus(path).manifest["sentencepiece_sha256"]
        for path in (tmp_path / "files" / "prepared-corpus", tmp_path / "prepared")
    ]
    assert vocabularies[0] == vocabularies[1]
    files, files_state = checkpoint.read(
        sorted((tmp_path / "files" / "checkpoints").glob("*.npz"))[-1]
    )
    prepared, prepared_state = checkpoint.read(
        sorted((tmp_path / "prepared_run" / "checkpoints").glob("*.npz"))[-1]
    )
    assert files_state["data_sha256"] == prepared_state["data_sha256"]
    assert files_state["step"] == prepared_state["step"] == 8
    assert sorted(files) == sorted(prepared)
    for key in files:  # the same batches in the same order: the same weights
        np.testing.assert_array_equal(files[key], prepared[key], err_msg=key)


@pytest.mark.slow
def test_resuming_never_reads_the_corpus_again(numbers_corpus, tmp_path, monkeypatch):
    source, target = numbers_corpus / "train.en", numbers_corpus / "train.de"
    model_dir = tmp_path / "model"
    first = invoke("train", source, target, "--model-dir", model_dir, *TINY, "--epochs", "1")
    assert first.exit_code == 0, first.output

    def no_reading(*arguments, **keywords):
        raise AssertionError("the corpus was read again")

    monkeypatch.setattr(prepare_module, "scan_corpus", no_reading)
    monkeypatch.setattr(prepared_module, "file_sha256", no_reading)
    resumed = invoke("train", source, target, "--model-dir", model_dir, *TINY, "--epochs", "2")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.output.splitlines()[-1])["epoch"] == 2.0


def test_a_prepared_directory_must_be_one_and_usage_errors_exit_2(tmp_path):
    result = invoke("train", tmp_path / "missing", "--model-dir", tmp_path / "m")
    assert result.exit_code == 2 and "a single path must be a directory" in result.output
    (tmp_path / "empty").mkdir()
    result = invoke("train", tmp_path / "empty", "--model-dir", tmp_path / "m", *TINY)
    assert result.exit_code == 1 and "is not a prepared corpus" in result.output


def _plan_one_pair_at_a_time(lengths, batch_tokens, multiple, seed):
    """The free-shape plan written as a plain loop (the implementation before prepare)."""
    targets, sources = lengths[:, 1] + 1, lengths[:, 0]
    jitter = np.random.default_rng(seed).random(len(lengths))
    order = np.lexsort((jitter, sources, targets))
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order):
            if (end - start + 1) * round_up(int(targets[order[end]]), multiple) > batch_tokens:
                break
            end += 1
        batches.append(order[start:end].tolist())
        start = end
    return batches


@pytest.mark.parametrize("batch_tokens, multiple", [(64, 8), (300, 1), (4096, 8), (20, 8)])
def test_the_vectorised_plan_equals_the_loop_it_replaced(batch_tokens, multiple):
    rng = np.random.default_rng(batch_tokens)
    lengths = rng.integers(1, 60, size=(3000, 2))
    pairs = EncodedPairs(
        np.zeros(0, np.int32),
        np.zeros(3001, np.int64),
        np.zeros(0, np.int32),
        np.zeros(3001, np.int64),
        lengths=lengths,
    )
    batches = ParallelBatches(pairs, batch_tokens=batch_tokens, seed=3, multiple=multiple)
    assert [b.tolist() for b in batches.batches] == _plan_one_pair_at_a_time(
        lengths, batch_tokens, multiple, seed=3
    )


@pytest.mark.slow
def test_a_run_saved_before_prepared_data_resumes_with_its_own_vocabulary(numbers_corpus, tmp_path):
    source, target = numbers_corpus / "train.en", numbers_corpus / "train.de"
    model_dir = tmp_path / "model"
    assert (
        invoke("train", source, target, "--model-dir", model_dir, *TINY, "--epochs", "1").exit_code
        == 0
    )
    shutil.rmtree(model_dir / "prepared-corpus")  # as the previous version left its directories
    resumed = invoke("train", source, target, "--model-dir", model_dir, *TINY)
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.output.splitlines()[-1])["epoch"] == 2.0
    recorded = json.loads((model_dir / "config.json").read_text())["vocab"]
    assert (
        PreparedCorpus(model_dir / "prepared-corpus").manifest["sentencepiece_sha256"]
        == recorded["sentencepiece_sha256"]
    )  # encoded with the run's SentencePiece model


def test_overwrite_never_deletes_a_folder_that_is_not_ours(numbers_corpus, tmp_path):
    source, target = numbers_corpus / "train.en", numbers_corpus / "train.de"
    users = tmp_path / "mine"
    users.mkdir()
    (users / "notes.txt").write_text("keep me")
    result = invoke("prepare", source, target, users, "--overwrite")
    assert result.exit_code == 1 and "not a prepared corpus" in result.output
    model_dir = tmp_path / "model"
    (model_dir / "prepared-corpus").mkdir(parents=True)
    (model_dir / "prepared-corpus" / "notes.txt").write_text("keep me too")
    result = invoke("train", source, target, "--model-dir", model_dir, *TINY, "--overwrite")
    assert result.exit_code == 1 and "move it out of the model directory" in result.output
    assert (users / "notes.txt").exists() and (model_dir / "prepared-corpus" / "notes.txt").exists()
