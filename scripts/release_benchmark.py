"""Releases beside the Keras model they come from: size, BLEU, speed and start-up.

    python scripts/release_benchmark.py --model-dir M --source test.de --reference test.en \
        --work /tmp/releases --output docs/results/release.json

For each release (NumPy float32, float16, int8; ONNX float32, int8) it writes the release
of M into --work, and measures, in this one process, beside the Keras model:
- size: every file of the release (SentencePiece included), and M's weights file;
- quality: lowercased BLEU, chrF and exact match (sacreBLEU) of greedy and beam-5
  translations of --source against --reference, and the share of lines identical to the
  Keras model's;
- speed: sentences/s at batch 64, greedy and beam 5, the median of --rounds runs each,
  after a warm-up run (Keras compiles its search; the runtime has nothing to compile);
- start-up: one line through `seq2seq-shared translate`, as a whole process (the median
  of 3), with --light-python (a Python of the light install) for the release where given.
With --shape-config TOML and --vocab-size N: also the release sizes of an untrained model
of that shape (sizes do not depend on training), e.g. the Multi30k recipe's.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ("float32", "float16", "int8")
RELEASES = [("numpy", p) for p in PRECISIONS] + [("onnx", "float32"), ("onnx", "int8")]


def timed_rate(translator, lines: list[str], rounds: int) -> float:
    translator.translate(lines[:64], batch_size=64)  # warm-up (compiles the Keras search)
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        translator.translate(lines, batch_size=64)
        rates.append(len(lines) / (time.perf_counter() - started))
    return round(statistics.median(rates), 1)


def start_up(python: str, model: Path) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            [python, "-m", "seq2seq_shared.cli", "translate", "--model-dir", str(model)],
            input="eins zwei drei\n",
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 2)


def quality(translator, sources: list[str], references: list[str]) -> tuple[dict, list[str]]:
    """Lowercased BLEU, chrF and exact match % (sacreBLEU), and the translations."""
    from seq2seq_shared.decoding.evaluate import quality as scores

    hypotheses = translator.translate(sources, batch_size=64)
    found = scores(hypotheses, references)
    keys = ("bleu_lowercase", "chrf", "exact_match")
    return {key: found[key] for key in keys}, hypotheses


def measure(args, sources: list[str], references: list[str]) -> dict:
    from seq2seq_shared.config import DecodeConfig
    from seq2seq_shared.runtime import load_translator
    from seq2seq_shared.runtime.release import write_release

    searches = {"greedy": DecodeConfig(), "beam 5": DecodeConfig(beam_size=5)}
    rows = {"keras float32": {"path": args.model_dir}}
    for runtime, precision in RELEASES:
        if runtime not in args.runtimes:
            continue
        path = args.work / f"{runtime}-{precision}"
        write_release(args.model_dir, path, precision, runtime)
        shortlist = path / "shortlist.npz"  # (copied where M has one: optional)
        rows[f"release {runtime} {precision}"] = {
            "path": path,
            "bytes": sum(f.stat().st_size for f in path.iterdir()),
            "shortlist bytes": shortlist.stat().st_size if shortlist.exists() else 0,
        }
    rows["keras float32"]["bytes"] = (args.model_dir / "model.weights.h5").stat().st_size
    reference_outputs = {}
    for name, row in rows.items():
        for search, config in searches.items():
            translator = load_translator(row["path"], config)
            row[f"quality {search}"], outputs = quality(translator, sources, references)
            reference_outputs.setdefault(search, outputs)
            same = sum(a == b for a, b in zip(outputs, reference_outputs[search], strict=True))
            row[f"same lines as keras {search} %"] = round(100 * same / len(outputs), 2)
            row[f"sentences/s {search}"] = timed_rate(translator, sources, args.rounds)
        light = args.light_python if name.startswith("release") else None
        row["start-up s"] = start_up(light or sys.executable, row["path"])
        row["path"] = str(row["path"])
    return rows


def shape_sizes(config_path: Path, vocab_size: int) -> dict:
    """Release weight sizes of an untrained model of the shape in `config_path`."""
    import io

    import numpy as np

    from seq2seq_shared.config import load_config_file
    from seq2seq_shared.model.seq2seq import Seq2Seq
    from seq2seq_shared.runtime.onnx_graphs import onnx_graphs
    from seq2seq_shared.runtime.release import network_arrays, quantized

    config = load_config_file(config_path)
    model = Seq2Seq.from_model_config(config.model, vocab_size, vocab_size)
    model.build()
    sizes = {"parameters": int(model.count_params())}
    for precision in PRECISIONS:
        buffer = io.BytesIO()
        np.savez(buffer, **quantized(network_arrays(model), precision))
        sizes[f"weights.npz {precision}"] = len(buffer.getvalue())
    for precision in ("float32", "int8"):  # the graphs read weights.npz: they add only this
        graphs, _ = onnx_graphs(quantized(network_arrays(model), precision), config.model)
        sizes[f"onnx graphs {precision}"] = sum(len(graph) for graph in graphs.values())
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="a new folder for releases")
    parser.add_argument("--output", type=Path, help="write the results here (JSON)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--light-python", help="a Python with only the light install")
    parser.add_argument("--shape-config", type=Path)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--runtimes", nargs="+", default=["numpy", "onnx"])
    args = parser.parse_args()
    sources = args.source.read_text(encoding="utf-8").splitlines()
    references = args.reference.read_text(encoding="utf-8").splitlines()
    result: dict = {
        "command": " ".join(sys.argv),
        "conditions": f"{platform.processor() or platform.machine()}, CPU only, one process",
    }
    if args.shape_config:  # (first: quick, and a mistake here costs no measurement)
        result["shape"] = {
            "config": str(args.shape_config),
            "vocab_size": args.vocab_size,
            **shape_sizes(args.shape_config, args.vocab_size),
        }
    result["rows"] = measure(args, sources, references)
    text = json.dumps(result, indent=2)
    if args.output:
        from seq2seq_shared.data.writer import atomic_write_text

        atomic_write_text(args.output, text + "\n")
    print(text)


if __name__ == "__main__":
    main()
