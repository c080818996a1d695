"""Releases: a translate-only model directory at float32, float16 or int8, translated by
the NumPy runtime without TensorFlow, as the Keras model translates."""

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seq2seq_shared.cli import main
from seq2seq_shared.config import DecodeConfig

ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ("float32", "float16", "int8")


@pytest.fixture(scope="module")
def releases(trained, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("releases")
    made = {}
    for name in ("float32", "float16", "int8", "onnx-float32", "onnx-int8"):
        runtime, precision = name.split("-") if "-" in name else ("numpy", name)
        made[name] = folder / name
        result = CliRunner().invoke(
            main,
            ["release", "--model-dir", str(trained), "--out", str(made[name])]
            + ["--precision", precision, "--runtime", runtime],
        )
        assert result.exit_code == 0, result.output
    return made


def numbers(numbers_corpus) -> list[str]:
    return (numbers_corpus / "train.en").read_text().splitlines()


def test_a_release_is_small_and_holds_no_training_state(releases, trained):
    sizes = {p: (releases[p] / "weights.npz").stat().st_size for p in PRECISIONS}
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]
    assert sizes["float32"] < (trained / "model.weights.h5").stat().st_size  # no optimizer
    names = sorted(path.name for path in releases["int8"].iterdir())
    assert names == ["checksums.json", "config.json", "sentencepiece.model", "weights.npz"]
    release = json.loads((releases["int8"] / "config.json").read_text())["release"]
    info = CliRunner().invoke(main, ["info", "--model-dir", str(trained), "--json"])
    parameters = json.loads(info.output)["total"]  # the shared LSTM counted once, as in Keras
    assert release == {"precision": "int8", "runtime": "numpy", "parameters": parameters}
    info = CliRunner().invoke(main, ["info", "--model-dir", str(releases["onnx-int8"]), "--json"])
    assert json.loads(info.output)["total"] == parameters
    names = sorted(path.name for path in releases["onnx-int8"].iterdir())
    assert names == [
        "checksums.json",
        "config.json",
        "encoder.onnx",
        "sentencepiece.model",
        "step.onnx",
        "top.onnx",
        "weights.npz",
    ]


def test_an_onnx_release_stores_each_array_once_in_the_numpy_release_file(releases):
    """The graphs hold no weights: they name weights.npz's arrays, the NumPy release's."""
    import onnx

    for precision in ("float32", "int8"):
        numpy_, onnx_ = releases[precision], releases[f"onnx-{precision}"]
        with np.load(numpy_ / "weights.npz") as a, np.load(onnx_ / "weights.npz") as b:
            assert sorted(a.files) == sorted(b.files)
            assert all(np.array_equal(a[name], b[name]) for name in a.files)
        document = json.loads((onnx_ / "config.json").read_text())
        shared, hidden = document["release"]["shared_weights"], document["model"]["hidden_size"]
        assert "embedding/source" in shared["encoder"] and "embedding/source" in shared["step"]
        for graph in ("encoder", "step"):
            model = onnx.load_from_string((onnx_ / f"{graph}.onnx").read_bytes())
            external = onnx.TensorProto.EXTERNAL
            named = {t.name for t in model.graph.initializer if t.data_location == external}
            assert named == set(shared[graph])
            held = [t for t in model.graph.initializer if t.data_location != external]
            assert max(int(np.prod(t.dims)) for t in held) <= 8 * hidden  # (biases' size)


def test_an_onnx_release_whose_graphs_hold_their_weights_still_loads(releases, tmp_path):
    """ONNX releases before `shared_weights` kept the weights inside each graph, with no
    weights.npz: they load as they are."""
    import shutil

    import onnx

    from seq2seq_shared.model_dir import ModelDir
    from seq2seq_shared.runtime import load_translator

    copy = tmp_path / "old"
    shutil.copytree(releases["onnx-int8"], copy)
    with np.load(copy / "weights.npz") as stored:
        arrays = {name: stored[name] for name in stored.files}
    directory = ModelDir(copy)
    for name in ("encoder.onnx", "step.onnx"):
        model = onnx.load_from_string((copy / name).read_bytes())
        held = [onnx.numpy_helper.from_array(arrays[t.name], t.name) for t in model.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL]  # fmt: skip
        kept = [t for t in model.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept + held)
        directory.checksums.write(name, partial(_write, data=model.SerializeToString()))
    document = directory.read_config_document()
    del document["release"]["shared_weights"]
    directory.checksums.write("config.json", partial(_write, data=json.dumps(document).encode()))
    (copy / "weights.npz").unlink()
    lines = ["seven", "twelve", "three hundred"]
    expected = load_translator(releases["onnx-int8"]).translate(lines)
    assert load_translator(copy).translate(lines) == expected


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def test_an_old_release_without_a_runtime_still_loads(releases, tmp_path):
    """Releases written before ONNX (config.json's release: {"precision": ...} alone) are
    NumPy releases."""
    import shutil

    from seq2seq_shared.model_dir import ModelDir
    from seq2seq_shared.runtime import load_translator

    copy = tmp_path / "old"
    shutil.copytree(releases["int8"], copy)
    document = ModelDir(copy).read_config_document()
    document["release"] = {"precision": "int8"}
    ModelDir(copy).checksums.write(
        "config.json", lambda path: path.write_text(json.dumps(document))
    )
    lines = ["seven", "twelve"]
    assert load_translator(copy).translate(lines) == load_translator(releases["int8"]).translate(
        lines
    )


@pytest.mark.parametrize(
    "search",
    [DecodeConfig(), DecodeConfig(beam_size=3, n_best=2)],
    ids=["greedy", "beam 3, n-best 2"],
)
@pytest.mark.parametrize("release", ["float32", "onnx-float32"])
def test_the_float32_release_translates_as_the_keras_model(
    releases, trained, numbers_corpus, search, release
):
    from seq2seq_shared import Translator
    from seq2seq_shared.runtime import load_translator

    lines = numbers(numbers_corpus)
    keras_side = Translator.from_model_dir(trained, search).translate_details(lines, scores=True)
    light = load_translator(releases[release], search).translate_details(lines, scores=True)
    network = load_translator(releases[release]).decoder.network
    assert type(network).__name__ == ("OnnxNetwork" if "onnx" in release else "Network")
    same = sum(a.text == b.text for a, b in zip(keras_side, light, strict=True))
    assert same >= 0.99 * len(lines)
    for a, b in zip(keras_side, light, strict=True):
        if a.text == b.text:
            assert len(a.hypotheses) == len(b.hypotheses) == search.n_best
            for x, y in zip(a.hypotheses, b.hypotheses, strict=True):
                assert x["translation"] == y["translation"]
                assert x["log_prob"] == pytest.approx(y["log_prob"], abs=1e-3)


@pytest.mark.parametrize("runtime, share, gap", [("", 0.95, 0.1), ("onnx-", 0.55, 0.3)])
def test_int8_stays_close_to_float32(releases, numbers_corpus, runtime, share, gap):
    """Stated tolerance: >= 95% of lines the same (NumPy: int8 weights, float products),
    best log-probabilities within 0.1 (median). ONNX Runtime also quantizes the
    activations, per batch, to 8 bits: on this 32-unit test model >= 55% of lines stay
    the same, within 0.3; on the 256-unit quickstart model 999 of 1,000 lines."""
    from seq2seq_shared.runtime import load_translator

    lines = numbers(numbers_corpus)
    full = load_translator(releases[runtime + "float32"]).translate_details(lines, scores=True)
    small = load_translator(releases[runtime + "int8"]).translate_details(lines, scores=True)
    same = [a for a, b in zip(full, small, strict=True) if a.text == b.text]
    assert len(same) >= share * len(lines)
    gaps = [
        abs(a.hypotheses[0]["log_prob"] - b.hypotheses[0]["log_prob"])
        for a, b in zip(full, small, strict=True)
        if a.text == b.text
    ]
    assert np.median(gaps) < gap


BLOCK = """
import importlib.abc, os, sys
BLOCKED = os.environ.get("BLOCK_ALSO", "").split()
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "jax", *BLOCKED):
            raise ImportError(f"{name} is made unimportable here", name=name)
sys.meta_path.insert(0, Block())
from seq2seq_shared.cli import main
sys.argv = ["seq2seq-shared", *sys.argv[1:]]
main()
"""


def run_without_tensorflow(*arguments, stdin: str = "", block: str = ""):
    return subprocess.run(
        [sys.executable, "-c", BLOCK, *map(str, arguments)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "BLOCK_ALSO": block},
    )


@pytest.mark.parametrize("release", ["int8", "onnx-int8"])
def test_a_release_translates_with_tensorflow_and_keras_unimportable(releases, trained, release):
    lines = ["seven", "", "one hundred", "", "twelve"]
    result = run_without_tensorflow(
        "translate", "--model-dir", releases[release], stdin="".join(line + "\n" for line in lines)
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.split("\n")[:-1]
    assert len(out) == len(lines) and out[1] == "" and out[3] == ""  # one line per line
    from seq2seq_shared.runtime import load_translator

    assert out == load_translator(releases[release]).translate(lines)  # in order
    result = run_without_tensorflow(
        "translate",
        "--model-dir",
        releases[release],
        "--beam-size",
        "3",
        "--n-best",
        "2",
        stdin="seven\n",
    )
    assert result.returncode == 0 and len(json.loads(result.stdout)["hypotheses"]) == 2
    result = run_without_tensorflow("translate", "--model-dir", trained, stdin="seven\n")
    assert result.returncode == 1 and 'pip install "seq2seq-shared[train]"' in result.stderr
    assert "Traceback" not in result.stderr


def test_an_onnx_release_without_onnx_runtime_says_what_to_install(releases):
    result = run_without_tensorflow(
        "translate", "--model-dir", releases["onnx-int8"], stdin="seven\n", block="onnxruntime"
    )
    assert result.returncode == 1 and "pip install onnxruntime" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_without_tensorflow(
        "translate", "--model-dir", releases["int8"], stdin="seven\n", block="onnxruntime"
    )
    assert result.returncode == 0, result.stderr  # (a NumPy release never needs it)


def test_evaluate_without_sacrebleu_says_what_to_install(releases, numbers_corpus, tmp_path):
    """The light install translates; scoring is the `[evaluate]` extra's."""
    source, reference = numbers_corpus / "train.en", numbers_corpus / "train.de"
    output = tmp_path / "out.txt"
    arguments = ["--source", source, "--reference", reference, "--output", output]
    result = run_without_tensorflow(
        "evaluate", "--model-dir", releases["int8"], *arguments, block="sacrebleu"
    )
    assert result.returncode == 1 and "pip install sacrebleu" in result.stderr
    assert "Traceback" not in result.stderr and not output.exists()  # (refused first)


def test_train_on_a_release_is_refused(releases, numbers_corpus):
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(numbers_corpus / "train.en"),
            str(numbers_corpus / "train.de"),
            "--model-dir",
            str(releases["float16"]),
            "--epochs",
            "1",
        ],
    )
    assert result.exit_code == 1 and "is a release" in result.output


@pytest.mark.parametrize(
    "release, name",
    [("int8", n) for n in ("config.json", "weights.npz", "sentencepiece.model", "checksums.json")]
    + [("onnx-int8", n) for n in ("encoder.onnx", "step.onnx", "weights.npz")],
)
def test_a_flipped_byte_in_any_release_file_is_refused(releases, tmp_path, release, name):
    import shutil

    copy = tmp_path / "release"
    shutil.copytree(releases[release], copy)
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / name).write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["translate", "--model-dir", str(copy)], input="seven\n")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and "Traceback" not in result.output


def test_evaluate_serve_engine_and_bulk_take_a_release(releases, numbers_corpus, tmp_path):
    from seq2seq_shared.runtime import load_translator
    from seq2seq_shared.serve.engine import Engine, Options

    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--model-dir",
            str(releases["int8"]),
            "--source",
            str(numbers_corpus / "train.en"),
            "--reference",
            str(numbers_corpus / "train.de"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["perplexity"] is None  # (Keras computes it)
    engine = Engine(releases["int8"])
    lines = numbers(numbers_corpus)[:20]
    expected = load_translator(releases["int8"]).translate(lines)
    assert [r["text"] for r in engine.translate(lines, Options())] == expected
    assert engine.info["release"]["precision"] == "int8"
