"""Translate a file far larger than memory with N worker processes, resumably.

    python scripts/batch_translate.py --model-dir M -i corpus.de -o corpus.en --workers 4

1. The input is streamed into shards of --shard-lines lines (`<output>.shards/NNNNN.in`).
2. Workers (each loads the model once; with --gpus 0,1 worker k sees only GPU k mod 2
   through CUDA_VISIBLE_DEVICES) translate shards; each shard's output is written
   atomically, so a crash costs at most the shard a worker was on.
3. A re-run skips every shard whose output is complete (same line count as its input).
4. The shards are merged in input order into the output (atomically) and the line count
   is checked against the input's. The shard folder is then removed (--keep-shards keeps it).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

from tqdm import tqdm

from seq2seq_shared.files import atomic_write, atomic_write_text, iter_lines, write_lines

_translator = None


def split(input_path: Path, shard_dir: Path, shard_lines: int) -> list[tuple[Path, int]]:
    """Stream the input into shard files (once; a re-run reuses them). [(shard, lines)]."""
    manifest_path = shard_dir / "manifest.json"
    stat = input_path.stat()
    identity = {"input": str(input_path.resolve()), "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns, "shard_lines": shard_lines}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest["identity"] == identity:
            return [(shard_dir / name, count) for name, count in manifest["shards"]]
        raise SystemExit(f"error: {shard_dir} holds shards of another input or shard size; "
                         f"remove it to start over")
    shard_dir.mkdir(parents=True, exist_ok=True)
    shards: list[tuple[str, int]] = []
    buffer: list[bytes] = []

    def flush() -> None:
        name = f"{len(shards):05d}.in"
        atomic_write(shard_dir / name, lambda temporary: temporary.write_bytes(b"".join(buffer)))
        shards.append((name, len(buffer)))
        buffer.clear()

    with open(input_path, "rb") as file:
        for line in file:  # splits on b"\n" alone
            buffer.append(line if line.endswith(b"\n") else line + b"\n")
            if len(buffer) == shard_lines:
                flush()
    if buffer:
        flush()
    atomic_write_text(manifest_path, json.dumps({"identity": identity, "shards": shards}))
    return [(shard_dir / name, count) for name, count in shards]


def count_lines(path: Path) -> int:
    with open(path, "rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))


def start_worker(model_dir: str, batch_size: int, gpus: list[str], slots) -> None:
    if gpus:  # before Keras is imported in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slots.get() % len(gpus)]
    from seq2seq_shared import Translator
    from seq2seq_shared.config import DecodeConfig

    global _translator
    _translator = Translator.from_model_dir(model_dir, DecodeConfig(batch_size=batch_size))


def translate_shard(job: tuple[str, str]) -> int:
    shard, errors = job
    lines = iter_lines(Path(shard), errors=errors)
    return write_lines(_translator.translate_stream(lines), Path(shard).with_suffix(".out"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("-i", "--input", type=Path, required=True)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--shard-lines", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--gpus", default=os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                        help="comma-separated GPU ids, one worker per GPU in turn")
    parser.add_argument("--errors", choices=["strict", "replace"], default="strict")
    parser.add_argument("--keep-shards", action="store_true")
    args = parser.parse_args()
    if not args.input.is_file():
        raise SystemExit(f"error: {args.input}: no such file")

    shard_dir = args.output.with_name(args.output.name + ".shards")
    shards = split(args.input, shard_dir, args.shard_lines)
    total = sum(count for _, count in shards)
    done = {shard: count for shard, count in shards if shard.with_suffix(".out").exists()
            and count_lines(shard.with_suffix(".out")) == count}
    pending = [shard for shard, _ in shards if shard not in done]
    print(f"{len(shards)} shards, {total} lines; {len(done)} shards already done", file=sys.stderr)

    gpus = [g for g in args.gpus.split(",") if g.strip()]
    context = multiprocessing.get_context("spawn")
    slots = context.Manager().Queue()
    for slot in range(args.workers):
        slots.put(slot)
    with tqdm(total=total, initial=sum(done.values()), unit="line", desc="translating") as bar:
        if pending:
            with context.Pool(args.workers, initializer=start_worker,
                              initargs=(args.model_dir, args.batch_size, gpus, slots)) as pool:
                for lines in pool.imap_unordered(translate_shard,
                                                 [(str(s), args.errors) for s in pending]):
                    bar.update(lines)

    def merge(temporary: Path) -> None:
        with open(temporary, "wb") as output:
            for shard, _ in shards:
                with open(shard.with_suffix(".out"), "rb") as part:
                    shutil.copyfileobj(part, output)

    atomic_write(args.output, merge)
    written = count_lines(args.output)
    if written != total:
        raise SystemExit(f"error: {args.output} has {written} lines but {args.input} has "
                         f"{total}; the shards in {shard_dir} are kept for inspection")
    if not args.keep_shards:
        shutil.rmtree(shard_dir)
    print(f"{args.output}: {written} lines", file=sys.stderr)


if __name__ == "__main__":
    main()
