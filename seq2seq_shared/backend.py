"""The one place that knows which Keras backend runs: compiling functions, devices.

TensorFlow and JAX are imported here lazily, inside functions; the only other module that
imports TensorFlow is `export.py` (the SavedModel export, a TensorFlow-only feature).
"""
from __future__ import annotations

from collections.abc import Callable

import keras


def name() -> str:
    return keras.backend.backend()


def compile_inference(model: keras.Model, function: Callable, static_argnums: tuple[int, ...] = ()
                      ) -> Callable:
    """Compile `function(*args)` that reads `model`'s weights, so later weight updates show.

    TensorFlow: a `tf.function`, which reads variables by reference. JAX: `jax.jit` over a
    stateless call with the current variable values passed in, so the compiled function
    never bakes in stale weights. Other backends run it eagerly.
    """
    if name() == "tensorflow":
        import tensorflow as tf

        return tf.function(function, reduce_retracing=True)
    if name() == "jax":
        import jax

        def stateless(values, *args):
            with keras.StatelessScope(state_mapping=list(zip(model.variables, values))):
                return function(*args)

        jitted = jax.jit(stateless, static_argnums=tuple(i + 1 for i in static_argnums))
        return lambda *args: jitted([v.value for v in model.variables], *args)
    return function


def shape_multiple() -> int:
    """Round padded lengths up to this. JAX compiles once per shape, so few shapes pay;
    TensorFlow's `reduce_retracing` relaxes to dynamic shapes, so padding is pure waste."""
    return 1 if name() == "tensorflow" else 8


def accelerator() -> str:
    """'GPU' if the backend sees one, else 'CPU' (for logs and reports)."""
    if name() == "tensorflow":
        import tensorflow as tf

        return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    if name() == "jax":
        import jax

        return "GPU" if jax.default_backend() == "gpu" else "CPU"
    return "CPU"

