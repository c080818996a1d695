"""Text files as translation reads them: lines split on "\\n" alone, checked inputs, hashes.

Lines are split exactly as `wc -l` counts them: never on \\r, U+0085, U+2028 or U+2029
(Python's `str.splitlines` splits on all of those, which silently misaligns parallel data).
Writing is `writer.py`'s.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def iter_lines(
    path: Path | None, errors: str = "strict", name: str | None = None, first_line: int = 1
) -> Iterator[str]:
    """Decoded lines of `path` (stdin when None), streamed, without their "\\n".

    `errors="strict"` stops at invalid UTF-8 with `file:line:column`; "replace" substitutes
    U+FFFD and keeps going. `name` and `first_line`: how errors name the lines (a shard
    of a user's file names the file and its line).
    """
    name = name or ("<stdin>" if path is None else str(path))
    if path is None:
        yield from _decode(sys.stdin.buffer, name, errors, first_line)
        return
    with open_input(path) as file:
        yield from _decode(file, name, errors, first_line)


@contextmanager
def open_input(path: Path) -> Iterator[BinaryIO]:
    """`path` opened for binary reading; a missing file or a directory is one clear error."""
    check_input(path)
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    with file:
        yield file


def check_input(path: Path) -> None:
    """Refuse, before any work, an input that is missing or a directory."""
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, expected a text file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")


def check_rereadable(path: Path, why: str) -> None:
    """Refuse, before any work, an input that is read more than once (`why`) and so
    cannot be a pipe or a device, which can be read once only."""
    check_input(path)
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError(
            f"{path}: not a regular file (a pipe or a device), and {why}; save it to a file first"
        )


def _decode(file, name: str, errors: str, first_line: int = 1) -> Iterator[str]:
    for number, raw in enumerate(file, start=first_line):  # binary files split on b"\n" alone
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        try:
            yield raw.decode("utf-8", errors=errors)
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{name}:{number}:{error.start + 1}: invalid UTF-8 (byte "
                f"{raw[error.start]:#04x}); convert the file to UTF-8 (e.g. with "
                f"iconv) or pass --errors replace"
            ) from None


def fixed_chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    """Lists of `size` lines (the last one shorter)."""
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def available_chunks(lines: Iterable[str], max_size: int) -> Iterator[list[str]]:
    """Group `lines` into lists of at most `max_size`, never waiting for more than is there.

    A reader thread pulls lines as the producer writes them; each chunk takes at least one
    line and then only what has already arrived. So a pipe from a slow producer gets its
    translations as it goes, while a file still gets full chunks.
    """
    arrived: queue.Queue = queue.Queue(maxsize=4 * max_size)  # bounds memory
    end = object()

    def read() -> None:
        try:
            for line in lines:
                arrived.put(line)
        except BaseException as error:  # re-raised in the consumer, e.g. invalid UTF-8
            arrived.put(error)
        arrived.put(end)

    threading.Thread(target=read, daemon=True).start()
    finished = False
    while not finished:
        chunk = [arrived.get()]
        while len(chunk) < max_size:
            try:
                chunk.append(arrived.get_nowait())
            except queue.Empty:
                break
        if chunk[-1] is end:
            chunk.pop()
            finished = True
        for item in chunk:
            if isinstance(item, BaseException):
                raise item
        if chunk:
            yield chunk


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in blocks (never whole: corpora can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
