"""Checkpoint averaging: the mean of the newest checkpoints' weights, as a new model.

Averaging the weights of the last few checkpoints of a run (Vaswani et al., 2017; Junczys-
Dowmunt et al., 2016) smooths the noise of the last updates; OpenNMT-tf, fairseq and Marian
all offer it. The checkpoints are the run's own (`checkpoints/step-N.npz`, which hold every
model variable); the result is a complete model directory of its own, so the run and its
best model stay as they were.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..data.writer import atomic_directory
from . import checkpoint
from .run_dir import RunDir

logger = logging.getLogger(__name__)


def average_checkpoints(model_dir: Path | str, last: int, output: Path | str) -> dict[str, Any]:
    """Write to `output` (a new directory) a model whose weights are the mean of the newest
    `last` checkpoints of `model_dir`; returns what was averaged."""
    source, target = RunDir(model_dir), RunDir(output)
    found = source.checkpoints()
    if last < 1:
        raise ValueError("--last must be at least 1")
    if len(found) < last:
        raise ValueError(
            f"{source.path}: {len(found)} checkpoint(s) kept, {last} asked for; "
            f"average fewer, or train with --keep-checkpoints {last} or more"
        )
    if not target.is_empty():
        raise ValueError(f"{target.path}: exists and is not empty; choose a new --output")
    chosen = found[-last:]
    model = source.build_model()
    mean = _mean_model_arrays([path for _, path in chosen], len(model.variables))
    for variable, value in zip(model.variables, mean):
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{source.path}: its checkpoints do not fit its config.json "
                f"(variable {variable.path}); they belong to another model"
            )
        variable.assign(value)
    config, tokenizer = source.read_config(), source.load_tokenizer()

    def fill(temporary: Path) -> None:
        made = RunDir(temporary)
        made.save_run_config(config, tokenizer)
        made.save_weights(model)

    atomic_directory(target.path, fill)  # a kill leaves nothing or the whole model
    steps = [step for step, _ in chosen]
    logger.info("averaged checkpoints at steps %s of %s into %s", steps, source.path, target.path)
    return {"model_dir": str(source.path), "steps": steps, "output": str(target.path)}


def _mean_model_arrays(paths: list[Path], count: int) -> list[np.ndarray]:
    """The mean of each model variable over the checkpoints at `paths`, in float64, cast
    back; integer variables (random-seed states) are the newest checkpoint's."""
    total: list[np.ndarray] | None = None
    newest: list[np.ndarray] = []
    for path in paths:
        try:
            arrays, _ = checkpoint.read(path)
        except Exception as error:  # zip, CRC, npy and JSON errors: a damaged file
            raise ValueError(
                f"{path}: unreadable ({error}); average fewer checkpoints (--last), leaving it out"
            ) from None
        newest = [
            arrays[f"model/{index:04d}"] for index in range(count) if f"model/{index:04d}" in arrays
        ]
        if len(newest) != count:
            raise ValueError(
                f"{path}: holds {len(newest)} model variables, the model has "
                f"{count}; it belongs to another model"
            )
        values = [a.astype("float64") if a.dtype.kind == "f" else a for a in newest]
        total = (
            values
            if total is None
            else [t + v if v.dtype.kind == "f" else v for t, v in zip(total, values)]
        )
    assert total is not None  # (paths is not empty)
    return [
        (t / len(paths)).astype(n.dtype) if n.dtype.kind == "f" else n
        for t, n in zip(total, newest)
    ]
