"""Attention on the shared LSTM and the role signal: the maths, padding, the one set of
LSTM weights, alignments, and old model directories loading as before."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from seq2seq_shared.decoding.decoder import Decoder  # noqa: E402
from seq2seq_shared.model.parameters import expected_parameter_count  # noqa: E402
from tests.test_model import SHAPE, H, V, build, random_ids, randomize  # noqa: E402

FIXTURES = Path(__file__).parent / "data"


@pytest.mark.parametrize("kind", ["dot", "general"])
def test_weights_sum_to_one_on_real_positions_and_are_exactly_zero_on_padding(kind):
    model = build(attention=kind, reverse_source=True)
    randomize(model)
    source = random_ids(3, 9, seed=1)
    source[2, 4:] = 0
    target_input = random_ids(3, 6, seed=2)
    encoded = model.encode(source)
    _, weights = model.decoder_states(target_input, encoded, return_attention=True)
    weights = ops.convert_to_numpy(weights)  # (batch, target_len, source_len)
    real = source != 0
    assert weights.shape == (3, 6, 9)
    assert (weights[~np.broadcast_to(real[:, None, :], weights.shape)] == 0.0).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    assert (weights[real[:, None, :].repeat(6, 1)] > 0).all()
    assert weights.std() > 0.02  # not uniform: the scores matter


@pytest.mark.parametrize(
    "options",
    [
        {"attention": "dot"},
        {
            "attention": "general",
            "reverse_source": True,
            "feed_context": True,
            "role_signal": "bias",
        },
    ],
)
def test_padding_the_source_further_changes_no_logit(options):
    model = build(**options)
    randomize(model)
    source, target_input = random_ids(3, 7, seed=3), random_ids(3, 5, seed=4)
    logits = ops.convert_to_numpy(model({"source": source, "target_input": target_input}))
    padded = np.pad(source, ((0, 0), (0, 6)))
    again = ops.convert_to_numpy(model({"source": padded, "target_input": target_input}))
    assert logits.std() > 0.25
    np.testing.assert_allclose(again, logits, rtol=1e-6, atol=1e-6)


def test_memory_is_in_natural_order_when_the_source_is_read_backwards():
    """The alignment's columns are the source's pieces as written, whichever way it is read:
    a model reading backwards gives, position by position, the memory a forward reader of
    the reversed sentence has at the mirrored position."""
    backwards = build(attention="dot", reverse_source=True)
    forwards = build(attention="dot")  # the same seed: the same weights
    source = np.array([[5, 6, 7, 0], [8, 9, 10, 11]], dtype="int32")
    by_hand = np.array([[7, 6, 5, 0], [11, 10, 9, 8]], dtype="int32")
    mine = ops.convert_to_numpy(backwards.encode(source)["memory"])
    reference = ops.convert_to_numpy(forwards.encode(by_hand)["memory"])
    np.testing.assert_allclose(mine[0, :3], reference[0, 2::-1], rtol=1e-6)
    np.testing.assert_allclose(mine[1], reference[1, ::-1], rtol=1e-6)


@pytest.mark.parametrize("role_signal", ["none", "bias", "embedding"])
def test_one_set_of_lstm_weights_and_the_formula_counts_attention_and_roles(role_signal):
    model = build(attention="general", role_signal=role_signal, num_layers=2)
    for encoder_lstm, decoder_lstm in zip(model.encoder_lstms, model.decoder_lstms, strict=True):
        assert encoder_lstm is decoder_lstm
    lstm_paths = [v.path for v in model.trainable_variables if "lstm" in v.path]
    assert len(lstm_paths) == 2 * 3 == len(set(lstm_paths))
    plain = build(num_layers=2).count_params()
    roles = {"none": 0, "bias": 2 * 2 * 4 * H, "embedding": 2 * SHAPE["embedding_dim"]}
    # W_c (2H x H) and W_a (H x H), and the roles' parameters, by hand.
    assert model.count_params() == plain + 3 * H * H + roles[role_signal]
    assert model.count_params() == expected_parameter_count(
        **{**SHAPE, "num_layers": 2, "attention": "general", "role_signal": role_signal}
    )


def test_role_signals_change_the_model_only_once_learned():
    """They start at zero (the model starts as one without them), and a learned role
    changes what each side computes."""
    plain = build(attention="dot")
    inputs = {"source": random_ids(2, 5, 1), "target_input": random_ids(2, 4, 2)}
    for kind in ("bias", "embedding"):
        model = build(attention="dot", role_signal=kind)
        assert np.array_equal(
            ops.convert_to_numpy(model(inputs)), ops.convert_to_numpy(plain(inputs))
        )
        for variable in model.roles.weights:
            variable.assign(np.random.default_rng(0).normal(size=variable.shape))
        assert not np.allclose(
            ops.convert_to_numpy(model(inputs)), ops.convert_to_numpy(plain(inputs))
        )


def test_greedy_alignments_match_the_teacher_forced_weights():
    """The weights the search returns for each output piece are those the model gives
    when it is fed that output under teacher forcing; batching changes none of them."""
    model = build(attention="general", feed_context=True, reverse_source=True)
    randomize(model, scale=0.3)
    rng = np.random.default_rng(8)
    sources = [rng.integers(4, V, size=n).tolist() for n in (5, 0, 9, 3, 7)]
    decoder = Decoder(model)
    targets, alignments = decoder.decode(sources, 5, alignments=True)
    assert decoder.decode(sources, 2) == targets
    for source, target, weights in zip(sources, targets, alignments, strict=True):
        if not source:
            assert target == [] and weights.shape == (0, 0)
            continue
        assert weights.shape[1] == len(source)
        assert weights.shape[0] in (len(target), len(target) + 1)  # eos, unless the limit
        alone = decoder.decode([source], 1, alignments=True)[1][0]
        np.testing.assert_allclose(weights, alone, atol=1e-6)
        target_input = np.array([[2] + target], dtype="int32")
        _, forced = model.decoder_states(
            target_input, model.encode(np.array([source])), return_attention=True
        )
        np.testing.assert_allclose(weights, ops.convert_to_numpy(forced)[0], atol=1e-5)


def test_a_format_2_model_directory_loads_and_translates_as_before(tmp_path):
    """tests/data/format2_model was written by the version before attention (format 2):
    its logits and translations are those recorded then."""
    from seq2seq_shared.decoding.translator import Translator
    from seq2seq_shared.model_dir import ModelDir

    model_dir = tmp_path / "old"
    shutil.copytree(FIXTURES / "format2_model", model_dir)
    assert json.loads((model_dir / "config.json").read_text())["format_version"] == 2
    directory = ModelDir(model_dir)
    assert directory.read_config().model.attention == "none"
    model, tokenizer, config = directory.load_model()
    assert model.attention is None and model.roles is None
    recorded = np.load(FIXTURES / "format2_model.logits.npz")
    logits = model({"source": recorded["source"], "target_input": recorded["target_input"]})
    np.testing.assert_allclose(ops.convert_to_numpy(logits), recorded["logits"], atol=1e-5)
    lines = (Path(__file__).parents[1] / "data" / "test.de").read_text().splitlines()[:20]
    expected = (FIXTURES / "format2_model.expected.en").read_text().splitlines()
    assert Translator(model, tokenizer, config.model).translate(lines) == expected


def test_train_translate_alignments_and_info_through_the_cli(numbers_corpus, tmp_path):
    from click.testing import CliRunner
    from conftest import TINY

    from seq2seq_shared.cli import main

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    model_dir = tmp_path / "attention"
    result = run(
        "train",
        numbers_corpus / "train.en",
        numbers_corpus / "train.de",
        "--model-dir",
        model_dir,
        *TINY,
        "--attention",
        "general",
        "--role-signal",
        "bias",
    )
    assert result.exit_code == 0, result.output
    source = tmp_path / "in.txt"
    source.write_text("one hundred\n\ntwelve\n", encoding="utf-8")
    output, alignments = tmp_path / "out.txt", tmp_path / "align.jsonl"
    result = run(
        "translate",
        "--model-dir",
        model_dir,
        "-i",
        source,
        "-o",
        output,
        "--alignments",
        alignments,
    )
    assert result.exit_code == 0, result.output
    translations = output.read_text(encoding="utf-8").split("\n")[:-1]
    records = [json.loads(line) for line in alignments.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(translations) == 3
    assert records[1] == {"source": [], "target": [], "weights": []}
    for record, translation in zip(records[::2], translations[::2], strict=True):
        weights = np.array(record["weights"])
        assert weights.shape == (len(record["target"]), len(record["source"]))
        pieces = [p for p in record["target"] if p != "</s>"]  # eos, unless the limit hit
        assert "".join(pieces).replace("\u2581", " ").strip() == translation
        np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-3)  # rounded to 4 places

    result = run("info", "--model-dir", model_dir, "--json")
    rows = {row["name"]: row for row in json.loads(result.stdout)["components"]}
    assert rows["attention/score"]["parameters"] == rows["attention/combine"]["parameters"] / 2
    assert rows["role_signal"]["parameters"] == 2 * 4 * 32
    assert json.loads(result.stdout)["total"] == json.loads(result.stdout)["formula"]

    shutil.copytree(FIXTURES / "format2_model", tmp_path / "plain")  # no attention
    result = run(
        "translate", "--model-dir", tmp_path / "plain", "-i", source, "--alignments", alignments
    )
    assert result.exit_code == 2 and "has no attention" in result.output
