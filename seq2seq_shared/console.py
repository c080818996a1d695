"""The console around the commands: library errors as one line and exit code 1, and
Keras imported with TensorFlow's start-up chatter silenced. Used by `cli.py` and
`serve/command.py`; it imports neither."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from .training.context import TrainingInterrupted

LIBRARY_ERRORS = (ValueError, FloatingPointError, OSError)  # OSError: files, disks, locks


class Group(click.Group):
    """Turns the library's errors into `Error: <message>` and exit code 1, never a traceback."""

    def invoke(self, context: click.Context):
        try:
            return super().invoke(context)
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as cat does
            from .data.writer import discard_stdout

            discard_stdout()
            raise click.exceptions.Exit(141) from None
        except LIBRARY_ERRORS as error:
            raise click.ClickException(_message(error)) from None
        except Exception as error:
            if not isinstance(error, TrainingInterrupted):
                raise
            click.echo(f"Stopped: {error}", err=True)
            raise click.exceptions.Exit(error.exit_code) from None


def _message(error: Exception) -> str:
    """One line: the library's own message, or for a raw OSError its file and reason."""
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.filename}: {error.strerror}"
    return str(error)


def import_keras_quietly() -> None:
    """Import Keras with file descriptor 2 silenced: TensorFlow's C++ start-up chatter
    ("Could not find cuda drivers", absl notices) bypasses TF_CPP_MIN_LOG_LEVEL. Python
    errors still show: stderr is restored before any exception propagates. Where Keras
    is not installed (the light install), one line says what to install."""
    if "keras" in sys.modules:
        return
    verbose = click.get_current_context().find_root().params.get("verbose", False)
    try:
        with _stderr_silenced(not verbose):
            import keras  # noqa: F401
    except ImportError as error:
        raise click.ClickException(
            f"this needs TensorFlow and Keras ({error.name} is not installed): "
            f'pip install "seq2seq-shared[train]"; a release (`seq2seq-shared release`) '
            f"translates without them"
        ) from None


@contextmanager
def _stderr_silenced(silence: bool) -> Iterator[None]:
    if not silence:
        yield
        return
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
