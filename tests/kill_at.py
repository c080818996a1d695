"""Run `seq2seq-shared` and kill -9 itself at a checkpoint boundary (a test harness).

    python tests/kill_at.py STEP MOMENT seq2seq-shared-arguments...

MOMENT "during-save": SIGKILL after the checkpoint at STEP is written to its temporary
file, before the rename that publishes it. "after-save": SIGKILL right after the
checkpoint at STEP (and whatever validation preceded it) is complete.
"""

import os
import signal
import sys

from seq2seq_shared.cli import main
from seq2seq_shared.data import files
from seq2seq_shared.training.run_dir import RunDir

STEP, MOMENT = int(sys.argv[1]), sys.argv[2]
save_checkpoint, replace = RunDir.save_checkpoint, os.replace


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def replace_then_maybe_die(source, destination):
    if MOMENT == "during-save" and f"step-{STEP:09d}.npz" in str(destination):
        kill()
    replace(source, destination)


def save_then_maybe_die(self, arrays, state, *args, **kwargs):
    path = save_checkpoint(self, arrays, state, *args, **kwargs)
    if MOMENT == "after-save" and state.step == STEP:
        kill()
    return path


files.os.replace = replace_then_maybe_die
RunDir.save_checkpoint = save_then_maybe_die
sys.argv = ["seq2seq-shared", *sys.argv[3:]]
main()
