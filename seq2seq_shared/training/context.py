"""What a training run does to its process: signals, the log file, the progress bar.

Ctrl-C and SIGTERM are collected instead of killing the process mid-step, so the run can
checkpoint and stop (`TrainingInterrupted`); the package's log records are copied into the
model directory's train.log; tqdm shows progress.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from pathlib import Path


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM: a checkpoint was saved; `exit_code` is 128 + the signal number."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number


@contextmanager
def stop_requests():
    """Collect SIGINT / SIGTERM instead of dying mid-step; the loop checkpoints and stops."""
    requests: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield requests
        return
    previous = {
        number: signal.signal(number, lambda n, frame: requests.append(n))
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield requests
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def progress_bar(total: int, initial: int, description: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=description,
        unit="batch",
        disable=not enabled,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.5,
    )


class _LogFileHandler(logging.FileHandler):
    """A FileHandler that, when the disk is full, says so once in one line instead of
    printing a traceback for every record (training itself stops at its next write)."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.failed:
            self.failed = True
            logging.getLogger(__name__).warning(
                "%s: cannot write the log any more", self.baseFilename
            )


@contextmanager
def log_to(path: Path):
    """Copy this package's log records into the model directory's train.log."""
    handler = _LogFileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package_logger = logging.getLogger("seq2seq_shared")
    package_logger.addHandler(handler)
    previous_level = package_logger.level
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
        handler.close()
