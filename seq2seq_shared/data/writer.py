"""The one writer of every output: a regular file replaced atomically (its mode and owner
kept), a FIFO, device or symlink's target written in place, a directory made whole or
not at all, and no output ever the same file as an input. Every command and script that
writes a user's file, and the model directory, write through here.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

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
        existing = _existing_regular(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Keep the full suffix (".weights.h5") on the temporary name: Keras checks it.
        handle, name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.tmp-", suffix="".join(path.suffixes)
        )
        os.close(handle)
        temporary = Path(name)
        write(temporary)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        _take_mode_and_owner(temporary, existing)
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


def atomic_directory(path: Path, fill: Callable[[Path], object]) -> None:
    """Make the directory `path` whole or not at all: `fill(temporary directory)` writes
    it beside `path`, and it is renamed into place at the end, so a kill at any moment
    leaves nothing or the complete directory. `path` must not exist, or be empty."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ValueError(f"{path}: exists and is not an empty directory; choose a new one")
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(path)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    held = os.open(temporary, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # (held while it is filled: not abandoned)
    try:
        os.chmod(temporary, 0o777 & ~_UMASK)  # as mkdir would make it (mkdtemp's is private)
        fill(temporary)
        if path.exists():
            path.rmdir()  # (empty: a directory cannot be renamed over another)
        os.rename(temporary, path)
        _fsync_directory(path.parent)
    except BaseException as error:
        shutil.rmtree(temporary, ignore_errors=True)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            raise WriteError(path, _reason(error), error.errno) from None
        raise
    finally:
        os.close(held)


def _remove_abandoned(path: Path) -> None:
    """Delete the temporary directories that writes of `path` killed midway left (their
    lock is free: the process that held it is gone), never one being written now."""
    for leftover in path.parent.glob(f".{path.name}.tmp-*"):
        if not leftover.is_dir():
            continue
        handle = os.open(leftover, os.O_RDONLY)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # another process is filling it
        else:
            shutil.rmtree(leftover, ignore_errors=True)
        finally:
            os.close(handle)


def _existing_regular(path: Path) -> os.stat_result | None:
    """The status of the file an atomic write replaces, or None where there is none; a
    directory, FIFO, device or socket is never replaced by a rename (WriteError)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(status.st_mode):
        raise WriteError(path, "not a regular file, and it is not replaced by one")
    return status


def _take_mode_and_owner(temporary: Path, existing: os.stat_result | None) -> None:
    """The new file gets the replaced file's permissions (and owner, where allowed): a
    0600 file stays private. A new file gets the umask's (not mkstemp's 0600)."""
    if existing is None:
        os.chmod(temporary, 0o666 & ~_UMASK)
        return
    os.chmod(temporary, stat.S_IMODE(existing.st_mode))
    if (existing.st_uid, existing.st_gid) != (os.getuid(), os.getgid()):
        try:
            os.chown(temporary, existing.st_uid, existing.st_gid)
        except PermissionError:  # (only root may give a file away: it stays the writer's)
            pass


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
    if writes_in_place(path):
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{path}: not writable; choose another output path")
        return
    target = _regular_target(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"{path}: its directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{path}: cannot write in {parent}; choose another output path")


def check_outputs(
    outputs: dict[str, Path | None], inputs: dict[str, Path | None] | None = None
) -> None:
    """Before any work: every output writable, and none the same file as an input or as
    another output (by device and inode where it exists, else by its resolved path), so
    that no output ever destroys an input. Devices (/dev/null) are never compared."""
    seen: dict[tuple, str] = {}
    for label, path in (inputs or {}).items():
        if path is not None and (key := _identity(path)) is not None:
            seen[key] = f"the input {label} ({path})"
    for label, path in outputs.items():
        if path is None:
            continue
        check_output_writable(path)
        key = _identity(path)
        if key is None:
            continue
        if key in seen:
            raise ValueError(
                f"{path}: is the same file as {seen[key]}; writing {label} there would "
                f"destroy it; choose another {label}"
            )
        seen[key] = f"the output {label} ({path})"


def _identity(path: Path) -> tuple | None:
    """What makes two paths the same file: (device, inode) of an existing file or FIFO,
    the resolved path of one to be made; None for a device, which may be shared."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return ("path", os.path.realpath(path))
    if stat.S_ISCHR(status.st_mode) or stat.S_ISBLK(status.st_mode):
        return None
    return ("inode", status.st_dev, status.st_ino)


def writes_in_place(path: Path) -> bool:
    """True for what must be written in place, never replaced: a device (/dev/null,
    /dev/stdout, a terminal), a FIFO, a socket (following symlinks), and anything under
    /dev or /proc (/dev/stdout redirected to a file is that file's open descriptor:
    replacing the file would leave the shell writing to a deleted one)."""
    if str(Path(path).absolute()).startswith(("/dev/", "/proc/")):
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def _regular_target(path: Path) -> Path:
    """Where an atomic write to `path` lands: a symlink's target, so the link survives."""
    return Path(os.path.realpath(path)) if os.path.islink(path) else path


def write_output(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write(file)` into `path` by the rules of every output: a device or FIFO written in
    place, a regular file (or a symlink's target) replaced atomically, its mode kept."""
    if writes_in_place(path):
        try:
            with open(path, "wb") as file:
                write(file)
        except OSError as error:  # a full device, a closed FIFO: name this output
            raise WriteError(path, _reason(error), error.errno) from None
        return

    def through(temporary: Path) -> None:
        with open(temporary, "wb") as file:
            write(file)

    try:
        atomic_write(_regular_target(path), through)
    except WriteError as error:  # name the path the user gave, not a symlink's target
        raise WriteError(path, error.reason, error.errno) from None


def write_lines(lines: Iterable[str], path: Path | None) -> int:
    """Write one line per item; returns the count. Stdout, a device or a FIFO is written
    as lines come (flushed); a regular file (or a symlink's target) atomically, so a
    failure or a kill never leaves part of it. Write errors raise `WriteError`."""
    if path is None or writes_in_place(path):
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
    if writes_in_place(path):
        try:
            with open(path, "w", encoding="utf-8", newline="\n") as file:
                body(lambda line: file.write(line + "\n"))
        except WriteError:
            raise  # (the other output's error)
        except OSError as error:  # a full device, a closed FIFO: name this output
            raise WriteError(path, _reason(error), error.errno) from None
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
