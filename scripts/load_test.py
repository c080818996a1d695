#!/usr/bin/env python3
"""Load test of `seq2seq-shared serve`: concurrent clients on loopback, beside offline
`translate` on the same lines in the same run.

    python scripts/load_test.py --model-dir M --lines test2016.de [--clients 64,32]
        [--seconds 60] [--lines-per-request 1] [--output result.json] [-- SERVE OPTIONS]

1. Offline: `Translator.translate` (what `seq2seq-shared translate` runs: length-sorted
   batches of 64) on every non-empty line of --lines, timed after a warm-up, gives the
   reference lines/s and the expected translation of each line.
2. The server is started as `seq2seq-shared serve --port 0` (options after `--` go to it),
   and, for each --clients value, C clients each send requests of --lines-per-request
   lines (drawn in a seeded shuffled order) one after another for --seconds, after
   --warmup seconds that are not counted. Every answer is checked against the offline
   translation of its lines; its latency is recorded.
3. Reported as one JSON document: lines/s (lines answered inside the window, and as
   offline; and all lines answered) and its ratio to offline; the server's mean batch
   and offline decoding in those batch shapes (the clients' order of lines, that many
   at a time, each batch one call), the ratio to it, latency p50/p95/p99 (nearest rank, every request
   answered inside the window), errors, mismatches, the CPU used by the clients and by
   the server (in cores: both share this machine), the server's RSS sampled every second,
   its batching statistics, and that SIGTERM stopped it with exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from seq2seq_shared.data.writer import atomic_write_text


def offline(model_dir: Path, lines: list[str], shortlist: bool) -> tuple:
    """The translator, the offline translations and lines/s (after a warm-up on 64
    lines), of a model directory or a release (with its shortlist where the server is
    given --shortlist)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from seq2seq_shared.config import DecodeConfig
    from seq2seq_shared.runtime import load_translator

    translator = load_translator(model_dir, DecodeConfig(shortlist=shortlist))
    translator.translate(lines[:64])
    started = time.perf_counter()
    translations = translator.translate(lines)
    return translator, translations, len(lines) / (time.perf_counter() - started)


def client_order(count: int, seed: int) -> list[int]:
    """The order in which the clients send the lines (seeded)."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return order


def offline_in_batches(translator, lines: list[str], order: list[int], size: int) -> float:
    """Lines/s of offline decoding in the server's batch shapes: the clients' order of
    lines, `size` lines at a time (the server's mean batch), each batch one call, as
    the server's decoding thread makes it (a batch sorts its own lines, no more)."""
    chosen = [lines[i] for i in order]

    def decode_all() -> None:
        for start in range(0, len(chosen), size):
            translator.translate(chosen[start : start + size], batch_size=size)

    decode_all()  # warm-up: a backend that compiles per shape
    started = time.perf_counter()
    decode_all()
    return len(chosen) / (time.perf_counter() - started)


class Server:
    """`seq2seq-shared serve` in a child process, its URL, its RSS."""

    def __init__(self, model_dir: Path, options: list[str]):
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "seq2seq_shared.cli",
                "serve",
                "--model-dir",
                str(model_dir),
                "--port",
                "0",
                *options,
            ],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.url = None
        for line in self.process.stderr:
            found = re.search(r"on (http://[^/\s]+)/", line)
            if found:
                self.url = found.group(1)
                break
        if self.url is None:
            raise SystemExit(f"the server did not start (exit code {self.process.wait()})")
        threading.Thread(target=self.process.stderr.read, daemon=True).start()  # drain

    def rss_mb(self) -> float | None:
        try:
            text = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:  # (it has exited)
            return None
        return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(120)


class Connection:
    """One keep-alive HTTP/1.1 connection, as lean as a client can be: on a 2-core machine
    the clients share the CPU with the server (httpx clients took 0.6 of a core at 64
    clients, a third of the machine; this takes a fraction of that)."""

    def __init__(self, url: str):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port, self.reader, self.writer = host, int(port), None, None

    async def post_json(self, path: str, document) -> tuple[int, object]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = json.dumps(document).encode()
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host.encode(), len(body), body)
        )
        try:
            status = int((await self.reader.readline()).split()[1])
            length, close = 0, False
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = b"close" in value.lower()
            answer = json.loads(await self.reader.readexactly(length))
        except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
            self.close()
            raise
        if close:
            self.close()
        return status, answer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Tally:
    """What the clients' answers inside the measured window add up to."""

    def __init__(self, expected: dict[str, str]):
        self.expected = expected
        self.counted = {"requests": 0, "lines": 0, "answered_lines": 0, "errors": 0}
        self.counted["mismatches"] = 0
        self.latencies: list[float] = []
        self.examples: list[dict] = []

    def add(self, chosen: list[str], got: list[str] | None, answer, latency: float) -> None:
        """One answered request: `got` the translations, or None and `answer` the error."""
        self.counted["requests"] += 1
        self.latencies.append(latency)
        offline = [self.expected[line] for line in chosen]
        if got is None:
            self.counted["errors"] += 1
            self._example(answer)
        elif got != offline:
            self.counted["mismatches"] += 1
            self._example({"lines": chosen, "got": got, "offline": offline})
        else:
            self.counted["lines"] += len(chosen)  # answered, and as offline
        if got is not None:
            self.counted["answered_lines"] += len(chosen)

    def _example(self, example: dict) -> None:
        if len(self.examples) < 5:
            self.examples.append(example)

    def summary(self, seconds: float, **after_counts: float) -> dict:
        """The run's record: the counts, `after_counts`, rates, latencies, examples."""
        latencies = sorted(self.latencies)

        def percentile(p: float) -> float:  # nearest rank
            return round(1000 * latencies[max(0, math.ceil(p * len(latencies)) - 1)], 1)

        percentiles = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
        return {
            **self.counted,
            **after_counts,
            "lines_per_second": round(self.counted["lines"] / seconds, 1),  # as offline
            "answered_lines_per_second": round(self.counted["answered_lines"] / seconds, 1),
            "latency_ms": (
                {name: percentile(p) for name, p in percentiles.items()}
                | {"max": round(1000 * latencies[-1], 1)}
                if latencies
                else None
            ),
            "examples": self.examples,
        }


async def translate_request(connection: Connection, chosen: list[str]) -> tuple:
    """POST one request: (the translations or None, the answer or the error)."""
    status = None
    try:
        status, answer = await connection.post_json("/v1/translate", {"text": chosen})
        if status == 200:
            return [t["text"] for t in answer["translations"]], answer
    except (
        OSError,
        IndexError,
        ValueError,
        KeyError,
        TypeError,
        asyncio.IncompleteReadError,
    ) as error:
        answer = {"error": f"{type(error).__name__}: {error}"}
    return None, {"status": status, "answer": answer}


async def load(
    url: str,
    clients: int,
    seconds: float,
    warmup: float,
    per_request: int,
    lines: list[str],
    expected: dict[str, str],
    seed: int,
) -> dict:
    order = client_order(len(lines), seed)
    cursor = 0
    tally = Tally(expected)
    start = time.perf_counter()
    measure_from, end = start + warmup, start + warmup + seconds

    async def client():
        nonlocal cursor
        connection = Connection(url)
        while time.perf_counter() < end:
            chosen = [lines[order[(cursor + i) % len(order)]] for i in range(per_request)]
            cursor += per_request
            sent = time.perf_counter()
            got, answer = await translate_request(connection, chosen)
            done = time.perf_counter()
            if measure_from <= done <= end:  # answered inside the window: counted
                tally.add(chosen, got, answer, done - sent)
        connection.close()

    client_cpu = time.process_time()
    await asyncio.gather(*(client() for _ in range(clients)))
    client_cpu = time.process_time() - client_cpu
    elapsed = time.perf_counter() - start
    return {
        "clients": clients,
        "seconds": seconds,
        # client_cpu_share: of one core, this process
        **tally.summary(seconds, client_cpu_share=round(client_cpu / elapsed, 3)),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured_run(server, clients: int, args, lines, expected, offline_rate: float) -> tuple:
    """One --clients value's load with the server's CPU share, and the server's
    batching over it (lines and batches)."""
    before = httpx.get(server.url + "/health").json()["batching"]
    server_cpu, started = cpu_seconds(server.process.pid), time.perf_counter()
    run = asyncio.run(
        load(server.url, clients, args.seconds, args.warmup, args.lines_per_request,
             lines, expected, args.seed)
    )  # fmt: skip
    run["server_cpu_share"] = round(
        (cpu_seconds(server.process.pid) - server_cpu) / (time.perf_counter() - started), 3
    )
    run["ratio_to_offline"] = round(run["lines_per_second"] / offline_rate, 3)
    run["answered_ratio_to_offline"] = round(run["answered_lines_per_second"] / offline_rate, 3)
    after = httpx.get(server.url + "/health").json()["batching"]
    return run, {k: after[k] - before[k] for k in ("lines", "batches")}


def server_batches(translator, lines, order, run: dict, batching: dict) -> dict:
    """The server's mean batch over a run, offline decoding in that shape, the ratio."""
    size = batching["lines"] / max(batching["batches"], 1)
    in_batches = offline_in_batches(translator, lines, order, max(round(size), 1))
    return {
        "mean_batch_lines": round(size, 1),
        "offline_in_server_batches_lines_per_second": round(in_batches, 1),
        "answered_ratio_to_offline_in_server_batches": round(
            run["answered_lines_per_second"] / in_batches, 3
        ),
    }


def main() -> None:
    args, serve_options = parse_arguments()
    lines = [line for line in args.lines.read_text(encoding="utf-8").splitlines() if line]
    translator, translations, offline_rate = offline(
        args.model_dir, lines, "--shortlist" in serve_options
    )
    order = client_order(len(lines), args.seed)
    expected = dict(zip(lines, translations))
    server = Server(args.model_dir, serve_options)
    memory = MemorySampler(server)
    runs = []
    try:
        for clients in (int(c) for c in args.clients.split(",")):
            run, in_run = measured_run(server, clients, args, lines, expected, offline_rate)
            run.update(server_batches(translator, lines, order, run, in_run))
            runs.append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "examples"}), file=sys.stderr)
        batching = httpx.get(server.url + "/health").json()["batching"]
    finally:
        memory.stop()
        exit_code = server.stop()
    result = {
        "model_dir": str(args.model_dir),
        "lines_file": str(args.lines),
        "distinct_lines": len(lines),
        "lines_per_request": args.lines_per_request,
        "serve_options": serve_options,
        "offline_lines_per_second": round(offline_rate, 1),
        "runs": runs,
        "server_rss_mb": memory.summary(),
        "batching": batching,
        "sigterm_exit_code": exit_code,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    text = json.dumps(result, indent=2)
    if args.output:
        atomic_write_text(args.output, text + "\n")
    print(text)


def parse_arguments() -> tuple[argparse.Namespace, list[str]]:
    """The options, and what follows `--` (the server's own options)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--lines", type=Path, required=True, help="source lines, one per line")
    parser.add_argument("--clients", default="64,32", help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured, per count")
    parser.add_argument("--warmup", type=float, default=5.0, help="not measured, per count")
    parser.add_argument("--lines-per-request", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    return parser.parse_args(argv[:split]), argv[split + 1 :]


class MemorySampler:
    """The server's resident memory, read every second on a thread until `stop`."""

    def __init__(self, server: Server):
        self.server = server
        self.rss = [server.rss_mb()]
        self.stopped = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self.stopped.wait(1.0):
            value = self.server.rss_mb()
            if value is not None:
                self.rss.append(value)

    def stop(self) -> None:
        self.stopped.set()

    def summary(self) -> dict:
        rss = self.rss
        return {
            "start": round(rss[0], 1),
            "end": round(rss[-1], 1),
            "max": round(max(rss), 1),
            "every_10_s": [round(x) for x in rss[::10]],
        }


if __name__ == "__main__":
    main()
