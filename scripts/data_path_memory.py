"""The training data path's memory over one whole epoch of a prepared corpus, no model.

    python scripts/data_path_memory.py PREPARED [--batch-tokens 3072] [--every 5000]

Plans the epoch's batches as `train` does (TensorFlow's free shapes: no rounding, no fixed
rows), builds every batch, and prints the process's resident memory (VmRSS, its anonymous
and file-backed parts, and the peak VmHWM, from /proc/self/status) after planning and every
`--every` batches: the figure behind the README's "flat over an epoch". Linux only.
"""

from __future__ import annotations

import argparse
import time

from seq2seq_shared.data.batches import ParallelBatches, within_lengths
from seq2seq_shared.data.prepared import PreparedCorpus


def memory() -> str:
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return ", ".join(
        f"{name} {fields[name].strip()}" for name in ("VmRSS", "RssAnon", "RssFile", "VmHWM")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prepared", help="a directory `seq2seq-shared prepare` wrote")
    parser.add_argument("--batch-tokens", type=int, default=3072)
    parser.add_argument("--every", type=int, default=5000, help="batches between reports")
    args = parser.parse_args()
    started = time.perf_counter()
    pairs = PreparedCorpus(args.prepared).pairs()
    batches = ParallelBatches(
        pairs,
        batch_tokens=args.batch_tokens,
        seed=1234,
        multiple=1,
        index=within_lengths(pairs, (128, 128)),
    )
    batches.set_epoch(1)
    print(
        f"planned {len(batches)} batches in {time.perf_counter() - started:.1f} s: {memory()}",
        flush=True,
    )
    started = time.perf_counter()
    for index in range(len(batches)):
        batches.batch(index)
        if (index + 1) % args.every == 0:
            print(f"{index + 1} batches: {memory()}", flush=True)
    print(f"epoch built in {time.perf_counter() - started:.1f} s: {memory()}", flush=True)


if __name__ == "__main__":
    main()
