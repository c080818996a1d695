"""The `seq2seq-shared` command line: options -> one library call -> printed result.

Keras (and so TensorFlow) is imported inside commands only, so `--help` is instant.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from .commands.decoding import evaluate, export, info, release, shortlist, translate
from .commands.training import average, check_data, prepare, train
from .console import Group
from .serve.command import serve

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter


@click.group(
    cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="seq2seq-shared")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log debugging detail, and show TensorFlow's start-up messages.",
)
def main(verbose: bool) -> None:
    """Compact translation models with ONE LSTM shared by encoder and decoder.

    \b
    Two commands to a working translator:
      seq2seq-shared train data/train.en data/train.de --valid data/dev.en data/dev.de --model-dir m
      echo "three hundred twenty-one" | seq2seq-shared translate --model-dir m
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(message)s" if verbose else "%(message)s",
        stream=sys.stderr,
    )


commands = (train, prepare, check_data, translate, evaluate, release, shortlist, export, average)
for command in (*commands, info):
    main.add_command(command)
main.add_command(serve)  # serve/command.py: FastAPI and uvicorn imported only when it runs


if __name__ == "__main__":
    main()
