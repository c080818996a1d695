"""Ensembles at decode time (`translate --model-dir A --model-dir B`): the members'
log-probabilities averaged at every step, greedy and beam."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seq2seq_shared.cli import main
from seq2seq_shared.config import DecodeConfig

SEARCHES = [DecodeConfig(), DecodeConfig(beam_size=3, n_best=2)]
SEARCH_IDS = ["greedy", "beam 3, n-best 2"]


@pytest.fixture(scope="module")
def members(trained, tmp_path_factory) -> dict[str, Path]:
    from seq2seq_shared.runtime.release import write_release

    folder = tmp_path_factory.mktemp("members")
    made = {"model": trained}
    for runtime, precision in (("numpy", "float32"), ("numpy", "int8"), ("onnx", "int8")):
        made[f"{runtime}-{precision}"] = folder / f"{runtime}-{precision}"
        write_release(trained, made[f"{runtime}-{precision}"], precision, runtime)
    return made


def lines_of(numbers_corpus) -> list[str]:
    return (numbers_corpus / "train.en").read_text().splitlines()


def details(translator, lines):
    return [
        [(h["translation"], h["log_prob"]) for h in t.hypotheses]
        for t in translator.translate_details(lines, scores=True)
    ]


@pytest.mark.parametrize("search", SEARCHES, ids=SEARCH_IDS)
def test_an_ensemble_of_one_model_is_that_model(members, numbers_corpus, search):
    """A trained model directory in an ensemble runs on the NumPy network, as its float32
    release does: the same hypotheses and log-probabilities."""
    from seq2seq_shared.runtime import load_translator
    from seq2seq_shared.runtime.ensemble import load_ensemble

    lines = lines_of(numbers_corpus)
    alone = details(load_translator(members["numpy-float32"], search), lines)
    assert_same(details(load_ensemble([members["model"]], search), lines), alone)
    assert_same(details(load_ensemble([members["numpy-float32"]] * 2, search), lines), alone)


def assert_same(found: list, expected: list) -> None:
    """The same hypotheses, their log-probabilities within float32 rounding (an
    ensemble renormalizes what is already normalized)."""
    assert [[text for text, _ in line] for line in found] == [
        [text for text, _ in line] for line in expected
    ]
    for x, y in zip(found, expected, strict=True):
        for a, b in zip(x, y, strict=True):
            assert a[1] == pytest.approx(b[1], abs=1e-4)


def test_an_ensemble_averages_its_members_log_probabilities(members):
    from seq2seq_shared.runtime import LoadedRelease
    from seq2seq_shared.runtime.ensemble import Ensemble

    a = LoadedRelease(members["numpy-float32"]).network
    b = LoadedRelease(members["onnx-int8"]).network
    ensemble = Ensemble([a, b])
    source = np.array([[5, 6, 7, 3], [8, 9, 0, 0]])
    encoded = ensemble.encode(source)
    token = np.array([2, 2])
    log_probs, states = ensemble.decode_step(token, encoded["states"], ensemble.constants(encoded))
    own = [
        net.decode_step(token, net.encode(source)["states"], net.constants(net.encode(source)))[0]
        for net in (a, b)
    ]
    mean = (own[0] + own[1]) / 2
    expected = mean - np.log(np.exp(mean).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(log_probs, expected, atol=1e-5)
    assert len(states) == a.layers + b.layers


@pytest.mark.parametrize("search", SEARCHES, ids=SEARCH_IDS)
def test_batch_and_order_do_not_change_an_ensemble(members, numbers_corpus, search):
    from seq2seq_shared.runtime.ensemble import load_ensemble

    lines = lines_of(numbers_corpus)[::3]
    ensemble = load_ensemble([members["model"], members["numpy-int8"]], search)
    whole = ensemble.translate(lines, batch_size=64)
    assert ensemble.translate(lines, batch_size=1) == whole
    assert ensemble.translate(lines[::-1], batch_size=7)[::-1] == whole


def test_translate_takes_several_model_dirs(members, tmp_path, numbers_corpus):
    arguments = ["translate", "--model-dir", str(members["model"])]
    arguments += ["--model-dir", str(members["onnx-int8"]), "--beam-size", "3", "--n-best", "2"]
    result = CliRunner().invoke(main, arguments, input="seven\n\ntwelve\n")
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert len(out) == 3 and len(json.loads(out[0])["hypotheses"]) == 2
    result = CliRunner().invoke(
        main, [*arguments[:5], "--alignments", str(tmp_path / "a.jsonl")], input="seven\n"
    )
    assert result.exit_code == 2 and "ensemble" in result.output


def test_members_with_different_sentencepiece_models_are_refused(members, tmp_path):
    import shutil

    from seq2seq_shared.model_dir import ModelDir

    other = tmp_path / "other"
    shutil.copytree(members["numpy-int8"], other)
    document = ModelDir(other).read_config_document()
    document["vocab"]["sentencepiece_sha256"] = {"sentencepiece.model": "0" * 64}
    ModelDir(other).checksums.write(
        "config.json", lambda path: path.write_text(json.dumps(document))
    )
    result = CliRunner().invoke(
        main,
        ["translate", "--model-dir", str(members["numpy-int8"]), "--model-dir", str(other)],
        input="seven\n",
    )
    assert result.exit_code == 1 and "different SentencePiece models" in result.output


def test_evaluate_takes_several_model_dirs(members, numbers_corpus):
    """`evaluate --model-dir A --model-dir B` scores the ensemble (not only B): two copies
    of one model score as that model, and an ensemble has no perplexity."""
    test_set = ["--source", str(numbers_corpus / "train.en"), "--json"]
    test_set += ["--reference", str(numbers_corpus / "train.de")]

    def scores(*model_dirs: Path) -> dict:
        arguments = ["evaluate", *(a for d in model_dirs for a in ("--model-dir", str(d)))]
        result = CliRunner().invoke(main, [*arguments, *test_set])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    one = scores(members["numpy-float32"])
    two = scores(members["numpy-float32"], members["numpy-float32"])
    assert two["bleu"] == one["bleu"] and two["perplexity"] is None
    mixed = scores(members["numpy-int8"], members["model"])  # the last alone has perplexity
    assert mixed["perplexity"] is None and scores(members["model"])["perplexity"] is not None
