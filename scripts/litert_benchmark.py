#!/usr/bin/env python3
"""LiteRT (TensorFlow Lite) beside ONNX Runtime, the runtime releases ship with: measured.

    python scripts/litert_benchmark.py convert --model-dir M --out DIR
    LIGHT/bin/python scripts/litert_benchmark.py measure --litert DIR --release R \\
        --source test2016.de --reference test2016.en [--json out.json]

`convert` (needs TensorFlow) writes the model's encoder and one decoder step as LiteRT
flatbuffers, with TensorFlow's own converter: float32, and int8 by its dynamic-range
quantization (int8 weights, activations quantized on the fly where a kernel allows).
The graphs are traced from the model's own `encode`, `decoder_constants` and
`decode_step`, so they compute what the Keras model does.

`measure` (needs ai-edge-litert, onnxruntime and the package's light install; no
TensorFlow) translates the source with the package's own light greedy search over each
LiteRT graph pair and over the ONNX release R, one after the other in the same process,
and reports size, lowercased BLEU and sentences/s at batch 64 (after one warm-up pass).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from seq2seq_shared.data.writer import atomic_write_bytes, atomic_write_text  # noqa: E402

PRECISIONS = ("float32", "int8")
ROWS = 64  # the encoder graphs' batch
BUCKETS = (16, 32, 64, 128)  # their source lengths (128: the longest a model reads)


def convert(model_dir: Path, out: Path) -> None:
    """encoder_L.tflite for every length bucket and step.tflite, per precision, and the
    signature they share."""
    import keras
    import tensorflow as tf

    from seq2seq_shared.model import lstm as lstm_module
    from seq2seq_shared.model_dir import ModelDir

    model, _, config = ModelDir(model_dir).load_model()
    # The training kernel's loop also keeps what its backward pass reads, and LiteRT's
    # converter mis-shapes that in the loop's body ("2048 != 512" at run time): the
    # encoder is traced with the plain forward recurrence below.
    lstm_module.lstm_recurrence = forward_recurrence
    endpoints, constants = graph_functions(model, config.model)
    # Through a SavedModel, the converter's own path: it freezes the weights and keeps
    # the encoder loop's static shapes (freezing by hand lost them).
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, function in endpoints.items():
        archive.add_endpoint(name, function)
    with tempfile.TemporaryDirectory() as saved:
        archive.write_out(saved, verbose=False)
        for precision in PRECISIONS:
            for name in endpoints:
                converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[name])
                if precision == "int8":
                    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic-range int8
                atomic_write_bytes(out / precision / f"{name}.tflite", converter.convert())
    signature = {"layers": config.model.num_layers, "constants": constants}
    signature["target_vocab_size"] = int(model.target_vocab_size)
    atomic_write_text(out / "signature.json", json.dumps(signature, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


def graph_functions(model, config) -> tuple[dict[str, Any], list[str]]:
    """The tf.functions to convert ({name: function}: the encoders, then "step") and the
    names of the constants the encoders hand the step."""
    import tensorflow as tf

    hidden, layers = config.hidden_size, config.num_layers
    trial = model.decoder_constants(model.encode(np.array([[5, 6, 3]], np.int32)))
    shapes = {"context_projection": [None, 4 * hidden], "memory": [None, None, hidden]}
    shapes.update(keys=[None, None, hidden], mask=[None, None])
    specs = {
        name: tf.TensorSpec(shapes[name], tf.bool if name == "mask" else tf.float32, name=name)
        for name in sorted(trial)
    }
    for n in range(layers):
        for kind in "hc":
            specs[f"{kind}{n}"] = tf.TensorSpec([None, hidden], tf.float32, name=f"{kind}{n}")

    def encoder(source):
        encoded = model.encode(source)
        found = dict(model.decoder_constants(encoded))
        for n, (h, c) in enumerate(encoded["states"]):
            found[f"h{n}"], found[f"c{n}"] = h, c
        return found

    def step(token, feeds):
        states = [[feeds[f"h{n}"], feeds[f"c{n}"]] for n in range(layers)]
        logits, next_states = model.decode_step(token, states, {k: feeds[k] for k in trial})
        found = {"log_probs": tf.nn.log_softmax(logits)}
        for n, (h, c) in enumerate(next_states):
            found[f"next_h{n}"], found[f"next_c{n}"] = h, c
        return found

    # The encoder's loop converts to LiteRT's builtin ops only with its shapes fixed,
    # and LiteRT cannot resize its body to another source length: one encoder per
    # length bucket, the source padded to the bucket (padding is masked).
    functions = {
        f"encoder_{length}": tf.function(
            encoder, input_signature=[tf.TensorSpec([ROWS, length], tf.int32, name="source")]
        )
        for length in BUCKETS
    }
    token = tf.TensorSpec([None], tf.int32, name="token")
    functions["step"] = tf.function(step, input_signature=[token, specs])
    return functions, sorted(trial)


def forward_recurrence(projected, h0, c0, recurrent_kernel, mask=None):
    """`kernels.lstm_recurrence` without its backward pass: outputs, final h and c."""
    from keras import ops

    from seq2seq_shared import backend
    from seq2seq_shared.model.kernels import lstm_gates

    real = ops.ones_like(projected[..., :1]) if mask is None else mask

    def step(carry, inputs):
        h, c = carry
        (_, _, _, o), c_new, tanh_c = lstm_gates(inputs[0] + ops.matmul(h, recurrent_kernel), c)
        keep = ops.greater(inputs[1], 0.0)  # a padded step carries the state over
        h_new, c_new = ops.where(keep, o * tanh_c, h), ops.where(keep, c_new, c)
        return (h_new, c_new), (h_new,)

    (h, c), (outputs,) = backend.scan(step, (h0, c0), (projected, real), outputs=1)
    return outputs, h, c


class LiteRTNetwork:
    """`network.py`'s interface (`encode`, `constants`, `decode_step`) over the two
    LiteRT graphs, so the package's light greedy search runs on them unchanged."""

    def __init__(self, directory: Path, signature: dict[str, Any]):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        def runner(name: str, **options):
            path = str(directory / f"{name}.tflite")
            return Interpreter(model_path=path, num_threads=1, **options).get_signature_runner()

        # XNNPack, LiteRT's default CPU delegate, fails to prepare the encoder loop's
        # body ("failed to reshape"): the encoders run on LiteRT's builtin kernels.
        plain = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        self.encoders = {length: runner(f"encoder_{length}", **plain) for length in BUCKETS}
        self.step = runner("step")

        self.layers, self.names = signature["layers"], signature["constants"]
        self.target_vocab_size, self.attention = signature["target_vocab_size"], None

    def encode(self, source: np.ndarray) -> dict[str, Any]:
        rows, length = source.shape  # padded to the graph's rows with copies of the first
        bucket = min(b for b in BUCKETS if b >= length)
        padded = np.pad(source, ((0, ROWS - rows), (0, bucket - length)))
        padded[rows:] = padded[0]
        found = self.encoders[bucket](source=padded.astype(np.int32))
        found = {
            k: v[:rows, :length] if v.ndim == 3 or k == "mask" else v[:rows]
            for k, v in found.items()
        }
        encoded = {name: found[name] for name in self.names}
        encoded["states"] = [[found[f"h{n}"], found[f"c{n}"]] for n in range(self.layers)]
        return encoded

    def constants(self, encoded: dict[str, Any]) -> dict[str, Any]:
        return {name: encoded[name] for name in self.names}

    def decode_step(self, token, states, constants, candidates=None) -> tuple:
        feeds = {"token": np.asarray(token, np.int32), **constants}
        for n, (h, c) in enumerate(states):
            feeds[f"h{n}"], feeds[f"c{n}"] = h, c
        found = self.step(**feeds)
        next_states = [[found[f"next_h{n}"], found[f"next_c{n}"]] for n in range(self.layers)]
        return found["log_probs"], next_states


def translator_over(network, release: Path):
    """The package's Translator over `network`, with the release's tokenizer and limits."""
    from seq2seq_shared.config import DecodeConfig
    from seq2seq_shared.decoding.translator import Translator
    from seq2seq_shared.model_dir import ModelDir
    from seq2seq_shared.runtime.decoder import LightDecoder

    directory = ModelDir(release)
    config, decode_config = directory.read_config(), DecodeConfig(batch_size=64)
    decoder = LightDecoder(network, decode_config, config.model.max_source_length)
    return Translator(
        network, directory.load_tokenizer(), config.model, decode_config, decoder=decoder
    )


def timed(translator, lines: list[str]) -> tuple[list[str], float]:
    translator.translate(lines[:256])  # warm-up
    start = time.perf_counter()
    output = translator.translate(lines)
    return output, len(lines) / (time.perf_counter() - start)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import sacrebleu

    from seq2seq_shared.runtime import load_translator

    lines = args.source.read_text(encoding="utf-8").splitlines()
    references = args.reference.read_text(encoding="utf-8").splitlines()
    signature = json.loads((args.litert / "signature.json").read_text(encoding="utf-8"))
    candidates = {"onnx int8 release": (load_translator(args.release), _size(args.release))}
    for precision in PRECISIONS:
        network = LiteRTNetwork(args.litert / precision, signature)
        translator = translator_over(network, args.release)
        candidates[f"litert {precision}"] = (translator, _size(args.litert / precision))
    rows = []
    for name, (translator, size) in candidates.items():
        output, speed = timed(translator, lines)
        bleu = sacrebleu.corpus_bleu(output, [references], lowercase=True).score
        rows.append({"path": name, "megabytes": size, "bleu_lowercase": round(bleu, 2),
                     "sentences_per_second": round(speed, 1)})  # fmt: skip
        print(json.dumps(rows[-1]), file=sys.stderr)
    files = {
        str(p.relative_to(args.litert)): round(p.stat().st_size / 1e6, 2)
        for p in sorted(args.litert.glob("*/*.tflite"))
    }
    return {"batch_size": 64, "search": "greedy", "threads": 1, "rows": rows, "files": files}


def _size(directory: Path) -> float:
    """The graphs and weights (a release's SentencePiece model and optional shortlist
    left out: LiteRT's graphs hold neither)."""
    kept = (".tflite", ".onnx", ".npz")
    files = [p for p in directory.iterdir() if p.suffix in kept and p.name != "shortlist.npz"]
    return round(sum(p.stat().st_size for p in files) / 1e6, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    to_litert = commands.add_parser("convert")
    to_litert.add_argument("--model-dir", type=Path, required=True)
    to_litert.add_argument("--out", type=Path, required=True)
    measured = commands.add_parser("measure")
    for name in ("--litert", "--release", "--source", "--reference"):
        measured.add_argument(name, type=Path, required=True)
    measured.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.command == "convert":
        convert(args.model_dir, args.out)
        return
    results = measure(args)
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
