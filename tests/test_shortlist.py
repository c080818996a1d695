"""The vocabulary shortlist: built from parallel text, it holds the pieces the training
targets use; decoding with a shortlist that holds every piece equals decoding without."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seq2seq_shared.cli import main
from seq2seq_shared.config import DecodeConfig
from seq2seq_shared.data.tokenizer import EOS_ID, UNK_ID


def invoke(*arguments, input: str | None = None):
    return CliRunner().invoke(main, [str(a) for a in arguments], input=input)


@pytest.fixture(scope="module")
def releases(trained, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("shortlist-releases")
    made = {}
    for runtime, precision in (("numpy", "float32"), ("onnx", "float32"), ("onnx", "int8")):
        made[f"{runtime}-{precision}"] = folder / f"{runtime}-{precision}"
        result = invoke("release", "--model-dir", trained, "--out", made[f"{runtime}-{precision}"],
                        "--precision", precision, "--runtime", runtime)  # fmt: skip
        assert result.exit_code == 0, result.output
    return made


def test_candidates_are_the_pieces_a_source_piece_co_occurs_with():
    from seq2seq_shared.runtime.shortlist import build, coverage

    # Source piece 5 comes with target 9, piece 6 with target 11; 10 is everywhere.
    pairs = [([5, 7], [9, 10]), ([5, 8], [9, 10]), ([6, 7], [11, 10]), ([6], [11, 10])]
    shortlist = build(pairs, target_vocab_size=12, frequent=1, per_source=1)
    assert shortlist.frequent.tolist() == [10]  # the most frequent target piece
    assert shortlist.candidates[5].tolist() == [9] and shortlist.candidates[6].tolist() == [11]
    assert shortlist.for_sources(np.array([[5, 0]])).tolist() == sorted({UNK_ID, EOS_ID, 9, 10})
    assert coverage(shortlist, pairs) == 100.0
    fewer = build(pairs, target_vocab_size=12, frequent=0, per_source=1)
    # 10 is now held only where piece 7 is there to propose it (7's best partner: 10 is
    # in both of 7's pairs): in 2 of the 4 pairs, so 6 of the 8 pieces are held.
    assert fewer.candidates[7].tolist() == [10]
    assert coverage(fewer, pairs) == 75.0


def test_the_command_reports_coverage_and_the_release_takes_it_along(
    trained, numbers_corpus, tmp_path
):
    copy = tmp_path / "model"
    shutil.copytree(trained, copy)
    result = invoke("shortlist", "--model-dir", copy, numbers_corpus / "train.en",
                    numbers_corpus / "train.de", "--frequent", "10", "--per-source", "5")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "of their target pieces" in result.output and (copy / "shortlist.npz").is_file()
    release = tmp_path / "release"
    assert invoke("release", "--model-dir", copy, "--out", release).exit_code == 0
    assert (release / "shortlist.npz").read_bytes() == (copy / "shortlist.npz").read_bytes()
    result = invoke("translate", "--model-dir", release, "--shortlist", input="seven\n")
    assert result.exit_code == 0, result.output
    result = invoke("translate", "--model-dir", copy, "--shortlist", input="seven\n")
    assert result.exit_code == 1 and "seq2seq-shared release" in result.output  # (Keras)


@pytest.mark.parametrize("release", ["numpy-float32", "onnx-float32"])
@pytest.mark.parametrize("search", [DecodeConfig(), DecodeConfig(beam_size=3, n_best=2)])
def test_a_shortlist_holding_every_piece_changes_nothing(
    releases, numbers_corpus, tmp_path, release, search
):
    import dataclasses

    from seq2seq_shared.model_dir import ModelDir
    from seq2seq_shared.runtime import load_translator
    from seq2seq_shared.runtime.shortlist import Shortlist

    copy = tmp_path / "release"
    shutil.copytree(releases[release], copy)
    vocab = json.loads((copy / "config.json").read_text())["vocab"]["target_vocab_size"]
    every = Shortlist(np.arange(vocab), np.full((1, 1), -1)).to_bytes()
    ModelDir(copy).checksums.write("shortlist.npz", lambda path: path.write_bytes(every))
    lines = (numbers_corpus / "train.en").read_text().splitlines()[::4] + [""]
    full = load_translator(copy, search).translate_details(lines, scores=True)
    with_shortlist = dataclasses.replace(search, shortlist=True)
    short = load_translator(copy, with_shortlist).translate_details(lines, scores=True)
    assert [t.text for t in short] == [t.text for t in full]
    for a, b in zip(short, full, strict=True):
        assert [h["translation"] for h in a.hypotheses] == [h["translation"] for h in b.hypotheses]
        assert [h["log_prob"] for h in a.hypotheses] == pytest.approx(
            [h["log_prob"] for h in b.hypotheses], abs=1e-4
        )


def test_greedy_search_with_a_shortlist_holding_its_choices_chooses_the_same(
    releases, numbers_corpus, tmp_path
):
    """A strict subset of the vocabulary that holds every piece the full search chose:
    the columns map back to the right pieces, so greedy search chooses the same."""
    from seq2seq_shared.model_dir import ModelDir
    from seq2seq_shared.runtime import LoadedRelease
    from seq2seq_shared.runtime.shortlist import Shortlist

    copy = tmp_path / "release"
    shutil.copytree(releases["onnx-float32"], copy)
    lines = (numbers_corpus / "train.en").read_text().splitlines()
    loaded = LoadedRelease(copy)
    full = loaded.translator().decoder.search(loaded.tokenizer.encode_source(lines))
    chosen = sorted({piece for found in full for piece in found[0].ids})
    vocab = loaded.network.target_vocab_size
    some = Shortlist(np.array(chosen + [vocab - 1]), np.full((1, 1), -1)).to_bytes()
    assert len(chosen) + 3 < vocab  # (a strict subset)
    ModelDir(copy).checksums.write("shortlist.npz", lambda path: path.write_bytes(some))
    loaded = LoadedRelease(copy)
    short = loaded.translator(DecodeConfig(shortlist=True)).decoder.search(
        loaded.tokenizer.encode_source(lines)
    )
    assert [found[0].ids for found in short] == [found[0].ids for found in full]


def test_a_shortlist_of_the_training_targets_holds_them_all(releases, numbers_corpus, tmp_path):
    """Every target piece the training data uses, frequent enough, is held (coverage
    100%); an int8 ONNX release decodes with it (its shortlisted logits are float32)."""
    from seq2seq_shared.runtime import load_translator

    copy = tmp_path / "release"
    shutil.copytree(releases["onnx-int8"], copy)
    vocab = json.loads((copy / "config.json").read_text())["vocab"]["target_vocab_size"]
    result = invoke("shortlist", "--model-dir", copy, numbers_corpus / "train.en",
                    numbers_corpus / "train.de", "--frequent", vocab)  # fmt: skip
    assert result.exit_code == 0 and "hold 100.0%" in result.output, result.output
    lines = (numbers_corpus / "train.en").read_text().splitlines()
    full = load_translator(copy).translate(lines)
    short = load_translator(copy, DecodeConfig(shortlist=True)).translate(lines)
    assert len(short) == len(lines)
    assert sum(a == b for a, b in zip(short, full, strict=True)) >= 0.9 * len(lines)


def test_a_missing_or_damaged_shortlist_is_refused(releases, numbers_corpus, tmp_path):
    copy = tmp_path / "release"
    shutil.copytree(releases["numpy-float32"], copy)
    result = invoke("translate", "--model-dir", copy, "--shortlist", input="seven\n")
    assert result.exit_code == 1 and "seq2seq-shared shortlist --model-dir" in result.output
    invoke("shortlist", "--model-dir", copy, numbers_corpus / "train.en",
           numbers_corpus / "train.de")  # fmt: skip
    data = bytearray((copy / "shortlist.npz").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "shortlist.npz").write_bytes(bytes(data))
    result = invoke("translate", "--model-dir", copy, "--shortlist", input="seven\n")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    uneven = tmp_path / "uneven.de"
    uneven.write_text("eins\n")
    result = invoke("shortlist", "--model-dir", copy, numbers_corpus / "train.en", uneven)
    assert result.exit_code == 1 and "ends after 1 lines" in result.output


def test_the_server_engine_decodes_with_a_shortlist(releases, trained, numbers_corpus, tmp_path):
    from seq2seq_shared.serve.engine import Engine, Options

    copy = tmp_path / "release"
    shutil.copytree(releases["numpy-float32"], copy)
    invoke("shortlist", "--model-dir", copy, numbers_corpus / "train.en",
           numbers_corpus / "train.de")  # fmt: skip
    engine = Engine(copy, shortlist=True)
    assert engine.translator(Options()).decoder.shortlist is not None
    results = engine.translate(["seven", "", "twelve"], Options())
    assert len(results) == 3 and results[1]["text"] == ""
    with pytest.raises(ValueError, match="runs on a release"):
        Engine(trained, shortlist=True)
