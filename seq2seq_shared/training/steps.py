"""The compiled training step and what it is fed: the precision policy, the optimizer,
the batches (the step itself is `backend.compiled_step`'s)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..config import Config, TrainingConfig
from ..data.batches import Batch, ParallelBatches, within_lengths
from ..data.encoded import EncodedPairs
from . import ema, parallel


@contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Keras's global dtype policy set to `precision` (config.PRECISIONS) inside the block,
    restored after it. A layer keeps the policy current when it is made, and `compile`
    wraps the optimizer for loss scaling by the model's, so building and compiling the
    model in the block is enough; outside it, models (a float32 copy for validation,
    the next run in the process, tests) are built as usual."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def compile_for_training(model, training: TrainingConfig) -> None:
    """Adam with global-norm clipping (and a moving average of the weights with
    `ema_decay`), built now so checkpoints can hold its variables; the
    loss's label smoothing (a training setting, not part of the model's shape). Under
    mixed_float16 Keras wraps the Adam in a `LossScaleOptimizer` (checkpoint.py)."""
    import keras

    model.label_smoothing = training.label_smoothing
    replicas = parallel.current()
    adam = (
        keras.optimizers.Adam
        if replicas is None or replicas.strategy is None
        else parallel.mirrored_adam()
    )  # clips the replicas' summed gradient
    if training.ema_decay:
        adam = ema.warmed_up(adam)
    model.compile(
        optimizer=adam(
            learning_rate=training.learning_rate,
            global_clipnorm=training.clip_norm or None,
            gradient_accumulation_steps=(
                training.accumulate_steps if training.accumulate_steps > 1 else None
            ),
            **ema.optimizer_options(training),
        )
    )
    model.optimizer.build(model.trainable_variables)


def train_step(model, batch: Batch, loss_weight: float | None = None) -> dict[str, Any]:
    """One optimizer call on one batch (the compiled step), its loss scaled by
    `loss_weight` if given (accumulation.py); returns loss and nll."""
    from .. import backend

    step = backend.compiled_step(model, training=True, replicas=parallel.current())
    return step(batch.source, batch.target_input, batch.target_output, loss_weight)


def make_batches(config: Config, pairs: EncodedPairs, shuffle: bool = False) -> ParallelBatches:
    """Training or validation batches: pairs over the length limits (pieces) dropped;
    with one shape per width where the backend compiles per shape."""
    from .. import backend

    training = config.training
    index = within_lengths(pairs, (config.model.max_source_length, training.max_target_length))
    batches = ParallelBatches(
        pairs,
        batch_tokens=training.batch_tokens,
        multiple=backend.shape_multiple(),
        seed=training.seed,
        shuffle=shuffle,
        fixed_shapes=not backend.dynamic_shapes(),
        index=index,
    )
    replicas = parallel.current()
    if replicas is not None:  # every device gets rows
        batches.row_multiple = replicas.devices
    return batches
