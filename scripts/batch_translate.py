"""Translate a file far larger than memory with N worker processes, resumably.

    python scripts/batch_translate.py --model-dir M -i corpus.de -o corpus.en --workers 4

--model-dir given more than once translates with the ensemble of those models (their
log-probabilities averaged at every step, as `translate` does): the distillation step of
`scripts/multi30k.py --teacher`.

1. The input is streamed into shards of --shard-lines lines (`<output>.shards/NNNNN.in`).
2. Workers (each loads the model once; with --gpus 0,1 worker k sees only GPU k mod 2
   through CUDA_VISIBLE_DEVICES) translate shards; each shard's output is written
   atomically, so a crash costs at most the shard a worker was on.
3. A re-run skips every shard whose output is still valid: see "What makes a shard valid".
4. The shards are merged in input order into the output (atomically) and the line count
   is checked against the input's. The shard folder is then removed (--keep-shards keeps it).

What makes a shard valid: `<output>.shards/manifest.json` records two identities.

* The input's: its resolved path, size, mtime_ns and --shard-lines, and its sha256,
  hashed while it is split and again when a re-run reuses the shards (a file rewritten
  with the same size and mtime is caught). A re-run against another input or shard size
  is refused: the shards would be of other lines. Remove the shard folder to start over.
* The translation's: the model's fingerprint (sha256 of config.json, the weights and
  the SentencePiece models) and the decoding options that change the output (--errors,
  the length limits). A re-run with another model or options deletes the finished
  shard outputs, says so, and translates them again. --batch-size and --workers change
  no output, so they are not part of it.

A shard's output counts as done only if the translation identity matches and the output
has as many lines as the shard's input. A re-run first deletes the temporary files that
writes killed midway left (`.NAME.tmp-*`, in the shard folder and beside the output).
Errors (a missing or damaged model, unreadable input) print one `error: ...` line, exit 1;
they name the user's file and line, never a shard's. Options are checked before any work;
the output is written by the package's one writer (a FIFO, a device or a symlink's
target in place; a regular file atomically, its mode kept) and may not be the input.
The workers end with the script, however it ends (Linux: a parent-death signal).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from seq2seq_shared.config import DecodeConfig
from seq2seq_shared.data.files import check_input, file_sha256, iter_lines
from seq2seq_shared.data.writer import (
    atomic_write,
    atomic_write_text,
    check_outputs,
    write_lines,
    write_output,
    writes_in_place,
)
from seq2seq_shared.model_dir import ModelDir

MANIFEST = "manifest.json"
_translator = None
_startup_error: str | None = None


def translation_identity(
    model_dirs: list[str], errors: str, decode_config: DecodeConfig
) -> dict[str, Any]:
    """What a shard's translation depends on; anything else (batch size) must stay out,
    or an innocent change would throw finished shards away."""
    decoding = dataclasses.asdict(decode_config)
    del decoding["batch_size"]  # the same translations, batched differently
    # Each raises if its model is missing or damaged; one model is recorded as before.
    fingerprints = [ModelDir(model_dir).fingerprint() for model_dir in model_dirs]
    models = {"model": fingerprints[0]} if len(fingerprints) == 1 else {"models": fingerprints}
    return {**models, "decoding": {"errors": errors, **decoding}}


def input_identity(input_path: Path, shard_lines: int) -> dict[str, Any]:
    """What tells, without reading the input again, that the shards are of this input."""
    stat = input_path.stat()
    return {
        "input": str(input_path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "shard_lines": shard_lines,
    }


def read_manifest(shard_dir: Path) -> dict[str, Any] | None:
    path = shard_dir / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or not {"identity", "shards"} <= manifest.keys():
        raise SystemExit(f"error: {path}: corrupt; remove {shard_dir} to start over")
    return manifest


def write_manifest(shard_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(shard_dir / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def split(input_path: Path, shard_dir: Path, shard_lines: int) -> dict[str, Any]:
    """Stream the input into shard files once; returns the manifest (a re-run reuses it)."""
    identity = input_identity(input_path, shard_lines)
    manifest = read_manifest(shard_dir)
    if manifest is not None:
        if manifest["identity"] == identity and file_sha256(input_path) == manifest.get(
            "input_sha256"
        ):
            return manifest
        raise SystemExit(
            f"error: {shard_dir} holds shards of another input (or of this file before it "
            f"changed) or shard size than {input_path} with --shard-lines {shard_lines}; "
            f"remove it to start over"
        )
    shard_dir.mkdir(parents=True, exist_ok=True)
    shards: list[tuple[str, int]] = []
    buffer: list[bytes] = []
    digest = hashlib.sha256()

    def flush() -> None:
        name = f"{len(shards):05d}.in"
        atomic_write(shard_dir / name, lambda temporary: temporary.write_bytes(b"".join(buffer)))
        shards.append((name, len(buffer)))
        buffer.clear()

    with open(input_path, "rb") as file:
        for line in file:  # splits on b"\n" alone
            digest.update(line)
            buffer.append(line if line.endswith(b"\n") else line + b"\n")
            if len(buffer) == shard_lines:
                flush()
    if buffer:
        flush()
    # No translation identity yet: no shard output is valid until one is recorded.
    manifest = {"identity": identity, "input_sha256": digest.hexdigest(), "shards": shards}
    write_manifest(shard_dir, manifest)
    return manifest


def remove_temporaries(shard_dir: Path, output: Path) -> None:
    """Delete what `atomic_write` left when its process was killed mid-write."""
    leftovers = [*shard_dir.glob(".*.tmp-*"), *output.parent.glob(f".{output.name}.tmp-*")]
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)


def adopt_translation(
    shard_dir: Path, manifest: dict[str, Any], translation: dict[str, Any]
) -> None:
    """Make the shard outputs belong to `translation`: those of another are deleted first.

    Deleting before recording the new identity matters: a kill in between must never
    leave another model's outputs under this model's name."""
    if manifest.get("translation") == translation:
        return
    stale = [
        path
        for name, _ in manifest["shards"]
        if (path := (shard_dir / name).with_suffix(".out")).exists()
    ]
    if stale:
        print(
            f"{len(stale)} finished shards were translated by another model or other "
            f"options; translating them again",
            file=sys.stderr,
        )
    for path in stale:
        path.unlink()
    manifest["translation"] = translation
    write_manifest(shard_dir, manifest)


def count_lines(path: Path) -> int:
    with open(path, "rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))


def finished(shards: list[tuple[Path, int]]) -> dict[Path, int]:
    """{shard: lines} of the shards whose output is complete (the identity already holds)."""
    return {
        shard: count
        for shard, count in shards
        if shard.with_suffix(".out").exists() and count_lines(shard.with_suffix(".out")) == count
    }


def end_with_parent(parent: int) -> None:
    """Linux: this process gets SIGKILL when the script (`parent`) dies, however it dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool ends its workers on exit
        return
    if os.getppid() != parent:  # it died before the call
        os._exit(1)


def start_worker(
    model_dirs: list[str], decode_config: DecodeConfig, gpus: list[str], slots, parent: int
) -> None:
    """Load the model once per worker. A failure is kept for `translate_shard` to raise:
    raised here, it would make the pool start new workers forever (a silent hang)."""
    end_with_parent(parent)
    if gpus:  # before Keras is imported in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slots.get() % len(gpus)]
    global _translator, _startup_error
    try:
        from seq2seq_shared.runtime.ensemble import load_translators  # (release: no TF)

        _translator = load_translators(list(model_dirs), decode_config)
    except Exception as error:  # noqa: BLE001 (reported in the parent as one line)
        _startup_error = f"a worker could not load {', '.join(model_dirs)}: {error}"


def translate_shard(job: tuple[str, str, str, int]) -> int:
    if _startup_error is not None:
        raise ValueError(_startup_error)
    shard, errors, input_name, first_line = job  # errors name the input's own lines
    lines = iter_lines(Path(shard), errors=errors, name=input_name, first_line=first_line)
    try:
        return write_lines(_translator.translate_stream(lines), Path(shard).with_suffix(".out"))
    except OSError as error:  # as text: an OSError subclass may not survive the trip back
        raise ValueError(str(error)) from None


def translate(
    args: argparse.Namespace, decode_config: DecodeConfig, shards: list[tuple[Path, int]]
) -> None:
    """Translate the shards not yet done, with one progress bar for the whole job."""
    total = sum(count for _, count in shards)
    done = finished(shards)
    pending = [shard for shard, _ in shards if shard not in done]
    first, line = {}, 1  # each shard's first line in the input
    for shard, count in shards:
        first[shard], line = line, line + count
    print(f"{len(shards)} shards, {total} lines; {len(done)} shards already done", file=sys.stderr)
    if not pending:
        return
    gpus = [g for g in args.gpus.split(",") if g.strip()]
    context = multiprocessing.get_context("spawn")
    slots = context.Queue()  # (no manager process: nothing outlives the script)
    for slot in range(args.workers):
        slots.put(slot)
    with tqdm(total=total, initial=sum(done.values()), unit="line", desc="translating") as bar:
        with context.Pool(
            args.workers,
            initializer=start_worker,
            initargs=(args.model_dirs, decode_config, gpus, slots, os.getpid()),
        ) as pool:
            jobs = [(str(s), args.errors, str(args.input), first[s]) for s in pending]
            for lines in pool.imap_unordered(translate_shard, jobs):
                bar.update(lines)


def merge(shards: list[tuple[Path, int]], output: Path) -> int:
    """Concatenate the shard outputs in input order into `output` (the package's writer:
    a FIFO or device in place, a file atomically); the lines written."""
    written = 0

    def write(merged) -> None:
        nonlocal written
        for shard, _ in shards:
            with open(shard.with_suffix(".out"), "rb") as part:
                for block in iter(lambda: part.read(1 << 20), b""):  # noqa: B023
                    merged.write(block)
                    written += block.count(b"\n")

    write_output(output, write)
    return written


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a usage error otherwise, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model-dir",
        dest="model_dirs",
        action="append",
        required=True,
        help="a model or release; more than once: their ensemble",
    )
    parser.add_argument("-i", "--input", type=Path, required=True)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--workers", type=positive, default=1)
    parser.add_argument("--shard-lines", type=positive, default=100_000)
    parser.add_argument("--batch-size", type=positive, default=DecodeConfig.batch_size)
    parser.add_argument(
        "--gpus",
        default=os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        help="comma-separated GPU ids, one worker per GPU in turn",
    )
    parser.add_argument("--errors", choices=["strict", "replace"], default="strict")
    parser.add_argument(
        "--beam-size", type=positive, default=DecodeConfig.beam_size, help="1: greedy search"
    )
    parser.add_argument(
        "--length-penalty", type=float, default=DecodeConfig.length_penalty, help="GNMT alpha"
    )
    parser.add_argument("--keep-shards", action="store_true")
    args = parser.parse_args()
    try:  # usage errors (exit 2), before any work
        args.decode_config = DecodeConfig(
            batch_size=args.batch_size, beam_size=args.beam_size, length_penalty=args.length_penalty
        )
    except ValueError as error:
        parser.error(str(error))
    if any(not gpu.strip().isdigit() for gpu in args.gpus.split(",") if gpu.strip()):
        parser.error(f"--gpus {args.gpus!r}: expected GPU numbers separated by commas, e.g. 0,1")
    return args


def run(args: argparse.Namespace) -> None:
    check_input(args.input)
    check_outputs({"-o": args.output}, {"-i": args.input})  # never the input, nor a folder
    decode_config = args.decode_config
    # Before the split: a missing or damaged model fails now, not after streaming the input.
    translation = translation_identity(args.model_dirs, args.errors, decode_config)
    # Beside the output; beside the input where the output is a FIFO or a device.
    beside = args.input if writes_in_place(args.output) else args.output
    shard_dir = beside.with_name(beside.name + ".shards")
    remove_temporaries(shard_dir, args.output)
    manifest = split(args.input, shard_dir, args.shard_lines)
    adopt_translation(shard_dir, manifest, translation)
    shards = [(shard_dir / name, count) for name, count in manifest["shards"]]
    translate(args, decode_config, shards)
    total = sum(count for _, count in shards)
    written = merge(shards, args.output)
    if written != total:
        raise SystemExit(
            f"error: {args.output} has {written} lines but {args.input} has "
            f"{total}; the shards in {shard_dir} are kept for inspection"
        )
    if not args.keep_shards:
        shutil.rmtree(shard_dir)
    print(f"{args.output}: {written} lines", file=sys.stderr)


def main() -> None:
    args = parse_arguments()
    try:
        run(args)
    except (ValueError, OSError) as error:  # a worker's error too: the pool re-raises it here
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
