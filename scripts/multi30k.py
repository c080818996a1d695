#!/usr/bin/env python3
"""The Multi30k German -> English recipe: train, evaluate on test2016, write a results JSON.

    python scripts/multi30k.py MULTI30K_DIR [--model-dir models/multi30k] [-- TRAIN OPTIONS]

MULTI30K_DIR holds train, val and test2016 .de/.en files (Multi30k task 1; see the README
for where to get them). Settings come from data/multi30k.toml; options after `--` go to
`seq2seq-shared train` (e.g. `-- --no-share-lstm` for the sharing ablation). Re-running
the command resumes an interrupted training, then evaluates. Results: MODEL_DIR/results.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from seq2seq_shared.data.writer import atomic_write_text  # noqa: E402
from seq2seq_shared.training.run_dir import RunDir  # noqa: E402  (no Keras: cheap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("multi30k", type=Path, help="directory with train/val/test2016 .de/.en")
    parser.add_argument("--model-dir", type=Path, default=Path("models/multi30k"))
    parser.add_argument("--config", type=Path, default=ROOT / "data" / "multi30k.toml")
    parser.add_argument("train_options", nargs="*", help="after --: more `train` options")
    # argparse gives positionals their (empty) share before it reaches a `--` that follows
    # them, then rejects what comes after it; so the train options are split off here.
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.train_options += argv[split + 1 :]
    data, model_dir = args.multi30k, args.model_dir
    for name in ("train", "val", "test2016"):
        for language in ("de", "en"):
            if not (data / f"{name}.{language}").is_file():
                sys.exit(
                    f"error: {data / f'{name}.{language}'} not found; MULTI30K_DIR must hold "
                    f"train, val and test2016 .de/.en files"
                )

    command = [sys.executable, "-m", "seq2seq_shared.cli"]
    run(
        [
            *command,
            "train",
            data / "train.de",
            data / "train.en",
            "--valid",
            data / "val.de",
            data / "val.en",
            "--model-dir",
            model_dir,
            "--config",
            args.config,
            "--quiet",
            *args.train_options,
        ]
    )
    hypotheses = model_dir / "test2016.hyp.en"
    scores = json.loads(
        run(
            [
                *command,
                "evaluate",
                "--model-dir",
                model_dir,
                "--source",
                data / "test2016.de",
                "--reference",
                data / "test2016.en",
                "--json",
                "-o",
                hypotheses,
            ],
            capture=True,
        )
    )
    info = json.loads(run([*command, "info", "--model-dir", model_dir, "--json"], capture=True))
    state = RunDir(model_dir).read_state()
    results = {
        "test_set": "Multi30k test2016 de->en",
        "bleu_lowercase": scores["bleu_lowercase"],
        "bleu": scores["bleu"],
        "chrf": scores["chrf"],
        "perplexity": scores["perplexity"],
        "signatures": scores["signatures"],
        "parameters": info["total"],
        "config": info["config"]["model"],
        "training": {
            "minutes": round(state.seconds / 60, 1),
            "steps": state.step,
            "epochs": state.history[-1]["epoch"],
            "stopped": state.finished,
            "best_validation": dataclasses.asdict(state.best),
        },
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu_model(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "command": " ".join(map(str, sys.argv)),
        "hypotheses": str(hypotheses),
    }
    path = model_dir / "results.json"
    atomic_write_text(path, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def run(arguments: list, capture: bool = False) -> str:
    arguments = [str(a) for a in arguments]
    print("+", " ".join(arguments), file=sys.stderr, flush=True)
    result = subprocess.run(arguments, stdout=subprocess.PIPE if capture else None, text=True)
    if result.returncode != 0:
        sys.exit(result.returncode)
    return result.stdout if capture else ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
