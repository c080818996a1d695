"""An exponential moving average of the weights (`ema_decay`), the model a run hands out.

Keras's optimizer keeps the average (`use_ema`): after every update, each trainable
variable's average moves `1 - ema_decay` of the way to its new value (the first update
copies it). The averages are optimizer variables, so checkpoints hold them and a resumed
run goes on exactly. Training itself follows the raw weights; validation, the best model
kept (`model.weights.h5`) and the early-stopping and learning-rate decisions read the
averages (`averaged_weights`), since those are what a user would translate with. A run
whose time limit falls just after a change of learning rate then ends on an average over
its last few hundred steps rather than on wherever the last step left it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..config import TrainingConfig


def optimizer_options(training: TrainingConfig) -> dict[str, Any]:
    """The optimizer's keyword arguments for `training.ema_decay` (none when it is 0).
    Keras moves the average at every optimizer call, and with `accumulate_steps` N there
    are N calls per update: the decay per call is then ema_decay ** (1 / N), so that the
    average still decays by ema_decay per update."""
    if not training.ema_decay:
        return {}
    return {"use_ema": True, "ema_momentum": training.ema_decay ** (1 / training.accumulate_steps)}


def _averaging(optimizer) -> bool:
    """True where the optimizer keeps averages and has updated them at least once (before
    the first update Keras holds them at zero)."""
    from ..backend import to_numpy

    inner = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer's Adam
    return bool(getattr(inner, "use_ema", False)) and int(to_numpy(inner.iterations.value)) > 0


@contextmanager
def averaged_weights(model) -> Iterator[None]:
    """Inside the block `model`'s trainable variables hold their moving averages (where
    its optimizer keeps them; otherwise nothing changes); the raw values come back after
    it, also when the block raises."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not _averaging(optimizer):
        yield
        return
    import keras

    from ..backend import to_numpy  # also for arrays that span several processes

    variables = model.trainable_variables
    raw = [to_numpy(variable.value) for variable in variables]
    try:
        optimizer.finalize_variable_values(variables)  # Keras's end-of-`fit` swap
        for variable in variables:  # copies: on JAX a compiled step donates (deletes) its
            variable.assign(keras.ops.copy(variable.value))  # inputs, the averages' too
        yield
    finally:
        for variable, value in zip(variables, raw, strict=True):
            variable.assign(value)
