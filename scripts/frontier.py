#!/usr/bin/env python3
"""The frontier: shared against separate LSTMs at four sizes, each by the recipe's rules.

    python scripts/frontier.py MULTI30K_DIR [--models-dir models/frontier]
        [--results docs/results/frontier.json] [--point NAME ...]

Each point is `scripts/multi30k.py` (data/multi30k.toml: 60 minutes of training, then
greedy test2016) with its embedding and hidden sizes, then beam 5 on test2016. The two
kinds of a size have (nearly) the same parameter count, so the comparison is at equal
parameters and equal time. Points are trained one after another (run one training at a
time, e.g. pinned with `taskset -c 1`); a point already in the results file is skipped,
and an interrupted one resumes. `python scripts/plot_results.py` draws the results.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from seq2seq_shared.data.writer import atomic_write_text  # noqa: E402

# name -> (kind, embedding size, hidden size); a size's two kinds match in parameters.
POINTS = {
    "shared-1.3m": ("shared", 96, 208),
    "separate-1.3m": ("separate", 96, 144),
    "shared-2.7m": ("shared", 160, 336),
    "separate-2.7m": ("separate", 160, 240),
    "shared-5.3m": ("shared", 256, 512),
    "separate-5.3m": ("separate", 256, 368),
    "shared-10m": ("shared", 384, 736),
    "separate-10m": ("separate", 384, 528),
}


def train_and_score(data: Path, model_dir: Path, name: str, config: Path) -> dict[str, Any]:
    """One point: the recipe at this size (greedy test2016 in its results.json), then beam 5."""
    kind, embedding, hidden = POINTS[name]
    options = ["--embedding-dim", str(embedding), "--hidden-size", str(hidden)]
    if kind == "separate":
        options.append("--no-share-lstm")
    recipe = [sys.executable, str(ROOT / "scripts" / "multi30k.py"), str(data)]
    run([*recipe, "--model-dir", str(model_dir), "--config", str(config), "--", *options])
    greedy = json.loads((model_dir / "results.json").read_text(encoding="utf-8"))
    beam = json.loads(
        run(
            [
                *(sys.executable, "-m", "seq2seq_shared.cli", "evaluate"),
                *("--model-dir", str(model_dir), "--beam-size", "5", "--json"),
                *("--source", str(data / "test2016.de"), "--reference", str(data / "test2016.en")),
            ]
        )
    )
    return {
        "name": name,
        "kind": kind,
        "embedding_dim": embedding,
        "hidden_size": hidden,
        "parameters": greedy["parameters"],
        "greedy": {key: greedy[key] for key in ("bleu_lowercase", "bleu", "chrf")},
        "beam5": {key: beam[key] for key in ("bleu_lowercase", "bleu", "chrf")},
        "training": greedy["training"],
        "command": "python scripts/multi30k.py MULTI30K_DIR --model-dir DIR -- "
        + " ".join(options),
        "processor": greedy["machine"]["processor"],
    }


def run(arguments: list[str]) -> str:
    print("+", " ".join(arguments), file=sys.stderr, flush=True)
    result = subprocess.run(arguments, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        sys.exit(result.returncode)
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("multi30k", type=Path, help="directory with train/val/test2016 .de/.en")
    parser.add_argument("--models-dir", type=Path, default=Path("models/frontier"))
    parser.add_argument("--results", type=Path, default=ROOT / "docs/results/frontier.json")
    parser.add_argument("--point", action="append", choices=sorted(POINTS), default=None)
    parser.add_argument("--config", type=Path, default=ROOT / "data" / "multi30k.toml")
    args = parser.parse_args()
    results = {"title": "Shared against separate LSTMs at equal parameters", "points": []}
    if args.results.exists():
        results = json.loads(args.results.read_text(encoding="utf-8"))
    for name in args.point or POINTS:
        if any(point["name"] == name for point in results["points"]):
            print(f"{name}: in {args.results} already; skipped", file=sys.stderr)
            continue
        point = train_and_score(args.multi30k, args.models_dir / name, name, args.config)
        results["points"].append(point)
        atomic_write_text(args.results, json.dumps(results, indent=2) + "\n")
        print(json.dumps(point, indent=2))


if __name__ == "__main__":
    main()
