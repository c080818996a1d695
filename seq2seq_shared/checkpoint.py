"""What a checkpoint holds, and how a model's variables go into one and come back.

A checkpoint is one `.npz` file (a zip whose members carry CRC-32 checksums): every model
variable (dropout's random-seed states included) as `model/NNNN`, every optimizer
variable as `optimizer/NNNN`, in the order Keras lists them, and the run's state as JSON
under `state`. Where the file lives and how many are kept is `model_dir.py`'s business.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

def _variables(model) -> dict[str, list]:
    return {"model": model.variables, "optimizer": model.optimizer.variables}


def arrays_of(model) -> dict[str, np.ndarray]:
    """Every model and optimizer variable's value, by checkpoint key."""
    from keras import ops

    return {f"{group}/{index:04d}": ops.convert_to_numpy(variable)
            for group, variables in _variables(model).items()
            for index, variable in enumerate(variables)}


def all_finite(arrays: dict[str, np.ndarray]) -> bool:
    return all(np.isfinite(a).all() for a in arrays.values() if a.dtype.kind == "f")


def write(path: Path, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> None:
    """Write `arrays` and `state` to `path` (a temporary file: the caller publishes it)."""
    encoded = np.frombuffer(json.dumps(state).encode("utf-8"), dtype=np.uint8)
    np.savez(path, state=encoded, **arrays)


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
        if len(saved) != len(variables):
            raise ValueError(f"{source}: holds {len(saved)} {group} variables, the model has "
                             f"{len(variables)}; it belongs to another model; pass --overwrite "
                             f"to start over")
        for index, variable in enumerate(variables):
            value = arrays[f"{group}/{index:04d}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(f"{source}: variable {variable.path} has shape {value.shape}, "
                                 f"the model {tuple(variable.shape)}; pass --overwrite to "
                                 f"start over")
            variable.assign(value)
