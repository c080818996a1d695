"""Text files as translation needs them: lines split on "\\n" alone, atomic writes.

Lines are split exactly as `wc -l` counts them: never on \\r, U+0085, U+2028 or U+2029
(Python's `str.splitlines` splits on all of those, which silently misaligns parallel data).
"""
from __future__ import annotations

import os
import queue
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path


def iter_lines(path: Path | None, errors: str = "strict") -> Iterator[str]:
    """Decoded lines of `path` (stdin when None), streamed, without their "\\n".

    `errors="strict"` stops at invalid UTF-8 with `file:line:column`; "replace" substitutes
    U+FFFD and keeps going.
    """
    name = "<stdin>" if path is None else str(path)
    if path is None:
        yield from _decode(sys.stdin.buffer, name, errors)
        return
    try:
        with open(path, "rb") as file:
            yield from _decode(file, name, errors)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, expected a text file") from None


def _decode(file, name: str, errors: str) -> Iterator[str]:
    for number, raw in enumerate(file, start=1):  # binary files split on b"\n" alone
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        try:
            yield raw.decode("utf-8", errors=errors)
        except UnicodeDecodeError as error:
            raise ValueError(f"{name}:{number}:{error.start + 1}: invalid UTF-8 (byte "
                             f"{raw[error.start]:#04x}); convert the file to UTF-8 (e.g. with "
                             f"iconv) or pass --errors replace") from None


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


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[Path], None],
                 before_rename: Callable[[Path], None] | None = None) -> None:
    """Call `write(temporary_path)`, fsync it, then rename it to `path` (atomic on POSIX).

    A crash at any moment leaves either the old file or the complete new one, never a part.
    `before_rename(temporary_path)` runs on the complete file just before it replaces `path`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the full suffix (".weights.h5") on the temporary name: Keras checks it.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-",
                                         suffix="".join(path.suffixes))
    os.close(handle)
    temporary = Path(temporary)
    try:
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide the file from others
        write(temporary)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        if before_rename is not None:
            before_rename(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda temporary: temporary.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def check_output_writable(path: Path) -> None:
    """Fail before any work if `path` cannot be written."""
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; give a file path for the output")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"{path}: its directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{path}: cannot write in {parent}; choose another output path")


def write_lines(lines: Iterable[str], path: Path | None) -> int:
    """Write one line per item: to stdout as they come (flushed), or atomically to `path`."""
    count = 0
    if path is None:
        for line in lines:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
            count += 1
        return count

    def write(temporary: Path) -> None:
        nonlocal count
        with open(temporary, "w", encoding="utf-8", newline="\n") as file:
            for line in lines:
                file.write(line + "\n")
                count += 1

    atomic_write(path, write)
    return count
