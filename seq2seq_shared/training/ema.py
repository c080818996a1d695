"""An exponential moving average of the weights (`ema_decay`), the model a run hands out.

Keras's optimizer keeps the average (`use_ema`): after every update each trainable
variable's average moves part of the way to its new value (the first update copies it).
The part is warmed up as TensorFlow's `ExponentialMovingAverage(num_updates=...)` does:
the decay after update n is min(ema_decay, (1 + n) / (10 + n)), so the average covers
about the last tenth of a short run instead of keeping its first, untrained steps for
hundreds of updates (with Keras's own constant decay of 0.998, 0.998^900 = 16% of the
average is still the initial weights after 900 updates; on Multi30k its val BLEU was 8.0
at epoch 6, against 29.9 for the raw weights). The averages are optimizer variables, so
checkpoints hold them and a resumed run goes on exactly. Training itself follows the raw
weights; validation, the best model kept (`model.weights.h5`) and the early-stopping and
learning-rate decisions read the averages (`averaged_weights`), since those are what a
user would translate with.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..config import TrainingConfig

WARM_UP = 10  # the decay after update n is at most (1 + n) / (WARM_UP + n)


def optimizer_options(training: TrainingConfig) -> dict[str, Any]:
    """The optimizer's keyword arguments for `training.ema_decay` (none when it is 0)."""
    if not training.ema_decay:
        return {}
    return {"use_ema": True, "ema_momentum": training.ema_decay}


def decay(updates, ema_decay: float, calls_per_update: int):
    """The decay of the average at an optimizer call after `updates` updates (a tensor):
    0 at the first (a copy), then min(ema_decay, (1 + n) / (WARM_UP + n)) per update.
    Keras moves the average at every call, and with accumulated batches there are
    `calls_per_update` calls per update: each then decays by that root of it."""
    from keras import ops

    n = ops.cast(updates, "float32")
    per_update = ops.minimum(ema_decay, (1.0 + n) / (WARM_UP + n))
    return ops.where(n > 0, ops.power(per_update, 1.0 / calls_per_update), 0.0)


def warmed_up(adam: type) -> type:
    """`adam` (an optimizer class) whose moving average's decay warms up (`decay`)."""

    class AveragingAdam(adam):
        def _update_model_variables_moving_average(self, trainable_variables):
            from keras import ops

            calls = self.gradient_accumulation_steps or 1
            rate = decay(self.iterations, self.ema_momentum, calls)
            averages = self._model_variables_moving_average
            for variable, average in zip(trainable_variables, averages, strict=True):
                if average is not None:
                    kept = ops.cast(rate, variable.dtype)
                    average.assign(kept * average + (1 - kept) * variable)

    return AveragingAdam


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
