"""What int8 costs in BLEU, part by part: the embeddings, the LSTM, the attention, the
output layer, each quantized alone, then all together.

    python scripts/int8_parts.py --release R --source test.de --reference test.en \
        --output docs/results/int8_parts.json

R is a float32 NumPy release (`seq2seq-shared release --model-dir M --out R`). For each
part, its matrices are quantized as an int8 release stores them (symmetric, per output
channel, `runtime/release.py`) and read back to float32, the other parts left float32;
the NumPy runtime translates --source greedy and with beam 5 (batch 64), and lowercased
BLEU (sacreBLEU) is taken against --reference. This is the weights' rounding alone, what
the NumPy int8 release computes; ONNX Runtime's int8 products also round activations
(release_benchmark.py measures the whole of it).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from seq2seq_shared.config import DecodeConfig
from seq2seq_shared.decoding.evaluate import quality
from seq2seq_shared.runtime import LoadedRelease
from seq2seq_shared.runtime.network import Network
from seq2seq_shared.runtime.release import dequantized, quantized

# A part: the prefixes of its arrays' names (runtime/release.py's network_arrays).
PARTS = {
    "embeddings": ("embedding/",),  # with a tied output, also the output layer's table
    "lstm": ("encoder/", "decoder/"),
    "attention": ("attention/",),
    "output": ("output_bridge/", "projection/"),
}


def rounded(arrays: dict[str, np.ndarray], prefixes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """`arrays` with those under `prefixes` quantized to int8 and read back."""
    chosen = {name: value for name, value in arrays.items() if name.startswith(prefixes)}
    return {**arrays, **dequantized(quantized(chosen, "int8"))}


def bleu(release: LoadedRelease, sources, references, beam_size: int) -> float:
    config = DecodeConfig(beam_size=beam_size, batch_size=64)
    hypotheses = release.translator(config).translate(sources, batch_size=64)
    return quality(hypotheses, references)["bleu_lowercase"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", type=Path, required=True, help="a float32 NumPy release")
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--lines", type=int, default=0, help="the first N lines only (0: all)")
    args = parser.parse_args()
    sources = args.source.read_text(encoding="utf-8").splitlines()
    references = args.reference.read_text(encoding="utf-8").splitlines()
    if args.lines:
        sources, references = sources[: args.lines], references[: args.lines]
    release = LoadedRelease(args.release)
    if release.runtime != "numpy" or release.document["release"]["precision"] != "float32":
        parser.error(f"{args.release}: a float32 NumPy release is needed")
    arrays = dict(release.network.a)
    variants = {"float32": (), **PARTS, "all": tuple(p for v in PARTS.values() for p in v)}
    rows = {}
    for name, prefixes in variants.items():
        release.network = Network(rounded(arrays, prefixes), release.config.model)
        rows[name] = {
            "arrays": sorted(n for n in arrays if n.startswith(prefixes)) if prefixes else [],
            "greedy": bleu(release, sources, references, 1),
            "beam5": bleu(release, sources, references, 5),
        }
        print(name, rows[name]["greedy"], rows[name]["beam5"], flush=True)
    results = {
        "command": "scripts/int8_parts.py --release RELEASE --source SOURCE --reference REFERENCE",
        "lines": len(sources),
        "machine": platform.processor() or platform.machine(),
        "bleu_lowercase": rows,
    }
    text = json.dumps(results, indent=2) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
