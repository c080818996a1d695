#!/usr/bin/env python3
"""Gather one side-by-side peer run into docs/results/peers.json: our model directory
(trained by scripts/multi30k.py) beside Joey NMT's results (scripts/peers/run_joey.py).

    python scripts/peers/collect.py --ours MODEL_DIR --ours-beam BEAM.json \
        --joey JOEY.results.json [--joey ...] --conditions "..." --out docs/results/peers.json

Per toolkit: parameters, training target tokens/s, the validation BLEU curve against
minutes (and its value at 10, 20, 40 and 60 minutes: the last validation by then), and
test2016 lowercased BLEU greedy and beam 5 (ours: MODEL_DIR/results.json, written by
multi30k.py, and --ours-beam, the JSON of `seq2seq-shared evaluate --beam-size 5 --json`).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path
from typing import Any

MARKS = (10, 20, 40, 60)


def at_marks(curve: list[list[float]]) -> dict[str, float | None]:
    """{minutes: the BLEU of the last validation by then} for each mark."""
    found: dict[str, float | None] = {}
    for mark in MARKS:
        by_then = [bleu for minutes, bleu in curve if minutes <= mark + 0.5]  # (rounding)
        found[str(mark)] = by_then[-1] if by_then else None
    return found


def ours(model_dir: Path, beam: Path | None, speeds: list[Path]) -> dict[str, Any]:
    with (model_dir / "metrics.csv").open(encoding="utf-8") as file:
        rows = [row for row in csv.DictReader(file) if row.get("valid_bleu")]
    curve = [[float(row["minutes"]), float(row["valid_bleu"])] for row in rows]
    rates = [float(row["target_tokens_per_second"]) for row in rows[1:]]  # (1st: warm-up)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    results = json.loads((model_dir / "results.json").read_text(encoding="utf-8"))
    test = {"greedy": results["bleu_lowercase"]}
    if beam is not None:
        test["beam5"] = json.loads(beam.read_text(encoding="utf-8"))["bleu_lowercase"]
    return {
        "toolkit": "seq2seq-shared",
        "name": "recipe (data/multi30k.toml)",
        "parameters": results.get("parameters"),
        "model": config["model"],
        "tokens_per_second_median": statistics.median(rates) if rates else None,
        "epochs": float(rows[-1]["epoch"]) if rows else 0,
        "validation_curve": curve,
        "validation_bleu_at_minutes": at_marks(curve),
        "test2016_bleu_lowercase": test,
        "decode_speed": {  # decode_speed.py's, by what was measured (path: model or release)
            name: found
            for path in speeds
            for name, found in json.loads(path.read_text(encoding="utf-8"))["models"].items()
        },
    }


def joey(path: Path) -> dict[str, Any]:
    results = json.loads(path.read_text(encoding="utf-8"))
    training = results["training"]
    curve = [[v["minutes"], v["bleu"]] for v in training["validations"] if "bleu" in v]
    test = {name: entry["bleu_lowercase"] for name, entry in results["test"].items()}
    return {
        "toolkit": "Joey NMT " + results["machine"]["joeynmt"],
        "name": results["name"],
        "parameters": results["parameters"],
        "tokens_per_second_median": training["tokens_per_second_median"],
        "epochs": training["epochs"],
        "steps": training["steps"],
        "checkpoint": results["checkpoint"]["chosen"],
        "validation_curve": curve,
        "validation_bleu_at_minutes": at_marks(curve),
        "test2016_bleu_lowercase": test,
        "test_sentences_per_second_batch_64": {
            name: entry["sentences_per_second"] for name, entry in results["test"].items()
        },
        "decode_speed": results.get("decode_speed", {}),  # (run_joey.py --decode-speed)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ours", type=Path, required=True, help="our model directory")
    parser.add_argument("--ours-beam", type=Path, help="evaluate --beam-size 5 --json output")
    parser.add_argument("--ours-speed", type=Path, action="append", default=[],
                        help="decode_speed.py output")  # fmt: skip
    parser.add_argument("--joey", type=Path, action="append", default=[])
    parser.add_argument("--conditions", required=True, help="how the run was made")
    parser.add_argument("--command", action="append", default=[], help="the commands run")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    document = {
        "title": "Multi30k de-en, 60 minutes of training each, side by side",
        "conditions": args.conditions,
        "commands": args.command,
        "scoring": "sacreBLEU, 13a tokenization, lowercased, test2016 (1,000 sentences)",
        "rows": [ours(args.ours, args.ours_beam, args.ours_speed)]
        + [joey(path) for path in args.joey],
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
