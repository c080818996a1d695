"""Translation in bulk: streaming through a pipe, sharded batch decoding, scoring, export."""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from seq2seq_shared.decode import Translator

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENT = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
LINES = ["one hundred", "", "twelve", "seven", "one hundred ninety-nine", "", "forty-two",
         "three", "eighty-eight"] * 5


def test_translate_streams_behind_a_producer_that_is_still_writing(trained):
    process = subprocess.Popen(
        [sys.executable, "-m", "seq2seq_shared.cli", "translate", "--model-dir", str(trained)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENVIRONMENT, text=True, bufsize=1)
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
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "batch_translate.py"), *map(str, args)],
                          env=ENVIRONMENT, capture_output=True, text=True, check=True)


def test_batch_script_equals_translate_and_resumes_without_redoing_shards(trained, tmp_path):
    source = tmp_path / "big.txt"
    source.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    output = tmp_path / "big.out"
    options = ["--model-dir", trained, "-i", source, "-o", output, "--workers", "2",
               "--shard-lines", "7", "--keep-shards"]
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


def test_score_test_sets_writes_markdown_and_json(trained, numbers_corpus, tmp_path):
    sets = tmp_path / "sets"
    sets.mkdir()
    for name, count in (("small", 20), ("large", 60)):
        for language in ("en", "de"):
            lines = (numbers_corpus / f"train.{language}").read_text(encoding="utf-8").split("\n")
            (sets / f"{name}.{language}").write_text("\n".join(lines[:count]) + "\n", encoding="utf-8")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "score_test_sets.py"), "--model-dir",
                    str(trained), "--test-dir", str(sets), "--source", "en", "--target", "de",
                    "--output", str(tmp_path / "results")], env=ENVIRONMENT, check=True,
                   capture_output=True)
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(results) == {"small", "large"} and results["large"]["sentences"] == 60
    assert {"bleu", "bleu_lowercase", "chrf"} <= set(results["small"])
    table = (tmp_path / "results.md").read_text()
    assert "| large | 60 |" in table and "BLEU (lowercased)" in table


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                    reason="SavedModel export needs TensorFlow")
def test_export_loads_without_the_package_and_reproduces_translate(trained, tmp_path):
    from click.testing import CliRunner

    from seq2seq_shared.cli import main

    lines = ["one hundred ninety-nine", "", "twelve", "seven"]
    result = CliRunner().invoke(main, ["export", "--model-dir", str(trained),
                                       "--output", str(tmp_path / "export")])
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
    output = subprocess.run([sys.executable, "-I", "-c", consumer, str(tmp_path / "export"),
                             json.dumps(lines)], env=environment, capture_output=True, text=True,
                            check=True, cwd=tmp_path)
    assert json.loads(output.stdout) == Translator.from_model_dir(trained).translate(lines)
