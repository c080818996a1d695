"""Translation in bulk: streaming through a pipe, sharded batch decoding, scoring, export."""

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from seq2seq_shared.decoding.translator import Translator
from seq2seq_shared.model_dir import ModelDir

pytestmark = pytest.mark.slow  # trains models or starts processes: the full run only

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENT = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
LINES = [
    "one hundred",
    "",
    "twelve",
    "seven",
    "one hundred ninety-nine",
    "",
    "forty-two",
    "three",
    "eighty-eight",
] * 5


def test_translate_streams_behind_a_producer_that_is_still_writing(trained):
    process = subprocess.Popen(
        [sys.executable, "-m", "seq2seq_shared.cli", "translate", "--model-dir", str(trained)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=ENVIRONMENT,
        text=True,
        bufsize=1,
    )
    answers = []
    try:
        for line in ["one hundred", "twelve"]:
            process.stdin.write(line + "\n")
            process.stdin.flush()
            reader = threading.Thread(target=lambda: answers.append(process.stdout.readline()))
            reader.start()
            reader.join(timeout=60)  # the answer must come while stdin is still open
            assert not reader.is_alive(), f"no output for {line!r} before end of input"
        process.stdin.close()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    expected = Translator.from_model_dir(trained).translate(["one hundred", "twelve"])
    assert [a.rstrip("\n") for a in answers] == expected


def batch_translate(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "batch_translate.py"), *map(str, args)],
        env=ENVIRONMENT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )


def test_batch_script_equals_translate_and_resumes_without_redoing_shards(trained, tmp_path):
    source = tmp_path / "big.txt"
    source.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    output = tmp_path / "big.out"
    options = [
        "--model-dir",
        trained,
        "-i",
        source,
        "-o",
        output,
        "--workers",
        "2",
        "--shard-lines",
        "7",
        "--keep-shards",
    ]
    batch_translate(*options)
    expected = Translator.from_model_dir(trained).translate(LINES)
    assert output.read_text(encoding="utf-8").split("\n")[:-1] == expected

    # A crash part way: the merged output and one shard's output are gone.
    shards = tmp_path / "big.out.shards"
    outputs = sorted(shards.glob("*.out"))
    assert len(outputs) == 7  # ceil(45 / 7)
    output.unlink()
    outputs[3].unlink()
    untouched = {p: p.stat().st_mtime_ns for p in outputs if p != outputs[3]}
    result = batch_translate(*options)
    assert "6 shards already done" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched
    assert output.read_text(encoding="utf-8").split("\n")[:-1] == expected

    batch_translate(*options[:-1])  # without --keep-shards: the shard folder goes
    assert not shards.exists()


def other_model(model_dir: Path, copy: Path) -> Path:
    """A copy of `model_dir` whose weights differ: another model behind the same file names."""
    import numpy as np

    shutil.copytree(model_dir, copy)
    model, _, _ = ModelDir(copy).load_model()
    table = model.source_embedding.embeddings  # shared with the target side and the output
    noise = np.random.default_rng(0).normal(size=table.shape).astype("float32")
    table.assign(np.asarray(table) + noise)
    ModelDir(copy).save_weights(model)  # also records the new sha256
    return copy


def test_batch_script_translates_again_the_shards_of_another_model(trained, tmp_path):
    """The bug: a re-run with another --model-dir reused 6 of 7 shards from the first model."""
    source = tmp_path / "big.txt"
    source.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    output = tmp_path / "big.out"
    first = Translator.from_model_dir(trained).translate(LINES)
    second_model = other_model(trained, tmp_path / "other-model")
    second = Translator.from_model_dir(second_model).translate(LINES)
    # The test can fail only if the models differ on lines outside the shard that goes
    # missing below (lines 21..27, shard 00003).
    assert any(first[i] != second[i] for i in range(len(LINES)) if not 21 <= i < 28)

    options = ["-i", source, "-o", output, "--workers", "2", "--shard-lines", "7", "--keep-shards"]
    batch_translate("--model-dir", trained, *options)
    assert output.read_text(encoding="utf-8").split("\n")[:-1] == first
    output.unlink()  # a crash part way, then a re-run with another model
    (tmp_path / "big.out.shards" / "00003.out").unlink()
    result = batch_translate("--model-dir", second_model, *options)
    assert output.read_text(encoding="utf-8").split("\n")[:-1] == second
    assert "6 finished shards were translated by another model" in result.stderr
    manifest = json.loads((tmp_path / "big.out.shards" / "manifest.json").read_text())
    assert manifest["translation"]["model"] == ModelDir(second_model).fingerprint()


def test_batch_script_translates_with_an_ensemble_of_its_model_dirs(trained, tmp_path):
    """--model-dir twice: the two models' ensemble, as `translate` gives it, beam included;
    the manifest records both models, so a single model's shards are not reused."""
    from seq2seq_shared.config import DecodeConfig
    from seq2seq_shared.runtime.ensemble import load_ensemble

    source = tmp_path / "big.txt"
    source.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    output = tmp_path / "big.out"
    second_model = other_model(trained, tmp_path / "other-model")
    options = ["-i", source, "-o", output, "--shard-lines", "7", "--keep-shards"]
    batch_translate("--model-dir", trained, *options, "--beam-size", "3")
    alone = output.read_text(encoding="utf-8").split("\n")[:-1]
    models = ["--model-dir", trained, "--model-dir", second_model]
    result = batch_translate(*models, *options, "--beam-size", "3")
    assert "translated by another model" in result.stderr
    ensemble = load_ensemble([trained, second_model], DecodeConfig(beam_size=3))
    expected = ensemble.translate(LINES)
    assert output.read_text(encoding="utf-8").split("\n")[:-1] == expected != alone
    manifest = json.loads((tmp_path / "big.out.shards" / "manifest.json").read_text())
    fingerprints = [ModelDir(m).fingerprint() for m in (trained, second_model)]
    assert manifest["translation"]["models"] == fingerprints


def test_batch_script_removes_leftover_temporaries_and_ignores_batch_size(trained, tmp_path):
    source = tmp_path / "big.txt"
    source.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    output = tmp_path / "big.out"
    options = [
        "--model-dir",
        trained,
        "-i",
        source,
        "-o",
        output,
        "--shard-lines",
        "7",
        "--keep-shards",
    ]
    batch_translate(*options)
    expected = output.read_text(encoding="utf-8")
    shards = tmp_path / "big.out.shards"
    # What atomic_write leaves behind when its process is killed mid-write.
    leftovers = [
        shards / ".00003.out.tmp-xyz.out",
        shards / ".00001.in.tmp-abc.in",
        shards / ".manifest.json.tmp-q1.json",
        tmp_path / ".big.out.tmp-k9.out",
    ]
    for leftover in leftovers:
        leftover.write_text("half a line")
    result = batch_translate(*options, "--batch-size", "3")  # batch size changes no output
    assert "7 shards already done" in result.stderr
    assert not [leftover for leftover in leftovers if leftover.exists()]
    assert output.read_text(encoding="utf-8") == expected


@pytest.mark.parametrize("damage", ["missing", "weights"])
def test_batch_script_refuses_a_missing_or_damaged_model_in_one_line(trained, tmp_path, damage):
    source = tmp_path / "in.txt"
    source.write_text("twelve\n", encoding="utf-8")
    model_dir = tmp_path / "model"
    if damage == "weights":
        shutil.copytree(trained, model_dir)
        with open(model_dir / "model.weights.h5", "r+b") as weights:
            weights.seek(-1, os.SEEK_END)
            weights.write(b"\x00" if weights.read(1) != b"\x00" else b"\x01")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "batch_translate.py"),
            "--model-dir",
            str(model_dir),
            "-i",
            str(source),
            "-o",
            str(tmp_path / "out.txt"),
        ],
        env=ENVIRONMENT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {model_dir}") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_score_test_sets_writes_markdown_and_json(trained, numbers_corpus, tmp_path):
    sets = tmp_path / "sets"
    sets.mkdir()
    for name, count in (("small", 20), ("large", 60)):
        for language in ("en", "de"):
            lines = (numbers_corpus / f"train.{language}").read_text(encoding="utf-8").split("\n")
            (sets / f"{name}.{language}").write_text(
                "\n".join(lines[:count]) + "\n", encoding="utf-8"
            )
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "score_test_sets.py"),
            "--model-dir",
            str(trained),
            "--test-dir",
            str(sets),
            "--source",
            "en",
            "--target",
            "de",
            "--output",
            str(tmp_path / "results"),
        ],
        env=ENVIRONMENT,
        check=True,
        capture_output=True,
    )
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(results) == {"small", "large"} and results["large"]["sentences"] == 60
    assert {"bleu", "bleu_lowercase", "chrf"} <= set(results["small"])
    table = (tmp_path / "results.md").read_text()
    assert "| large | 60 |" in table and "BLEU (lowercased)" in table


@pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="SavedModel export needs TensorFlow",
)
def test_export_loads_without_the_package_and_reproduces_translate(trained, tmp_path):
    from click.testing import CliRunner

    from seq2seq_shared.cli import main

    lines = ["one hundred ninety-nine", "", "twelve", "seven"]
    result = CliRunner().invoke(
        main, ["export", "--model-dir", str(trained), "--output", str(tmp_path / "export")]
    )
    assert result.exit_code == 0, result.output
    consumer = """
import json, sys
import numpy as np, sentencepiece as spm, tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
sp = spm.SentencePieceProcessor(model_file=sys.argv[1] + "/sentencepiece.model")
ids = sp.encode(json.loads(sys.argv[2]))
batch = np.zeros((len(ids), max(map(len, ids))), np.int32)
for row, sentence in enumerate(ids):
    batch[row, :len(sentence)] = sentence
out = model.signatures["serving_default"](source_ids=tf.constant(batch))["target_ids"].numpy()
assert "seq2seq_shared" not in sys.modules
print(json.dumps(sp.decode([[int(i) for i in row if i != 0] for row in out])))
"""
    # A fresh process with a PYTHONPATH that cannot reach the package's source.
    environment = {k: v for k, v in ENVIRONMENT.items() if k != "PYTHONPATH"}
    output = subprocess.run(
        [sys.executable, "-I", "-c", consumer, str(tmp_path / "export"), json.dumps(lines)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert json.loads(output.stdout) == Translator.from_model_dir(trained).translate(lines)


def descendants(pid: int) -> set[int]:
    """Every living process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("whole_group", [False, True], ids=["parent only", "whole group"])
def test_a_killed_bulk_run_leaves_no_process_behind(trained, tmp_path, whole_group):
    import signal
    import time

    source = tmp_path / "in.txt"
    source.write_text("seven\ntwelve\none hundred\n" * 400)
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "batch_translate.py"),
            "--model-dir",
            str(trained),
            "-i",
            str(source),
            "-o",
            str(tmp_path / "out.txt"),
            "--workers",
            "2",
            "--shard-lines",
            "50",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while len(workers) < 2 and time.monotonic() < deadline:  # the pool's workers are up
        workers = descendants(process.pid)
        time.sleep(0.2)
    assert len(workers) >= 2, "the workers never started"
    time.sleep(1)  # they are loading the model: seconds of work, were they left running
    if whole_group:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.kill()
    process.wait()
    deadline = time.monotonic() + 2
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if alive(pid)], "processes outlived the script"
