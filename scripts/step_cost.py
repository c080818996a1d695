#!/usr/bin/env python3
"""What one decoder step costs a release by the number of rows it runs: greedy's batch
against a beam's (K times the rows), the network alone, no search.

    python scripts/step_cost.py --model-dir RELEASE [--rows 64,320] [--steps 200]

Encodes --rows' first value of random sources (14 pieces, about test2016's mean), repeats
them to each row count, and times --steps calls of the step (after 5 warm-up calls). The
ratio of the larger row count's time to the smaller's bounds a beam's speed against
greedy's from above: at equal steps, beam K / greedy <= 1 / ratio, before any selection
work.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from seq2seq_shared.runtime import load_translator


def step_milliseconds(network, encoded: dict, rows: int, steps: int, rng) -> float:
    first = len(encoded["mask"])
    index = np.arange(rows) % first  # the first batch's sentences, repeated
    constants = {k: v[index] for k, v in network.constants(encoded).items()}
    states = [[h[index], c[index]] for h, c in encoded["states"]]
    tokens = rng.integers(4, network.target_vocab_size, rows)
    for _ in range(5):
        network.decode_step(tokens, states, constants)
    started = time.perf_counter()
    for _ in range(steps):
        network.decode_step(tokens, states, constants)
    return 1000 * (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--rows", default="64,320")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    rows = [int(r) for r in args.rows.split(",")]
    network = load_translator(args.model_dir).decoder.network
    rng = np.random.default_rng(0)
    encoded = network.encode(rng.integers(4, network.target_vocab_size, (rows[0], 14)))
    times = {n: round(step_milliseconds(network, encoded, n, args.steps, rng), 3) for n in rows}
    ratio = round(times[rows[-1]] / times[rows[0]], 2)
    print(json.dumps({"step_ms_by_rows": times, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
