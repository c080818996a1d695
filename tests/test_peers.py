"""The peer benchmark's Joey NMT config writer (scripts/peers/, issue 29): the configs hold our
recipe and Joey's published RNN, and Joey's own loader accepts them and builds the models.

Joey runs in its own environment: JOEY_PYTHON=VENV/bin/python (scripts/peers/setup_joey.sh),
the default .peers/joey-venv, or this Python if it imports joeynmt; else those tests skip.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece

from seq2seq_shared.config import load_config_file
from seq2seq_shared.data.tokenizer import JOINT_SPM, train_sentencepiece

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts" / "peers"))
import joey_config  # noqa: E402
import run_joey  # noqa: E402

RECIPE = load_config_file(ROOT / "data" / "multi30k.toml")
SUBJECTS = [("Ein Mann", "A man"), ("Eine Frau", "A woman"), ("Ein Kind", "A child")]
VERBS = [("läuft", "runs"), ("sitzt", "sits"), ("lacht", "laughs"), ("spielt", "plays")]
PLACES = [("im Park", "in the park"), ("am Strand", "on the beach"), ("hier", "here")]


def pairs() -> list[tuple[str, str]]:
    return [
        (f"{s_de} {v_de} {p_de}.", f"{s_en} {v_en} {p_en}.")
        for s_de, s_en in SUBJECTS
        for v_de, v_en in VERBS
        for p_de, p_en in PLACES
    ]  # 36 pairs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """(a model directory holding only our joint SentencePiece model, a data directory with
    train, val and test2016 .de/.en)."""
    root = tmp_path_factory.mktemp("peers")
    data, model_dir = root / "data", root / "model"
    data.mkdir()
    model_dir.mkdir()
    sources, targets = zip(*pairs(), strict=True)
    for stem, count in (("train", 36), ("val", 6), ("test2016", 5)):
        (data / f"{stem}.de").write_text("\n".join(sources[:count]) + "\n", encoding="utf-8")
        (data / f"{stem}.en").write_text("\n".join(targets[:count]) + "\n", encoding="utf-8")
    model = train_sentencepiece([*sources, *targets], vocab_size=60)
    (model_dir / JOINT_SPM).write_bytes(model)
    return model_dir, data


def write(corpus, tmp_path, variant: str, **options) -> tuple[Path, dict]:
    model_dir, data = corpus
    out = tmp_path / f"joey-{variant}.yaml"
    config = joey_config.write_config(variant, model_dir, data, out, RECIPE, **options)
    return out, config


def test_the_vocabulary_keeps_our_ids_but_for_pad_and_unk(corpus, tmp_path):
    out, _ = write(corpus, tmp_path, "matched")
    lines = out.with_name("joey-matched.vocab.txt").read_text(encoding="utf-8").splitlines()
    ours = sentencepiece.SentencePieceProcessor(model_file=str(corpus[0] / JOINT_SPM))
    assert len(lines) == ours.get_piece_size()
    assert lines[:4] == ["<unk>", "<pad>", "<s>", "</s>"]
    assert ours.id_to_piece(0) == "<pad>" and ours.id_to_piece(1) == "<unk>"
    assert lines[2:] == [ours.id_to_piece(i) for i in range(2, ours.get_piece_size())]


def test_a_sentencepiece_model_with_other_special_ids_is_refused(tmp_path):
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([pair[1] for pair in pairs()]),
        model_prefix=str(tmp_path / "default"),
        vocab_size=40,
        hard_vocab_limit=False,
        minloglevel=2,
    )  # SentencePiece's own ids: unk=0, bos=1, eos=2, no pad
    with pytest.raises(ValueError, match="pad=0, unk=1"):
        joey_config.joey_vocabulary(tmp_path / "default.model")


def test_the_matched_config_is_our_recipe(corpus, tmp_path):
    _, config = write(corpus, tmp_path, "matched")
    model, training = config["model"], config["training"]
    for side in ("encoder", "decoder"):
        rnn = model[side]
        assert (rnn["type"], rnn["rnn_type"], rnn["num_layers"]) == ("recurrent", "lstm", 1)
        assert (rnn["hidden_size"], rnn["embeddings"]["embedding_dim"]) == (512, 256)
        assert rnn["embeddings"]["dropout"] == 0.3
    assert model["encoder"]["bidirectional"] is False
    decoder = model["decoder"]
    assert (decoder["attention"], decoder["input_feeding"], decoder["init_hidden"]) == (
        "luong",
        True,
        "last",
    )
    assert decoder["hidden_dropout"] == 0.3
    assert model["tied_embeddings"] is True and model["tied_softmax"] is False
    assert (training["batch_size"], training["batch_type"]) == (3072, "token")
    assert (training["optimizer"], training["learning_rate"]) == ("adam", 0.002)
    assert (training["scheduling"], training["decrease_factor"], training["patience"]) == (
        "plateau",
        0.5,
        1,
    )
    assert (training["label_smoothing"], training["clip_grad_norm"]) == (0.1, 1.0)
    assert training["early_stopping_metric"] == "bleu"
    assert config["data"]["src"]["tokenizer_type"] == "sentencepiece"
    assert config["data"]["src"]["voc_file"] == config["data"]["trg"]["voc_file"]


def test_joey_best_is_its_published_rnn(corpus, tmp_path):
    _, config = write(corpus, tmp_path, "joey-best")
    model, training = config["model"], config["training"]
    assert (model["encoder"]["rnn_type"], model["encoder"]["bidirectional"]) == ("gru", True)
    assert (model["encoder"]["hidden_size"], model["decoder"]["hidden_size"]) == (500, 1000)
    assert model["decoder"]["attention"] == "bahdanau"
    assert model["decoder"]["init_hidden"] == "bridge"
    assert (training["learning_rate"], training["batch_size"]) == (0.0002, 80)
    assert training["validation_freq"] == 1  # 36 training pairs: one batch of 80 per epoch


def test_validation_frequency_is_about_an_epoch_or_as_given(corpus, tmp_path):
    _, config = write(corpus, tmp_path, "matched", validation_freq=300)
    assert config["training"]["validation_freq"] == 300
    assert 300 % config["training"]["logging_freq"] == 0
    # One token batch (3072) holds all 36 short pairs: an epoch is one step.
    _, config = write(corpus, tmp_path, "matched")
    assert config["training"]["validation_freq"] == 1


def test_yaml_floats_stay_floats_and_the_file_reads_back(corpus, tmp_path):
    assert joey_config._yaml_scalar(1e-05) == "1.0e-05"
    assert joey_config._yaml_scalar(1e20) == "1.0e+20"
    assert joey_config._yaml_scalar(0.002) == "0.002"
    assert joey_config._yaml_scalar([0.9, "a b", True, None]) == '[0.9, "a b", true, null]'
    yaml = pytest.importorskip("yaml")
    out, config = write(corpus, tmp_path, "matched")
    assert yaml.safe_load(out.read_text(encoding="utf-8")) == config


def test_empty_lines_are_refused(corpus, tmp_path):
    model_dir, data = corpus
    broken = tmp_path / "data"
    broken.mkdir()
    for path in data.iterdir():
        (broken / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (broken / "val.en").write_text("A man runs.\n\nA child runs.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="val.en: line 2 is empty"):
        joey_config.write_config("matched", model_dir, broken, tmp_path / "x.yaml", RECIPE)


def test_joey_s_log_is_read_into_progress():
    progress = run_joey.Progress(launched=0.0)
    prefix = "2026-12-05 17:00:00,000 - INFO - "
    lines = [
        "joeynmt.model - Total params: 11133440",
        "joeynmt.training - EPOCH 1",
        "joeynmt.training - Epoch   1, Step:       50, Batch Loss:     5.123456, Batch Acc: "
        "0.123456, Tokens per Sec:     1234, Lr: 0.002000",
        "joeynmt.prediction - Evaluation result (greedy): bleu:  12.34, loss:   3.21, ppl:  "
        "24.78, acc:   0.41, 30.1234[sec]",
        "joeynmt.prediction - Generation took 12.3456[sec].",
    ]
    for now, line in zip([1.0, 10.0, 70.0, 130.0, 131.0], lines, strict=True):
        run_joey.read_line(progress, prefix + line + "\n", now)
    assert (progress.parameters, progress.started, progress.step) == (11133440, 10.0, 50)
    assert progress.logs == [
        {
            "minutes": 1.0,
            "step": 50,
            "loss": 5.123456,
            "tokens_per_second": 1234,
            "learning_rate": 0.002,
        }
    ]
    assert progress.validations == [
        {
            "minutes": 2.0,
            "step": 50,
            "bleu": 12.34,
            "loss": 3.21,
            "ppl": 24.78,
            "acc": 0.41,
            "seconds": 30.1234,
        }
    ]
    assert progress.generation_seconds == 12.3456


def joey_python() -> str | None:
    """Joey's Python: JOEY_PYTHON, the default venv of setup_joey.sh, or this one."""
    if os.environ.get("JOEY_PYTHON"):
        return os.environ["JOEY_PYTHON"]
    default = ROOT / ".peers" / "joey-venv" / "bin" / "python"
    if default.is_file():
        return str(default)
    return sys.executable if importlib.util.find_spec("joeynmt") else None


# Run by Joey's Python, with joey_launch.py's fixes: Joey's own loader, data pipeline, model
# builder, optimizer and scheduler on each config, and one training step on a batch.
BUILD = """
import json, math, sys
sys.path.insert(0, sys.argv[1])
import joey_launch
joey_launch.patch()
import torch
from joeynmt.builders import build_optimizer, build_scheduler
from joeynmt.config import load_config, parse_global_args
from joeynmt.data import load_data
from joeynmt.model import build_model
found = {}
for path in sys.argv[3:]:
    args = parse_global_args(load_config(path), rank=0, mode="train")
    vocab, _, train, dev, test = load_data(args.data, datasets=["train", "dev", "test"])
    model = build_model(args.model, src_vocab=vocab, trg_vocab=vocab)
    model.loss_function = (args.train.loss, args.train.label_smoothing)
    optimizer = build_optimizer(cfg=args.train._asdict(), parameters=model.parameters())
    build_scheduler(cfg=args.train._asdict(), optimizer=optimizer, scheduler_mode="max")
    batch = next(iter(train.make_iter(batch_size=8, pad_index=vocab.pad_index)))
    batch.sort_by_src_length()
    loss = model(return_type="loss", **vars(batch))[0]
    loss.backward()
    optimizer.step()
    found[path] = {
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "vocabulary": vocab._itos,
        "sizes": [len(train), len(dev), len(test)],
        "ids": vocab.sentences_to_ids([train.tokenizer["de"](sys.argv[2])], False, False)[0][0],
        "loss": loss.item(),
    }
print(json.dumps(found))
"""


def matched_parameters(vocab: int, embedding: int = 256, hidden: int = 512) -> int:
    """Joey's count for `matched`, by hand: torch's LSTMs carry two bias vectors."""
    encoder = 4 * hidden * (embedding + hidden) + 8 * hidden
    decoder = 4 * hidden * (embedding + hidden + hidden) + 8 * hidden  # input feeding
    attention = hidden * hidden + (2 * hidden * hidden + hidden)  # W_a; the attentional layer
    return vocab * embedding + encoder + decoder + attention + hidden * vocab


def joey_best_parameters(vocab: int) -> int:
    encoder = 2 * (3 * 500 * (620 + 500) + 6 * 500)  # bidirectional GRU
    decoder = 3 * 1000 * (620 + 1000 + 1000) + 6 * 1000
    attention = 1000 * 1000 + 1000 * 1000 + 1000 + (2000 * 1000 + 1000)  # Bahdanau; layer
    return 2 * vocab * 620 + encoder + decoder + attention + (1000 * 1000 + 1000) + 1000 * vocab


def test_joey_loads_both_configs_and_builds_the_models(corpus, tmp_path):
    python = joey_python()
    if python is None:
        pytest.skip(
            "Joey NMT is not installed: bash scripts/peers/setup_joey.sh [VENV], then "
            "JOEY_PYTHON=VENV/bin/python (default VENV: .peers/joey-venv)"
        )
    paths = [write(corpus, tmp_path, variant)[0] for variant in joey_config.VARIANTS]
    sentence = "Ein Kind lacht am Strand."
    result = subprocess.run(
        [python, "-c", BUILD, str(ROOT / "scripts" / "peers"), sentence, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # two threads on a busy CPU: 5x slower
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.splitlines()[-1])
    ours = sentencepiece.SentencePieceProcessor(model_file=str(corpus[0] / JOINT_SPM))
    vocab = ours.get_piece_size()
    swap = {0: 1, 1: 0}
    for path, count in zip(
        paths, [matched_parameters(vocab), joey_best_parameters(vocab)], strict=True
    ):
        built = found[str(path)]
        assert built["parameters"] == count, path.name
        assert built["vocabulary"] == joey_config.joey_vocabulary(corpus[0] / JOINT_SPM)
        assert built["sizes"] == [36, 6, 5]
        assert built["ids"] == [swap.get(i, i) for i in ours.encode(sentence)]
        assert 0 < built["loss"] < float("inf")


def test_the_side_by_side_file_reads_each_toolkits_curve_at_the_marks(tmp_path):
    """collect.py: the validation BLEU at 10/20/40/60 minutes is the last one by then."""
    import collect

    curve = [[6.2, 1.0], [12.5, 5.0], [19.4, 11.0], [45.6, 29.0], [60.3, 30.8]]
    assert collect.at_marks(curve) == {"10": 1.0, "20": 11.0, "40": 11.0, "60": 30.8}
    assert collect.at_marks([[49.8, 1.8]]) == {"10": None, "20": None, "40": None, "60": 1.8}
    results = {
        "name": "x", "parameters": 7, "checkpoint": {"chosen": "best validation"},
        "machine": {"joeynmt": "2.3.0"},
        "training": {"tokens_per_second_median": 150, "epochs": 2, "steps": 450,
                     "validations": [{"minutes": 49.8, "bleu": 1.8}]},
        "test": {"greedy": {"bleu_lowercase": 1.9, "sentences_per_second": 10.3}},
    }  # fmt: skip
    (tmp_path / "joey.json").write_text(json.dumps(results))
    row = collect.joey(tmp_path / "joey.json")
    assert row["validation_bleu_at_minutes"]["60"] == 1.8
    assert row["test2016_bleu_lowercase"] == {"greedy": 1.9}
