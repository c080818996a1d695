#!/usr/bin/env python3
"""Train Joey NMT under a wall-clock limit, then decode test2016 (greedy and beam 5) with
its best checkpoint and score lowercase BLEU: the Joey rows of the peer benchmark (issue 29).

    .peers/joey-venv/bin/python scripts/peers/run_joey.py CONFIG [--minutes 60]

Run it with Joey's own Python (scripts/peers/setup_joey.sh); CONFIG comes from
joey_config.py. Joey has no time limit of its own: this script starts `joeynmt train`,
counts the minutes from Joey's first training step (data loading is set-up, as it is in
our runs) and sends SIGINT when they are up. Joey catches that, saves its latest weights
and exits; `best.ckpt` stays the best validation's. Each validation is logged with its
elapsed minutes. Results go to MODEL_DIR.results.json (beside Joey's model directory),
Joey's console output to MODEL_DIR.console.log.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GRACE_SECONDS = 300  # after SIGINT, before a kill: Joey may be mid-validation
STARTED = re.compile(r"joeynmt\.training - EPOCH 1$")
STEP = re.compile(
    r"Epoch\s+(\d+), Step:\s+(\d+), Batch Loss:\s+([\d.]+), Batch Acc: ([\d.]+), "
    r"Tokens per Sec:\s+(\d+), Lr: ([\d.e-]+)"
)
EVALUATION = re.compile(r"Evaluation result \((greedy|beam search)\): (.*), ([\d.]+)\[sec\]")
PARAMETERS = re.compile(r"Total params: (\d+)")
GENERATION = re.compile(r"Generation took ([\d.]+)\[sec\]")
INTERRUPTED = re.compile(r"Interrupt at epoch (\d+), step (\d+)\.")
# `python -m joeynmt` with two fixes for the torch Joey runs on (see joey_launch.py).
JOEY = [sys.executable, str(Path(__file__).with_name("joey_launch.py"))]


@dataclass
class Progress:
    """What Joey's log has said so far (fed one line at a time by `read_line`)."""

    launched: float
    started: float | None = None  # when the first training step began (monotonic)
    parameters: int | None = None
    step: int = 0
    epoch: int = 0
    logs: list[dict[str, Any]] = field(default_factory=list)
    validations: list[dict[str, Any]] = field(default_factory=list)
    generation_seconds: float | None = None

    def minutes(self, now: float) -> float:
        return 0.0 if self.started is None else (now - self.started) / 60


def read_line(progress: Progress, line: str, now: float) -> None:
    """Update `progress` with one line of Joey's log, read at time `now`."""
    line = line.rstrip()
    if progress.started is None and STARTED.search(line):
        progress.started = now
    elif match := STEP.search(line):
        epoch, step, loss, accuracy, tokens, rate = match.groups()
        progress.epoch, progress.step = int(epoch), int(step)
        progress.logs.append(
            {
                "minutes": round(progress.minutes(now), 2),
                "step": int(step),
                "loss": float(loss),
                "tokens_per_second": int(tokens),
                "learning_rate": float(rate),
            }
        )
    elif match := EVALUATION.search(line):
        scores = dict(item.split(":") for item in match.group(2).split(", "))
        progress.validations.append(
            {
                "minutes": round(progress.minutes(now), 2),
                "step": progress.step,
                **{name.strip(): float(value) for name, value in scores.items()},
                "seconds": float(match.group(3)),
            }
        )
    elif match := PARAMETERS.search(line):
        progress.parameters = int(match.group(1))
    elif match := GENERATION.search(line):
        progress.generation_seconds = float(match.group(1))
    elif match := INTERRUPTED.search(line):
        progress.epoch, progress.step = int(match.group(1)), int(match.group(2))


def run_joey(
    command: list[str], log_path: Path, minutes: float | None, threads: int = 0
) -> tuple[Progress, str]:
    """Run Joey, reading its log as it comes; with `minutes` (training), print each
    validation and interrupt Joey that long after training began. Returns the progress and
    why it stopped. `threads` > 0 sets torch's (OMP_NUM_THREADS)."""
    progress = Progress(launched=time.monotonic())
    environment = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        env=environment,
        # A job started in the background (`nohup ... &`) inherits SIGINT ignored, and a
        # Python that starts so never raises KeyboardInterrupt: Joey would not stop.
        preexec_fn=_default_sigint,
    )
    reader = threading.Thread(
        target=_read, args=(process, progress, log_path, bool(minutes)), daemon=True
    )
    reader.start()
    interrupted = None
    while process.poll() is None:
        time.sleep(0.5)
        now = time.monotonic()
        if interrupted is None and minutes and progress.minutes(now) >= minutes:
            process.send_signal(signal.SIGINT)  # Joey saves its latest weights and exits
            interrupted = now
        elif interrupted is not None and now - interrupted > GRACE_SECONDS:
            process.kill()
    reader.join()
    if interrupted is not None:
        return progress, f"time limit of {minutes:g} minutes"
    return progress, f"Joey exited with code {process.returncode}"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _read(process: subprocess.Popen, progress: Progress, log_path: Path, announce: bool) -> None:
    with log_path.open("a", encoding="utf-8") as log:
        for line in process.stdout:
            log.write(line)
            log.flush()
            validations = len(progress.validations)
            read_line(progress, line, time.monotonic())
            if announce and len(progress.validations) > validations:
                entry = progress.validations[-1]
                print(
                    f"{entry['minutes']:6.1f} min  step {entry['step']:6d}  "
                    f"val BLEU {entry.get('bleu', float('nan')):5.2f}  "
                    f"loss {entry.get('loss', float('nan')):.4f}",
                    flush=True,
                )


def write_yaml(config: dict[str, Any], path: Path) -> None:
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")


def decode_test(
    config: dict[str, Any],
    checkpoint: Path,
    beam_size: int,
    log_path: Path,
    threads: int = 0,
    batch_size: int = 0,
) -> dict[str, Any]:
    """Decode the config's test set with `checkpoint` and score it (cased and lowercase);
    `batch_size` (sentences) 0: the config's."""
    import sacrebleu

    model_dir = Path(config["model_dir"])
    name = "greedy" if beam_size == 1 else f"beam{beam_size}"
    test_config = json.loads(json.dumps(config))  # a deep copy
    test_config["data"].pop("dev", None)  # decode the test set only
    test_config["testing"] |= {"load_model": str(checkpoint), "beam_size": beam_size}
    if batch_size:
        test_config["testing"]["batch_size"] = batch_size
        name += f"-batch{batch_size}"
    write_yaml(test_config, model_dir / f"test-{name}.yaml")
    prefix = model_dir / f"test2016.{name}"
    command = [*JOEY, "test", str(model_dir / f"test-{name}.yaml")]
    progress, stopped = run_joey([*command, "-o", str(prefix)], log_path, None, threads)
    hypotheses_path = Path(f"{prefix}.test")
    if not hypotheses_path.is_file():
        raise RuntimeError(f"Joey wrote no translations ({stopped}); see {log_path}")
    hypotheses = hypotheses_path.read_text(encoding="utf-8").splitlines()
    data = config["data"]
    references_path = Path(f"{data['test']}.{data['trg']['lang']}")
    references = references_path.read_text(encoding="utf-8").splitlines()
    lowercase_bleu = sacrebleu.BLEU(lowercase=True)  # the benchmark's score
    lowercase = lowercase_bleu.corpus_score(hypotheses, [references])
    cased = sacrebleu.BLEU().corpus_score(hypotheses, [references])
    seconds = progress.generation_seconds
    return {
        "beam_size": beam_size,
        "bleu_lowercase": round(lowercase.score, 2),
        "bleu": round(cased.score, 2),
        "signature": str(lowercase_bleu.get_signature()),
        "sentences": len(hypotheses),
        "generation_seconds": seconds,
        "sentences_per_second": round(len(hypotheses) / seconds, 1) if seconds else None,
        "batch_size": test_config["testing"]["batch_size"],
        "hypotheses": str(hypotheses_path),
    }


def training_summary(progress: Progress, stopped: str, minutes: float) -> dict[str, Any]:
    """The training half of the results."""
    rates = [entry["tokens_per_second"] for entry in progress.logs[1:]]  # the first warms up
    end = time.monotonic()
    return {
        "minutes_limit": minutes,
        "minutes": round(progress.minutes(end), 2),
        "setup_seconds": round((progress.started or end) - progress.launched, 1),
        "stopped": stopped,
        "steps": progress.step,
        "epochs": progress.epoch,
        # Joey's own count: target tokens (eos included, padding not) per second of
        # training, validation excluded, over each logging window
        "tokens_per_second_median": statistics.median(rates) if rates else None,
        "validations": progress.validations,
        "log": progress.logs,
    }


def best_checkpoint(model_dir: Path) -> tuple[Path | None, str]:
    """Joey's best validation's checkpoint, else its latest (no validation in time)."""
    for name, why in (("best.ckpt", "best validation"), ("latest.ckpt", "latest: no validation")):
        if (model_dir / name).exists():
            return (model_dir / name).resolve(), why
    return None, "none"


def machine(threads: int) -> dict[str, Any]:
    import joeynmt
    import torch

    return {
        "joeynmt": joeynmt.__version__,
        "torch": torch.__version__,
        "torch_threads": threads or torch.get_num_threads(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def decode_speed(config: dict[str, Any], model_dir: Path, args: argparse.Namespace) -> None:
    """Sentences/s of Joey's own `test` (its "Generation took" seconds: model and data
    loading excluded) at each batch size, greedy and beam, added to the results file."""
    out = args.out or model_dir.with_name(f"{model_dir.name}.results.json")
    results = json.loads(out.read_text(encoding="utf-8"))
    checkpoint, _ = best_checkpoint(model_dir)
    if checkpoint is None:
        sys.exit(f"error: {model_dir} holds no checkpoint; train first")
    log_path = model_dir.with_name(f"{model_dir.name}.console.log")
    speeds = results.setdefault("decode_speed", {})
    for batch_size in args.decode_speed:
        for beam_size in (1, args.beam_size):
            found = decode_test(config, checkpoint, beam_size, log_path, args.threads, batch_size)
            name = f"{'greedy' if beam_size == 1 else f'beam{beam_size}'} batch {batch_size}"
            speeds[name] = {k: found[k] for k in ("sentences_per_second", "bleu_lowercase")}
            print(f"{name}: {speeds[name]}", flush=True)
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    temporary.replace(out)


def main() -> None:
    args = parse_arguments()
    import yaml

    config = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    model_dir = Path(config["model_dir"])
    if args.decode_speed:
        decode_speed(config, model_dir, args)
        return
    if model_dir.exists():
        sys.exit(f"error: {model_dir} exists and Joey will not overwrite it; remove it first")
    log_path = model_dir.with_name(f"{model_dir.name}.console.log")
    out = args.out or model_dir.with_name(f"{model_dir.name}.results.json")
    command = [*JOEY, "train", str(args.config), "--skip-test"]
    progress, stopped = run_joey(command, log_path, args.minutes, args.threads)
    checkpoint, chosen = best_checkpoint(model_dir)
    results = {
        "toolkit": "Joey NMT",
        "name": config["name"],
        "config": str(args.config.resolve()),
        "parameters": progress.parameters,
        "training": training_summary(progress, stopped, args.minutes),
        "checkpoint": {"path": str(checkpoint), "chosen": chosen},
        "test": {},
        "machine": machine(args.threads),
        "command": " ".join(sys.argv),
    }
    if checkpoint and not args.skip_test:
        for beam_size in (1, args.beam_size):
            name = "greedy" if beam_size == 1 else f"beam{beam_size}"
            results["test"][name] = decode_test(
                config, checkpoint, beam_size, log_path, args.threads
            )
            print(f"test2016 {name}: lowercase BLEU {results['test'][name]['bleu_lowercase']}")
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    temporary.replace(out)
    print(f"results: {out}")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path, help="a Joey config from joey_config.py")
    parser.add_argument("--minutes", type=float, default=60.0, help="training time limit")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch's; 0: its default")
    parser.add_argument("--skip-test", action="store_true", help="train only")
    parser.add_argument("--out", type=Path, help="default: MODEL_DIR.results.json")
    parser.add_argument(
        "--decode-speed",
        type=int,
        nargs="+",
        metavar="BATCH",
        help="instead: decode the test set with the trained model's best checkpoint at these "
        "batch sizes (sentences), greedy and beam, and add the sentences/s to the results",
    )
    return parser.parse_args()


if __name__ == "__main__":
    main()
