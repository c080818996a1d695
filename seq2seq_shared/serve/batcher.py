"""Dynamic batching: the lines of concurrent requests decoded together, off the event loop.

Requests hand their lines to `Batcher.translate` (async). One decoding thread takes what
has queued, waiting at most `max_wait_ms` after the first piece for more, up to
`max_batch_lines` lines, and decodes each group of equal options in one call (which
sorts its lines by length, as `translate` does). Each request gets back exactly its own
lines' results, in order. A request longer than `max_batch_lines` is cut into pieces
that queue one after another, so a long request never starves short ones.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Piece:
    lines: list[str]
    options: object
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


@dataclass
class Stats:
    batches: int = 0
    lines: int = 0
    pending_lines: int = 0  # of the requests in progress
    largest_batch: int = 0
    errors: int = 0
    decode_seconds: float = 0.0
    abandoned_lines: int = 0  # never decoded: their request timed out or its client left

    def as_dict(self) -> dict:
        return {
            name: round(value, 3) if isinstance(value, float) else value
            for name, value in self.__dict__.items()
        }


@dataclass
class Batcher:
    translate_lines: Callable[[list[str], object], list]  # (lines, options) -> results
    max_batch_lines: int = 64
    max_wait_ms: float = 5.0
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._held: _Piece | None = None
        self._lock = threading.Lock()  # guards pending_lines and abandoned_lines
        self._thread = threading.Thread(target=self._run, name="decoder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Decode everything queued so far, then end the decoding thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    async def translate(self, lines: list[str], options) -> list:
        """The results for `lines`, in order; cancelling (a timeout, a client gone) drops
        the pieces not yet decoding."""
        loop = asyncio.get_running_loop()
        size, results, queued = self.max_batch_lines, [], 0
        with self._lock:
            self.stats.pending_lines += len(lines)
        try:
            for start in range(0, len(lines), size):
                piece = _Piece(lines[start : start + size], options, loop.create_future(), loop)
                self._queue.put(piece)
                queued += len(piece.lines)
                results += await piece.future
                if len(results) != start + len(piece.lines):
                    raise RuntimeError(
                        f"the decoder returned {len(results) - start} results "
                        f"for {len(piece.lines)} lines"
                    )
        finally:
            with self._lock:
                self.stats.pending_lines -= len(lines)
                self.stats.abandoned_lines += len(lines) - queued  # (never queued)
        return results

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _next(self, timeout: float | None) -> _Piece | None:
        """The held piece, else the queue's next (None: the stop signal). queue.Empty
        when nothing came within `timeout` (0: only what is there now)."""
        if self._held is not None:
            piece, self._held = self._held, None
            return piece
        if timeout is None:
            return self._queue.get()
        return self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()

    def _run(self) -> None:
        while True:
            first = self._next(None)
            if first is None:
                return
            batch, size = [first], len(first.lines)
            deadline = time.monotonic() + self.max_wait_ms / 1000
            stopping = False
            while size < self.max_batch_lines:
                try:
                    piece = self._next(max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    break
                if piece is None:
                    stopping = True
                    break
                if size + len(piece.lines) > self.max_batch_lines:
                    self._held = piece  # first in the next batch
                    break
                batch.append(piece)
                size += len(piece.lines)
            self._decode(batch)
            if stopping:
                self._queue.put(None)  # after whatever queued behind it

    def _decode(self, batch: list[_Piece]) -> None:
        live = [piece for piece in batch if not piece.future.cancelled()]
        with self._lock:
            self.stats.abandoned_lines += sum(len(p.lines) for p in batch if p not in live)
        groups: dict[object, list[_Piece]] = {}
        for piece in live:
            groups.setdefault(piece.options, []).append(piece)
        for options, pieces in groups.items():
            try:
                self._decode_group(options, pieces)
            except Exception:
                if len(pieces) == 1:
                    continue
                for piece in pieces:  # alone, so only the request that fails gets a 500
                    try:
                        self._decode_group(options, [piece])
                    except Exception:
                        pass

    def _decode_group(self, options, pieces: list[_Piece]) -> None:
        """Decode the pieces' lines in one call and hand each piece its results; on a
        failure, logged, fail a lone piece's request and re-raise."""
        lines = [line for piece in pieces for line in piece.lines]
        started = time.perf_counter()
        try:
            results = self.translate_lines(lines, options)
        except Exception as error:  # the requests fail; the server goes on
            logger.exception("decoding %d lines failed", len(lines))
            self.stats.errors += 1
            if len(pieces) == 1:
                pieces[0].loop.call_soon_threadsafe(_fail, pieces[0].future, error)
            raise
        self.stats.decode_seconds += time.perf_counter() - started
        self.stats.batches += 1
        self.stats.lines += len(lines)
        self.stats.largest_batch = max(self.stats.largest_batch, len(lines))
        start = 0
        for piece in pieces:
            share = results[start : start + len(piece.lines)]
            start += len(piece.lines)
            piece.loop.call_soon_threadsafe(_succeed, piece.future, share)


def _succeed(future: asyncio.Future, value) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future, error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
