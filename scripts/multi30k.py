#!/usr/bin/env python3
"""The Multi30k German -> English recipe: train, evaluate on test2016, write a results JSON.

    python scripts/multi30k.py MULTI30K_DIR [--model-dir models/multi30k] [-- TRAIN OPTIONS]

MULTI30K_DIR holds train, val and test2016 .de/.en files (Multi30k task 1; see the README
for where to get them). Settings come from data/multi30k.toml; options after `--` go to
`seq2seq-shared train` (e.g. `-- --no-share-lstm` for the sharing ablation). Re-running
the command resumes an interrupted training, then evaluates. Results: MODEL_DIR/results.json.

Sequence-level knowledge distillation (Kim & Rush, 2016): with `--teacher T` (more than
once: an ensemble), train.de is first translated by the teacher with beam search
(`--teacher-beam-size`, 5) into MODEL_DIR.distilled.en, through scripts/batch_translate.py
(resumable, shard by shard), and the model is trained on train.de and those translations
instead of train.en. A re-run reuses finished translations of the same teachers and
source; results.json reports the translation's time and the teachers' training time.
`--distil` does both in one command: it trains a teacher by this recipe into
MODEL_DIR.teacher (resumed or reused like any run), then the model from its translations.
Teacher and student get the same settings (options after `--` go to both); for a student
of another shape, train the teacher first and pass it with `--teacher`. `--distil` with
`--teacher T` distils from the ensemble of T and the recipe's teacher.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from seq2seq_shared.data.writer import atomic_write_text  # noqa: E402
from seq2seq_shared.training.run_dir import RunDir  # noqa: E402  (no Keras: cheap)


def main() -> None:
    args = parse_arguments()
    if args.distil:  # the teacher first, by the same recipe, then the student from it
        teacher = args.model_dir.with_name(args.model_dir.name + ".teacher")
        train_and_report(args, teacher, args.multi30k / "train.en", None)
        args.teachers.append(teacher)
    target, distillation = args.multi30k / "train.en", None
    if args.teachers:
        target, distillation = distill(args.multi30k / "train.de", args.model_dir, args)
    results = train_and_report(args, args.model_dir, target, distillation)
    print(json.dumps(results, indent=2))


def train_and_report(
    args: argparse.Namespace, model_dir: Path, target: Path, distillation: dict | None
) -> dict:
    """Train (or resume) on train.de and `target`, score test2016, write results.json."""
    data = args.multi30k
    command = [sys.executable, "-m", "seq2seq_shared.cli"]
    valid = ["--valid", data / "val.de", data / "val.en"]
    run(
        [*command, "train", data / "train.de", target, *valid, "--model-dir", model_dir]
        + ["--config", args.config, "--quiet", *args.train_options]
    )
    hypotheses = model_dir / "test2016.hyp.en"
    test = ["--source", data / "test2016.de", "--reference", data / "test2016.en"]
    evaluate = [*command, "evaluate", "--model-dir", model_dir, *test, "--json", "-o", hypotheses]
    scores = json.loads(run(evaluate, capture=True))
    info = json.loads(run([*command, "info", "--model-dir", model_dir, "--json"], capture=True))
    results = results_document(scores, info, RunDir(model_dir).read_state(), hypotheses)
    if distillation is not None:
        results["distillation"] = distillation
    atomic_write_text(model_dir / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("multi30k", type=Path, help="directory with train/val/test2016 .de/.en")
    parser.add_argument("--model-dir", type=Path, default=Path("models/multi30k"))
    parser.add_argument("--config", type=Path, default=ROOT / "data" / "multi30k.toml")
    parser.add_argument(
        "--teacher",
        dest="teachers",
        action="append",
        type=Path,
        default=[],
        help="distil from this model (more than once: an ensemble)",
    )
    parser.add_argument("--teacher-beam-size", type=int, default=5)
    parser.add_argument(
        "--distil",
        action="store_true",
        help="train a teacher by this recipe first (MODEL_DIR.teacher, with the same train "
        "options), then distil from it",
    )
    parser.add_argument("train_options", nargs="*", help="after --: more `train` options")
    # argparse gives positionals their (empty) share before it reaches a `--` that follows
    # them, then rejects what comes after it; so the train options are split off here.
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.train_options += argv[split + 1 :]
    for name in ("train", "val", "test2016"):
        for language in ("de", "en"):
            if not (args.multi30k / f"{name}.{language}").is_file():
                sys.exit(
                    f"error: {args.multi30k / f'{name}.{language}'} not found; MULTI30K_DIR "
                    f"must hold train, val and test2016 .de/.en files"
                )
    return args


def results_document(scores: dict, info: dict, state, hypotheses: Path) -> dict:
    """results.json: test2016's scores, the model, how it trained, on what machine."""
    return {
        "test_set": "Multi30k test2016 de->en",
        **{key: scores[key] for key in ("bleu_lowercase", "bleu", "chrf", "perplexity")},
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


def distill(source: Path, model_dir: Path, args: argparse.Namespace) -> tuple[Path, dict]:
    """The teachers' beam-search translation of `source` (made, or reused if a finished
    one of the same teachers, beam and source is there) and what it cost."""
    from seq2seq_shared.data.files import file_sha256
    from seq2seq_shared.model_dir import ModelDir

    target = model_dir.with_name(model_dir.name + ".distilled.en")
    target.parent.mkdir(parents=True, exist_ok=True)  # as `train` makes the model's
    record_path = target.with_name(target.name + ".json")
    identity = {
        "teachers": [ModelDir(teacher).fingerprint() for teacher in args.teachers],
        "beam_size": args.teacher_beam_size,
        "source_sha256": file_sha256(source),
    }
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.exists() else {}
    if record.get("identity") == identity and target.exists():
        lines = target.read_text(encoding="utf-8").count("\n")
        if lines == record["distillation"]["lines"]:
            print(f"{target}: the teachers' translations, reused", file=sys.stderr)
            return target, record["distillation"]
    started = time.monotonic()
    teachers = [item for teacher in args.teachers for item in ("--model-dir", teacher)]
    script = ROOT / "scripts" / "batch_translate.py"
    beam = str(args.teacher_beam_size)
    run([sys.executable, script, *teachers, "-i", source, "-o", target, "--beam-size", beam])
    distillation = {
        "teachers": [str(teacher) for teacher in args.teachers],
        "teacher_training_minutes": [_training_minutes(t) for t in args.teachers],
        "beam_size": args.teacher_beam_size,
        "translation_minutes": round((time.monotonic() - started) / 60, 1),
        "lines": target.read_text(encoding="utf-8").count("\n"),
    }
    record = {"identity": identity, "distillation": distillation}
    atomic_write_text(record_path, json.dumps(record, indent=2) + "\n")
    return target, distillation


def _training_minutes(model_dir: Path) -> float | None:
    """A trained teacher's training time; None for a release (it keeps no run state)."""
    try:
        return round(RunDir(model_dir).read_state().seconds / 60, 1)
    except FileNotFoundError:
        return None


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
