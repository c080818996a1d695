"""Training options end to end through the CLI, on the tiny corpus and a shrunken config:
--separate-vocab, --validate-every, --best-metric loss, and TensorBoard output (or none)."""

import csv
import json
import os
import re

import pytest
from click.testing import CliRunner

from seq2seq_shared.cli import main

RUN = [
    "--embedding-dim",
    "16",
    "--hidden-size",
    "32",
    "--vocab-size",
    "120",
    "--batch-tokens",
    "256",
    "--quiet",
]


def run(*arguments, input=None):
    return CliRunner().invoke(
        main, [str(a) for a in arguments], input=input, catch_exceptions=False
    )


def train(source, target, model_dir, valid, *options):
    result = run(
        "train", source, target, "--model-dir", model_dir, "--valid", *valid, *RUN, *options
    )
    assert result.exit_code == 0, result.output
    return model_dir


def metrics(model_dir) -> list[dict]:
    with open(model_dir / "metrics.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def training_state(model_dir) -> dict:
    return json.loads((model_dir / "training_state.json").read_text(encoding="utf-8"))


def corpus_files(corpus):
    return corpus / "train.en", corpus / "train.de"


# --separate-vocab ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def separate_vocab(numbers_corpus, tmp_path_factory):
    """2 epochs (8 steps) with one SentencePiece model per language and no TensorBoard."""
    model_dir = tmp_path_factory.mktemp("separate") / "model"
    return train(
        *corpus_files(numbers_corpus),
        model_dir,
        corpus_files(numbers_corpus),
        "--separate-vocab",
        "--epochs",
        "2",
        "--no-tensorboard",
    )


def test_separate_vocab_writes_one_sentencepiece_model_per_language(separate_vocab):
    import sentencepiece

    names = {path.name for path in separate_vocab.iterdir()}
    assert {"source.model", "target.model"} <= names and "sentencepiece.model" not in names
    source, target = (
        sentencepiece.SentencePieceProcessor(model_file=str(separate_vocab / name))
        for name in ("source.model", "target.model")
    )
    source_pieces = {source.id_to_piece(i) for i in range(source.get_piece_size())}
    target_pieces = {target.id_to_piece(i) for i in range(target.get_piece_size())}
    # Each was trained on its own language only.
    assert "▁hundred" in source_pieces and not any("hundred" in p for p in target_pieces)
    assert not any("hundert" in p or "zig" in p for p in source_pieces)
    assert any("hundert" in p for p in target_pieces)
    saved = json.loads((separate_vocab / "config.json").read_text(encoding="utf-8"))
    assert saved["model"]["joint_vocab"] is False and saved["model"]["share_embeddings"] is False
    assert saved["vocab"]["source_vocab_size"] == source.get_piece_size()
    assert saved["vocab"]["target_vocab_size"] == target.get_piece_size()


def test_separate_vocab_translates_with_each_side_s_own_model(separate_vocab, numbers_corpus):
    """translate reads the source with source.model and writes with target.model: its output
    is what the loaded network gives on ids from one and decoded by the other."""
    import sentencepiece

    from seq2seq_shared.decoding.decoder import Decoder
    from seq2seq_shared.decoding.translator import Translator

    lines = ["one hundred twenty-one", "seven", "", "forty-two", "one hundred ninety-nine"]
    result = run("translate", "--model-dir", separate_vocab, input="".join(f"{x}\n" for x in lines))
    assert result.exit_code == 0, result.output
    output = result.stdout.split("\n")
    assert len(output) == len(lines) + 1 and output[-1] == "" and output[2] == ""
    output = output[:-1]

    source, target = (
        sentencepiece.SentencePieceProcessor(model_file=str(separate_vocab / name))
        for name in ("source.model", "target.model")
    )
    model = Translator.from_model_dir(separate_vocab).model
    decoded = Decoder(model).decode(source.encode(lines))
    assert output == [target.decode(ids) for ids in decoded]
    # The model writes something (so a wrong path shows), in German pieces only.
    assert sum(map(len, decoded)) > 0
    assert all(0 < i < target.get_piece_size() for ids in decoded for i in ids)
    english = set((numbers_corpus / "train.en").read_text(encoding="utf-8").split())
    assert not english & set(" ".join(output).split())


def test_info_reports_separate_embeddings(separate_vocab):
    report = json.loads(run("info", "--model-dir", separate_vocab, "--json").stdout)
    vocab = report["config"]["vocab"]
    rows = {row["name"]: row for row in report["components"] if "embedding" in row["name"]}
    assert set(rows) == {"source_embedding", "target_embedding"}
    assert rows["source_embedding"]["used_by"] == "encoder"
    assert rows["target_embedding"]["used_by"] == "decoder"
    assert rows["source_embedding"]["parameters"] == vocab["source_vocab_size"] * 16
    assert rows["target_embedding"]["parameters"] == vocab["target_vocab_size"] * 16
    assert vocab["source_vocab_size"] != vocab["target_vocab_size"]  # so the rows are told apart
    assert report["total"] == report["formula"]
    text = run("info", "--model-dir", separate_vocab).stdout
    assert re.search(r"source_embedding\s+[\d,]+\s+encoder\n", text)
    assert re.search(r"target_embedding\s+[\d,]+\s+decoder\n", text)


def test_no_tensorboard_writes_no_event_files(separate_vocab):
    assert not list(separate_vocab.rglob("events.out.tfevents*"))
    assert not (separate_vocab / "tensorboard").exists()


# --validate-every and TensorBoard ------------------------------------------------------------

VALIDATE_EVERY = 3


@pytest.fixture(scope="module")
def validated(numbers_corpus, tmp_path_factory):
    """3 epochs of 4 steps, validated every 3 steps, TensorBoard on (the default)."""
    model_dir = tmp_path_factory.mktemp("validated") / "model"
    return train(
        *corpus_files(numbers_corpus),
        model_dir,
        corpus_files(numbers_corpus),
        "--epochs",
        "3",
        "--validate-every",
        str(VALIDATE_EVERY),
    )


def test_validate_every_n_steps_validates_at_n_2n_and_so_on(validated):
    steps = training_state(validated)["step"]
    per_epoch = steps // 3
    # Validating at the ends of epochs instead would give other steps only if an epoch is
    # not a multiple of N.
    assert steps == 3 * per_epoch and per_epoch % VALIDATE_EVERY, per_epoch
    rows = metrics(validated)
    expected = list(range(VALIDATE_EVERY, steps + 1, VALIDATE_EVERY))
    if steps % VALIDATE_EVERY:
        expected.append(steps)  # the steps since the last validation, at the end
    assert [int(row["step"]) for row in rows] == expected
    assert all(row["valid_loss"] and row["valid_bleu"] for row in rows)
    assert [float(row["epoch"]) for row in rows][:2] == [
        round(VALIDATE_EVERY / per_epoch, 3),
        round(2 * VALIDATE_EVERY / per_epoch, 3),
    ]


def tensorboard_scalars(model_dir) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from every event file under MODEL_DIR/tensorboard."""
    import tensorflow as tf

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted((model_dir / "tensorboard").rglob("events.out.tfevents*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                number = (
                    float(tf.make_ndarray(value.tensor))
                    if value.HasField("tensor")
                    else value.simple_value
                )
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars


@pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="TensorBoard logs are written on the TensorFlow backend only",
)
def test_tensorboard_gets_every_validation_s_scalars(validated):
    assert list((validated / "tensorboard").rglob("events.out.tfevents*"))
    scalars = tensorboard_scalars(validated)
    assert {
        "train_loss",
        "train_ppl",
        "valid_loss",
        "valid_ppl",
        "valid_bleu",
        "valid_chrf",
        "learning_rate",
    } <= set(scalars)
    rows = metrics(validated)
    for tag in ("valid_loss", "train_loss", "valid_chrf", "learning_rate"):
        assert [step for step, _ in scalars[tag]] == [int(row["step"]) for row in rows], tag
        assert [value for _, value in scalars[tag]] == pytest.approx(
            [float(row[tag]) for row in rows], rel=1e-6
        ), tag


@pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="TensorBoard logs are written on the TensorFlow backend only",
)
def test_tensorboard_takes_a_perplexity_beyond_float32(tmp_path):
    from seq2seq_shared.training.tensorboard import tensorboard_writer

    writer = tensorboard_writer(tmp_path / "tensorboard")
    writer.scalars(1, {"valid_loss": 98.2, "valid_ppl": 4.3e42})  # seen in a wrecked run
    writer.close()
    assert tensorboard_scalars(tmp_path)["valid_ppl"][0][1] > 3e38


# --best-metric loss ---------------------------------------------------------------------------


@pytest.mark.slow
def test_best_metric_loss_keeps_the_weights_of_the_lowest_validation_loss(numbers_corpus, tmp_path):
    """An epoch that learns (validation loss falls), then a resumed epoch at a learning rate
    that wrecks the model (it rises far above): the best is the first epoch's last
    validation, which neither "the latest" nor "the best BLEU" would pick."""
    for language in ("en", "de"):
        text = (numbers_corpus / f"train.{language}").read_text(encoding="utf-8")
        (tmp_path / f"repeated.{language}").write_text(text * 20, encoding="utf-8")
    model_dir = tmp_path / "model"
    options = [
        tmp_path / "repeated.en",
        tmp_path / "repeated.de",
        model_dir,
        corpus_files(numbers_corpus),
        "--validate-every",
        "20",
        "--best-metric",
        "loss",
        "--learning-rate",
        "0.02",
        "--warmup-steps",
        "5",
        "--dropout",
        "0",
        "--no-tensorboard",
    ]
    train(*options, "--epochs", "1")
    train(*options, "--epochs", "2", "--learning-rate", "1.0")
    rows = metrics(model_dir)
    losses = [float(row["valid_loss"]) for row in rows]
    best = min(range(len(rows)), key=losses.__getitem__)
    bleu = [float(row["valid_bleu"]) for row in rows]
    by_bleu = bleu.index(max(bleu))
    assert best < len(rows) - 1 and by_bleu != best, (losses, bleu)  # the test can fail

    state = training_state(model_dir)
    assert state["best"] == {
        "metric": "loss",
        "value": losses[best],
        "step": int(rows[best]["step"]),
    }
    saved = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    assert saved["training"]["best_metric"] == "loss"
    # model.weights.h5 is that step's model: its perplexity on the validation set is the
    # one measured there, not the last validation's.
    result = run(
        "evaluate",
        "--model-dir",
        model_dir,
        "--source",
        numbers_corpus / "train.en",
        "--reference",
        numbers_corpus / "train.de",
        "--json",
    )
    perplexity = json.loads(result.stdout)["perplexity"]
    assert perplexity == pytest.approx(float(rows[best]["valid_ppl"]), rel=1e-3)
    assert perplexity < float(rows[-1]["valid_ppl"]) / 2


def test_anneal_fraction_without_validation_is_refused_with_the_way_out(numbers_corpus, tmp_path):
    model_dir = tmp_path / "model"
    result = run(
        "train",
        *corpus_files(numbers_corpus),
        "--model-dir",
        model_dir,
        *RUN,
        "--anneal-fraction",
        "0.25",
    )
    assert result.exit_code == 1
    assert "pass --valid SOURCE TARGET, or drop --anneal-fraction" in result.output
    assert not model_dir.exists()
