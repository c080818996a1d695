"""The one place that knows which Keras backend runs: compiling functions, loops, devices.

Every other module asks here (`name()`, `dynamic_shapes()`, `on_gpu()`, ...) instead of
calling `keras.backend.backend()`. TensorFlow and JAX are imported here lazily, inside
functions; the other modules that import TensorFlow are `decoding/export.py` (the
SavedModel export, a TensorFlow-only feature) and `training/parallel.py` (MirroredStrategy).
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable
from typing import Any

import keras
import numpy as np


def name() -> str:
    return keras.backend.backend()


def compile_inference(
    model: keras.Model, function: Callable, static_argnums: tuple[int, ...] = ()
) -> Callable:
    """Compile `function(*args)` that reads `model`'s weights, so later weight updates show.

    TensorFlow: a `tf.function` traced with every dimension free (see `_shape_free`),
    which reads variables by reference. JAX: `jax.jit` over a stateless call with the
    current variable values passed in, so the compiled function never bakes in stale
    weights. Other backends run it eagerly.
    """
    if name() == "tensorflow":
        return _shape_free(function, static_argnums)
    if name() == "jax":
        import jax

        def stateless(values, *args):
            with keras.StatelessScope(state_mapping=list(zip(model.variables, values))):
                return function(*args)

        jitted = jax.jit(stateless, static_argnums=tuple(i + 1 for i in static_argnums))
        return lambda *args: jitted([v.value for v in model.variables], *args)
    return function


def compiled_step(model: keras.Model, training: bool, replicas: Any = None) -> Callable:
    """`step(source, target_input, target_output, loss_weight=None) -> logs`: one compiled
    `model.train_step` (an optimizer update) or `model.test_step`, with the metrics reset
    first. `loss_weight` (a number) scales the loss (`Seq2Seq.compute_loss`'s weights).

    TensorFlow: traced once with free dimensions (see `_shape_free`). Keras's own
    `train_on_batch` traces its first batch's exact shape and relaxes only at the second,
    and the two graphs round differently in the last bit, so a resumed process, whose
    first batch is another, would drift from the uninterrupted run. JAX: Keras's
    stateless step under `jax.jit` (`_jax_step`: one XLA program per shape, the same in
    every process), its logs left on the device.
    `replicas` (`training.parallel.Replicas`, data parallel): TensorFlow runs the step
    on every replica (`replicas.wrap_step`), JAX places each batch array (`replicas.place`).
    Compiled once per model (and optimizer and replicas), on first use.
    """
    key = (training, id(model.optimizer), id(replicas))
    steps = _STEPS.setdefault(model, {})
    if key not in steps:
        steps[key] = _compile_step(model, training, replicas)
    return steps[key]


_STEPS: weakref.WeakKeyDictionary[keras.Model, dict] = weakref.WeakKeyDictionary()


def _compile_step(model: keras.Model, training: bool, replicas: Any) -> Callable:
    if name() == "jax":
        return _jax_step(model, training, replicas)
    if name() != "tensorflow":
        method = model.train_on_batch if training else model.test_on_batch

        def step(source, target_input, target_output, loss_weight=None):
            return method(
                {"source": source, "target_input": target_input},
                target_output,
                sample_weight=_row_weights(source, loss_weight),
                return_dict=True,
            )

        return step
    return _tensorflow_step(model, training, replicas)


def _tensorflow_step(model: keras.Model, training: bool, replicas: Any) -> Callable:
    method = model.train_step if training else model.test_step
    if replicas is not None and replicas.strategy is not None:
        method = replicas.wrap_step(method)

    def data(source, target_input, target_output, loss_weight):
        x = {"source": source, "target_input": target_input}
        if loss_weight is None:
            return x, target_output
        return x, target_output, keras.ops.full((keras.ops.shape(source)[0],), loss_weight)

    compiled = _shape_free(lambda *arrays: method(data(*arrays)))

    def step(source, target_input, target_output, loss_weight=None):
        model.reset_metrics()
        if loss_weight is not None:
            loss_weight = np.float32(loss_weight)
        return compiled(source, target_input, target_output, loss_weight)

    return step


def summed_over_replicas(value):
    """`value` summed over the replicas of a TensorFlow MirroredStrategy, inside its
    step; `value` itself everywhere else (JAX's data parallel sums by the jitted step)."""
    if name() != "tensorflow":
        return value
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce("sum", value)


def _row_weights(source, loss_weight: float | None):
    """`loss_weight` for every sentence of the batch, (batch,) float32, or None."""
    return None if loss_weight is None else np.full(len(source), loss_weight, dtype="float32")


def _jax_step(model: keras.Model, training: bool, replicas: Any) -> Callable:
    """Keras's stateless `train_step` / `test_step` (the JAX trainer's, which `fit` and
    `train_on_batch` run) under one `jax.jit`, with the state donated as Keras does; the
    new values are handed to the variables and the logs stay on the device. Keras's
    `train_on_batch` would convert them to Python floats at every step, making the host
    wait for the device; here the training loop reads them when it logs (`--log-every`)."""
    import jax

    method = model.train_step if training else model.test_step
    compiled = jax.jit(method, donate_argnums=0)
    groups = [
        model.trainable_variables,
        model.non_trainable_variables,
        *([model.optimizer.variables] if training else []),
        model.metrics_variables,
    ]
    # data parallel: each device gets its rows (training/parallel.py)
    place = replicas.place if replicas is not None else (lambda array: array)

    def step(source, target_input, target_output, loss_weight=None):
        model.reset_metrics()
        data = (
            {"source": place(source), "target_input": place(target_input)},
            place(target_output),
            place(_row_weights(source, loss_weight)),
        )
        logs, state = compiled([[v.value for v in group] for group in groups], data)
        for group, values in zip(groups, state):
            for variable, value in zip(group, values):
                variable.assign(value)
        return logs

    return step


def _shape_free(function: Callable, static_argnums: tuple[int, ...] = ()) -> Callable:
    """A `tf.function` traced once per argument structure (and static values), with the
    data-dependent dimensions left free (see `_free_spec`): the same graph, and so the
    same rounding, whatever shapes come first. `None` arguments count as static."""
    import tensorflow as tf

    traced: dict[str, Callable] = {}

    def call(*args):
        static = {i: a for i, a in enumerate(args) if i in static_argnums or a is None}
        dynamic = [
            tf.nest.map_structure(tf.convert_to_tensor, a)
            for i, a in enumerate(args)
            if i not in static
        ]
        specs = tf.nest.map_structure(_free_spec, dynamic)
        key = repr((sorted(static.items()), specs))
        if key not in traced:
            # A partial, not a closure: TensorFlow's retracing detector keys a function by
            # its code object, and closures share one, so these functions, each traced once
            # by design, would be reported as one function "retraced" again and again.
            bound = functools.partial(_with_static, function, static, len(args))
            traced[key] = tf.function(bound, input_signature=specs, autograph=False)
        return traced[key](*dynamic)

    call.traced = traced  # type: ignore[attr-defined]  # (for tests: one entry per trace)
    return call


def _with_static(function: Callable, static: dict[int, Any], count: int, *values):
    """`function` called with its static arguments in their places among `values`."""
    remaining = iter(values)
    return function(*(static[i] if i in static else next(remaining) for i in range(count)))


def scan(step: Callable, carry, xs: tuple, outputs: int, reverse: bool = False):
    """`keras.ops.scan` over the leading axis of every array in `xs` (a tuple), for loops
    that run once per time step: returns (final carry, stacked outputs). `step(carry, x)`
    returns (carry, a tuple of `outputs` arrays of the inputs' dtype).

    TensorFlow: a `tf.while_loop` holding the carry as loop variables (Keras's TensorFlow
    scan round-trips it through a TensorArray every step, and needs the outputs shaped like
    the carry). Elsewhere `keras.ops.scan` (on JAX, `jax.lax.scan`).
    """
    if name() == "tensorflow":
        import tensorflow as tf

        steps = tf.shape(xs[0])[0]
        inputs = [tf.TensorArray(x.dtype, size=steps).unstack(x) for x in xs]
        arrays = [tf.TensorArray(xs[0].dtype, size=steps) for _ in range(outputs)]

        def body(t, carry, outputs):
            index = steps - 1 - t if reverse else t
            carry, ys = step(carry, tuple(x.read(index) for x in inputs))
            return t + 1, carry, [o.write(index, y) for o, y in zip(outputs, ys)]

        _, carry, arrays = tf.while_loop(
            lambda t, *_: t < steps, body, (tf.constant(0), carry, arrays)
        )
        return carry, tuple(a.stack() for a in arrays)
    return keras.ops.scan(step, carry, xs, reverse=reverse)


def shrinking_while_loop(cond: Callable, body: Callable, loop_vars: tuple, maximum_iterations: int):
    """`keras.ops.while_loop` whose loop variables may change their leading (batch) size
    from one iteration to the next, so a loop can drop the rows it is done with. Only
    where shapes are dynamic (`dynamic_shapes()`): a `tf.while_loop` with the leading
    axis left free in its shape invariants."""
    import tensorflow as tf

    loop_vars = tf.nest.map_structure(tf.convert_to_tensor, loop_vars)
    invariants = tf.nest.map_structure(
        lambda x: tf.TensorShape([None]).concatenate(x.shape[1:]) if x.shape.rank else x.shape,
        loop_vars,
    )
    return tf.while_loop(
        cond, body, loop_vars, shape_invariants=invariants, maximum_iterations=maximum_iterations
    )


def _free_spec(x):
    """Integer tensors (ids, limits) vary in every dimension; float tensors (states,
    tables) keep their last, the model's feature size, which the graph may need."""
    import tensorflow as tf

    shape = [None] * x.shape.rank
    if x.dtype.is_floating and shape:
        shape[-1] = x.shape[-1]
    return tf.TensorSpec(shape, x.dtype)


def shape_multiple() -> int:
    """Round padded lengths up to this. JAX compiles once per shape, so few shapes pay;
    TensorFlow's `reduce_retracing` relaxes to dynamic shapes, so padding is pure waste."""
    return 1 if dynamic_shapes() else 8


def dynamic_shapes() -> bool:
    """Whether a compiled step may take data-dependent shapes (TensorFlow: yes; JAX: no)."""
    return name() == "tensorflow"


@functools.cache
def accelerator() -> str:
    """'GPU' if the backend sees one, else 'CPU' (for logs and reports)."""
    if name() == "tensorflow":
        import tensorflow as tf

        return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    if name() == "jax":
        import jax

        return "GPU" if jax.default_backend() == "gpu" else "CPU"
    return "CPU"


def on_gpu() -> bool:
    """Whether the device path is taken: the backend sees a GPU, and no `portable_graph()`
    is being traced. Every GPU-only choice below asks here, so a test can force it."""
    return accelerator() == "GPU" and not _PORTABLE


_PORTABLE = False


@contextlib.contextmanager
def portable_graph():
    """Trace without device-only choices (no cuDNN op in the graph), for graphs that are
    saved and may run on another machine: `export` traces the SavedModel inside this."""
    global _PORTABLE
    before, _PORTABLE = _PORTABLE, True
    try:
        yield
    finally:
        _PORTABLE = before


def fused_lstm_kernel(masked: bool, dtype: str = "float32") -> Callable | None:
    """Keras's fused LSTM for this backend (`keras.src.backend.lstm`: cuDNN) where it may
    apply: on a GPU, TensorFlow for any pass (cuDNN takes right-padded masks), JAX for an
    unmasked float32 pass (its cuDNN path takes no mask, and JAX's cuDNN lowering only
    float32 and float64, an error raised when XLA compiles, too late to fall back). None
    elsewhere: `kernels.lstm_recurrence` runs. The kernel itself raises
    NotImplementedError where Keras declines; the caller then falls back to the project's
    recurrence."""
    if not on_gpu() or name() not in ("tensorflow", "jax"):
        return None
    if name() == "jax" and (masked or dtype != "float32"):
        return None
    from keras.src.backend import lstm  # the active backend's; not in Keras's public API

    return lstm


def gather_real_tokens() -> bool:
    """Whether the loss gathers the real target positions before the output projection
    (`ops.nonzero`: a data-dependent shape). Only on a CPU under TensorFlow: JAX compiles
    static shapes, and on a GPU the host would wait for the device at every step to learn
    the count, where projecting the padding too costs little."""
    return dynamic_shapes() and not on_gpu()


def scatter_label_gradient() -> bool:
    """Whether the loss's gradient is corrected at the labels by a scatter (fewest passes
    over the (tokens, vocabulary) array) or by subtracting a one-hot array. TensorFlow
    with op determinism (the default) runs scatters on the host: on a GPU the whole array,
    about 100 MB at 3,072 tokens and 8,000 pieces, would cross to the CPU and back at
    every step. JAX scatters on the device."""
    return not (on_gpu() and name() == "tensorflow")


def gradients_per_output(upstream: tuple) -> tuple:
    """What the backward function of a `keras.ops.custom_gradient` with several outputs
    received, as one gradient per output: JAX passes one tuple, TensorFlow one argument
    per output."""
    return upstream[0] if len(upstream) == 1 else upstream


def enable_determinism() -> None:
    """Deterministic kernels where the backend has a switch (TensorFlow), so a resumed run
    reproduces an uninterrupted one bit for bit. JAX on CPU is deterministic already."""
    if name() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def to_numpy(value: Any) -> np.ndarray:
    """A variable's value on the host: a replicated array spanning several processes is
    read from this process's own replica."""
    if getattr(value, "is_fully_addressable", True) is False:
        return np.asarray(value.addressable_data(0))
    return keras.ops.convert_to_numpy(value)
