#!/usr/bin/env python3
"""Our decoding sentences/s on a test set, as run_joey.py --decode-speed measures Joey's:
greedy and beam 5 at each batch size, model loading excluded, scored with lowercased BLEU.

    python scripts/peers/decode_speed.py --model-dir M [--model-dir RELEASE ...] \
        --source test2016.de --reference test2016.en --batch-sizes 64 1024 --out speed.json

With --with-shortlist each case runs again with the release's vocabulary shortlist
(`seq2seq-shared shortlist`). A trained model directory runs the Keras search (a warm-up pass first compiles it, as
Joey needs none); a release runs its own runtime (NumPy or ONNX). Each figure is the
median of --rounds timed passes over every line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def measure(path: Path, sources: list[str], references: list[str], args) -> dict:
    from seq2seq_shared.config import DecodeConfig
    from seq2seq_shared.decoding.evaluate import quality
    from seq2seq_shared.runtime import load_translator

    found = {}
    cases = [(b, k, s) for b in args.batch_sizes for k in (1, args.beam_size)
             for s in ((False, True) if args.with_shortlist else (False,))]  # fmt: skip
    for batch_size, beam_size, shortlist in cases:
        config = DecodeConfig(batch_size=batch_size, beam_size=beam_size, shortlist=shortlist)
        translator = load_translator(path, config)
        outputs = translator.translate(sources)  # warm-up (compiles a Keras search)
        seconds = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            translator.translate(sources)
            seconds.append(time.perf_counter() - started)
        name = f"{'greedy' if beam_size == 1 else f'beam{beam_size}'} batch {batch_size}"
        name += " shortlist" if shortlist else ""
        found[name] = {
            "sentences_per_second": round(len(sources) / statistics.median(seconds), 1),
            "bleu_lowercase": quality(outputs, references)["bleu_lowercase"],
        }
        print(f"{path.name} {name}: {found[name]}", flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, action="append", required=True)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--with-shortlist", action="store_true", help="each case also with --shortlist"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sources = args.source.read_text(encoding="utf-8").splitlines()
    references = args.reference.read_text(encoding="utf-8").splitlines()
    results = {
        "command": " ".join(sys.argv),
        "models": {str(p): measure(p, sources, references, args) for p in args.model_dir},
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
