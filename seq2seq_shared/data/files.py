"""Text files as translation needs them: lines split on "\\n" alone, atomic writes.

Lines are split exactly as `wc -l` counts them: never on \\r, U+0085, U+2028 or U+2029
(Python's `str.splitlines` splits on all of those, which silently misaligns parallel data).
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def iter_lines(path: Path | None, errors: str = "strict") -> Iterator[str]:
    """Decoded lines of `path` (stdin when None), streamed, without their "\\n".

    `errors="strict"` stops at invalid UTF-8 with `file:line:column`; "replace" substitutes
    U+FFFD and keeps going.
    """
    name = "<stdin>" if path is None else str(path)
    if path is None:
        yield from _decode(sys.stdin.buffer, name, errors)
        return
    with open_input(path) as file:
        yield from _decode(file, name, errors)


@contextmanager
def open_input(path: Path) -> Iterator[BinaryIO]:
    """`path` opened for binary reading; a missing file or a directory is one clear error."""
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, expected a text file") from None
    with file:
        yield file


def _decode(file, name: str, errors: str) -> Iterator[str]:
    for number, raw in enumerate(file, start=1):  # binary files split on b"\n" alone
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


_UMASK = os.umask(0o022)
os.umask(_UMASK)


class WriteError(OSError):
    """A file could not be written: the message names the path asked for and the reason."""

    def __init__(self, path: Path | str, reason: str, errno: int | None = None):
        super().__init__(errno, f"{path}: cannot write it ({reason})")
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return self.strerror or ""

    def __reduce__(self):  # so that it crosses processes (batch_translate's workers) intact
        return type(self), (self.path, self.reason, self.errno)


def atomic_write(
    path: Path, write: Callable[[Path], object], before_rename: Callable[[Path], None] | None = None
) -> None:
    """Call `write(temporary_path)`, fsync it, then rename it to `path` (atomic on POSIX).

    A crash at any moment leaves either the old file or the complete new one, never a part;
    a failure (a full disk) removes the temporary file and raises `WriteError` naming `path`.
    `before_rename(temporary_path)` runs on the complete file just before it replaces `path`.
    """
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Keep the full suffix (".weights.h5") on the temporary name: Keras checks it.
        handle, name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.tmp-", suffix="".join(path.suffixes)
        )
        os.close(handle)
        temporary = Path(name)
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide the file from others
        write(temporary)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        if before_rename is not None:
            before_rename(temporary)
        os.replace(temporary, path)
        _fsync_directory(path.parent)
    except BaseException as error:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            raise WriteError(path, _reason(error), error.errno) from None
        raise


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _reason(error: OSError) -> str:
    """What went wrong, without the file name (the caller names the path it was asked for)."""
    return error.strerror or str(error)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda temporary: temporary.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def check_output_writable(path: Path) -> None:
    """Fail before any work if `path` cannot be written."""
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; give a file path for the output")
    if _writes_through(path):
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{path}: not writable; choose another output path")
        return
    target = _regular_target(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"{path}: its directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{path}: cannot write in {parent}; choose another output path")


def _writes_through(path: Path) -> bool:
    """True for what must be written in place, never replaced: a device (/dev/null,
    /dev/stdout, a terminal), a FIFO, a socket (following symlinks)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def _regular_target(path: Path) -> Path:
    """Where an atomic write to `path` lands: a symlink's target, so the link survives."""
    return Path(os.path.realpath(path)) if os.path.islink(path) else path


def write_lines(lines: Iterable[str], path: Path | None) -> int:
    """Write one line per item; returns the count. Stdout, a device or a FIFO is written
    as lines come (flushed); a regular file (or a symlink's target) atomically, so a
    failure or a kill never leaves part of it. Write errors raise `WriteError`."""
    if path is None or _writes_through(path):
        return _write_through(lines, path)
    count = 0

    def write(temporary: Path) -> None:
        nonlocal count
        with open(temporary, "w", encoding="utf-8", newline="\n") as file:
            for line in lines:
                file.write(line + "\n")
                count += 1

    try:
        atomic_write(_regular_target(path), write)
    except WriteError as error:  # name the path the user gave, not a symlink's target
        raise WriteError(path, error.reason, error.errno) from None
    return count


def write_lines_during(path: Path, body: Callable[[Callable[[str], object]], object]) -> None:
    """Run `body(write_line)`; the lines it writes go to `path` as they come, so none is
    held in memory: a device or FIFO directly, a regular file through a temporary file
    that replaces `path` only once `body` has returned (a failure or a kill leaves no
    part of it). For a second output written beside another one (`--alignments`)."""
    if _writes_through(path):
        with open(path, "w", encoding="utf-8", newline="\n") as file:
            body(lambda line: file.write(line + "\n"))
        return
    target = _regular_target(path)

    def write(temporary: Path) -> None:
        with open(temporary, "w", encoding="utf-8", newline="\n") as file:
            body(lambda line: file.write(line + "\n"))

    try:
        atomic_write(target, write)
    except WriteError as error:  # name the path the user gave, not a symlink's target
        if Path(error.path) != target:
            raise  # (the other output's error)
        raise WriteError(path, error.reason, error.errno) from None


def discard_stdout() -> None:
    """Point stdout at /dev/null after it failed (a full disk, a closed pipe), so that the
    interpreter's own flush at exit fails no more and prints nothing."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _write_through(lines: Iterable[str], path: Path | None) -> int:
    name = "standard output" if path is None else str(path)
    count = 0
    try:
        file = sys.stdout if path is None else open(path, "w", encoding="utf-8", newline="\n")
        try:
            for line in lines:
                file.write(line + "\n")
                file.flush()
                count += 1
        finally:
            if path is not None:
                file.close()
    except BrokenPipeError:
        raise  # the reader left on purpose (`| head`); the CLI stops quietly
    except OSError as error:
        if path is None:
            discard_stdout()
        raise WriteError(
            name, f"{_reason(error)}; {count} line(s) were written", error.errno
        ) from None
    return count


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in blocks (never whole: corpora can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
