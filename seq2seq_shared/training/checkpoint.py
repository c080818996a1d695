"""What a checkpoint holds, and how a model's variables go into one and come back.

A checkpoint is one `.npz` file (a zip whose members carry CRC-32 checksums): every model
variable (dropout's random-seed states included) as `model/NNNN`, every optimizer
variable as `optimizer/NNNN`, in the order Keras lists them, and the run's state as JSON
under `state`. Where the file lives and how many are kept is `model_dir.py`'s business.

Under mixed_float16 Keras wraps the optimizer in a `LossScaleOptimizer`. Its Adam's
variables are then the `optimizer/NNNN` (the same as in a run without it), and the loss
scale goes apart, as `loss_scale/0000` (the scale) and `loss_scale/0001` (the steps since
it changed), read only by a run that scales its loss: so a run resumes under another
precision (a float32 checkpoint under mixed_float16 starts Keras's initial scale).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

LOSS_SCALE = "loss_scale"  # the one optional group


def _variables(model) -> dict[str, list]:
    from keras.optimizers import LossScaleOptimizer

    optimizer = model.optimizer
    if not isinstance(optimizer, LossScaleOptimizer):
        return {"model": model.variables, "optimizer": optimizer.variables}
    return {
        "model": model.variables,
        "optimizer": optimizer.inner_optimizer.variables,
        LOSS_SCALE: [optimizer.dynamic_scale, optimizer.step_counter],
    }


def arrays_of(model) -> dict[str, np.ndarray]:
    """Every model and optimizer variable's value, by checkpoint key."""
    from ..backend import to_numpy

    return {
        f"{group}/{index:04d}": to_numpy(variable.value)
        for group, variables in _variables(model).items()
        for index, variable in enumerate(variables)
    }


def all_finite(arrays: dict[str, np.ndarray]) -> bool:
    return all(np.isfinite(a).all() for a in arrays.values() if a.dtype.kind == "f")


def write(path: Path, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> None:
    """Write `arrays` and `state` to `path` (a temporary file: the caller publishes it)."""
    encoded = np.frombuffer(json.dumps(state).encode("utf-8"), dtype=np.uint8)
    named: dict[str, Any] = {"state": encoded, **arrays}
    np.savez(path, **named)


def read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, state); raises on a damaged file (zip, CRC, npy or JSON errors)."""
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    return arrays, json.loads(arrays.pop("state").tobytes().decode("utf-8"))


def assign(model, arrays: dict[str, np.ndarray], source: str) -> None:
    """Give every variable of `model` (and its optimizer) its saved value; refuses a
    checkpoint of another model, naming `source`."""
    for group, variables in _variables(model).items():
        saved = [key for key in arrays if key.startswith(group + "/")]
        if group == LOSS_SCALE and not saved:
            continue  # saved without loss scaling: the scale starts at Keras's initial one
        if len(saved) != len(variables):
            raise ValueError(
                f"{source}: holds {len(saved)} {group} variables, the model has "
                f"{len(variables)}; it belongs to another model; pass --overwrite "
                f"to start over"
            )
        for index, variable in enumerate(variables):
            value = arrays[f"{group}/{index:04d}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"{source}: variable {variable.path} has shape {value.shape}, "
                    f"the model {tuple(variable.shape)}; pass --overwrite to "
                    f"start over"
                )
            variable.assign(value)
