"""Data-parallel training on the frameworks' own engines.

JAX: `--devices N` (or "all") replicates the model on N devices (`keras.distribution.
DataParallel`: every variable replicated, the batch sharded along its rows); the training
step, one `jax.jit` over the global batch, is partitioned by XLA (GSPMD): each device
computes its rows, and the gradients and the loss are summed over all of them. Several
processes, one per host (or per GPU), join through JAX's distributed runtime
(`keras.distribution.initialize`, given the coordinator's address, the number of
processes and this one's index): each builds the same global batch from the prepared
corpus and holds a full replica of the weights. Process 0, the chief, writes the model
directory; the others only read it (to resume).

TensorFlow: `tf.distribute.MirroredStrategy` over one machine's GPUs (on a CPU, as many
logical CPU devices). Keras 3 distributes only `Model.fit` by itself; here the model and
optimizer are built in the strategy's scope, every replica runs Keras's `train_step` on
its share of the rows (`Replicas.wrap_step`), and the loss divides by the tokens summed
over the replicas (`backend.summed_over_replicas`). Several processes (hosts):
`MultiWorkerMirroredStrategy`, described by TF_CONFIG, TensorFlow's own way.

Either way the loss is normalised by the global number of target tokens, so the step is
the one-device step on the same batch, up to the order of floating-point sums. A batch's
rows are padded with empty rows (no target token: they weigh nothing) to a multiple of
the devices; which pairs make a batch does not depend on the device count, so a run may
resume on another.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cluster:
    """Where a training run's replicas are: `devices` ("1", a count, or "all": every
    device of every process), and for several processes the coordinator's host:port,
    how many processes and this one's index (0: the chief)."""

    devices: str = "1"
    coordinator: str | None = None
    processes: int = 1
    process: int = 0

    def __post_init__(self) -> None:
        if self.devices != "all" and not (self.devices.isdigit() and int(self.devices) >= 1):
            raise ValueError(f"--devices must be a positive number or 'all', not {self.devices!r}")
        if (self.coordinator is None) != (self.processes == 1):
            raise ValueError(
                "several processes need --coordinator HOST:PORT and "
                "--num-processes N (above 1), together"
            )
        if not 0 <= self.process < self.processes:
            raise ValueError(f"--process-id must be in 0..{self.processes - 1}, not {self.process}")

    @property
    def single(self) -> bool:
        return self.devices == "1" and self.processes == 1


class Replicas:
    """The running data-parallel set-up: the distribution, and how this process feeds it."""

    def __init__(self, distribution, devices: int, process: int, processes: int, strategy=None):
        self.distribution, self.devices = distribution, devices
        self.process, self.processes = process, processes
        self.strategy = strategy  # TensorFlow's MirroredStrategy; JAX: None

    def scope(self):
        """Where the model and optimizer are built: the strategy's scope (TensorFlow)."""
        return self.strategy.scope() if self.strategy is not None else nullcontext()

    @property
    def chief(self) -> bool:
        return self.process == 0

    def place(self, array: np.ndarray | None):
        """A global batch array (rows: a multiple of the devices), which every process
        holds whole, as a JAX array sharded by rows: each device of this process gets
        the rows the distribution's layout gives it."""
        if array is None:
            return None
        import jax

        layout = self.distribution.get_data_layout(array.shape).backend_layout
        return jax.make_array_from_callback(array.shape, layout, lambda index: array[index])

    def wrap_step(self, method: Callable) -> Callable:
        """`method` (train_step or test_step) run by every replica of a MirroredStrategy on
        its share of the batch's rows; the logs averaged over the replicas (each logs its
        share of the global loss times the replicas, as Keras's trainer does)."""
        import tensorflow as tf

        def replica_step(data):
            context = tf.distribute.get_replica_context()
            count, index = context.num_replicas_in_sync, context.replica_id_in_sync_group
            rows = tf.shape(tf.nest.flatten(data)[0])[0] // count
            return method(
                tf.nest.map_structure(lambda x: x[index * rows : (index + 1) * rows], data)
            )

        def step(data):
            logs = self.strategy.run(replica_step, args=(data,))
            return {
                name: self.strategy.reduce("MEAN", value, axis=None) for name, value in logs.items()
            }

        return step

    def agreed(self, flag: bool) -> bool:
        """True if `flag` is true in any process: decisions that change which collective
        comes next (stop now, a signal, a time limit on one clock) are taken by all."""
        if self.processes == 1:
            return flag
        return self._sums(float(flag))[0] > 0

    def check_same(self, value: int, what: str) -> None:
        """Refuse to go on unless every process has the same `value` (what it resumed
        from, how many batches it planned): replicas that disagree would drift apart."""
        if self.processes == 1:
            return
        total, squares = self._sums(float(value))
        # n * sum(v^2) == sum(v)^2 exactly when all n values are equal: every process
        # reaches the same verdict. Exact: whole numbers, far below 2^53 (np.isclose
        # would let 1,000 and 1,001 pass).
        if self.devices * squares != total * total:
            raise ValueError(
                f"the processes disagree on {what} (this one: {value}): give "
                f"them the same command, data and model directory (a shared "
                f"filesystem, the same path)"
            )

    def _sums(self, value: float) -> tuple[float, float]:
        """The sums of `value` and of its square over the replicas, one per device (a
        collective: every process calls it)."""
        pair = np.array([value, value * value])
        if self.strategy is None:
            from jax.experimental import multihost_utils

            gathered = np.asarray(multihost_utils.process_allgather(pair)).reshape(-1, 2)
            return tuple(gathered.sum(axis=0) * (self.devices // self.processes))
        import tensorflow as tf

        local = self.strategy.run(lambda: tf.constant(pair, tf.float64))
        return tuple(self.strategy.reduce("SUM", local, axis=None).numpy())


_current: Replicas | None = None


def current() -> Replicas | None:
    """The data-parallel set-up of this process's training run, if it has one."""
    return _current


def start(cluster: Cluster) -> Replicas | None:
    """Join the processes (if several) and set Keras's distribution: call before any model
    or optimizer is built. None for one device in one process (under TensorFlow, a
    TF_CONFIG in the environment means several processes)."""
    global _current
    from .. import backend

    if cluster.single and not (backend.name() == "tensorflow" and os.environ.get("TF_CONFIG")):
        return None

    if backend.name() == "tensorflow":
        return _start_mirrored(cluster)
    if backend.name() != "jax":
        raise ValueError(f"--devices needs JAX or TensorFlow; this process runs {backend.name()}")
    import keras

    if cluster.processes > 1:
        keras.distribution.initialize(
            job_addresses=cluster.coordinator,
            num_processes=cluster.processes,
            process_id=cluster.process,
        )
    import jax

    available = jax.devices()
    count = len(available) if cluster.devices == "all" else int(cluster.devices)
    if count > len(available) or count % cluster.processes:
        raise ValueError(
            f"--devices {cluster.devices}: {len(available)} device(s) are "
            f"available to {cluster.processes} process(es), and every process "
            f"needs the same number; pass at most {len(available)}, a multiple "
            f"of {cluster.processes}, or 'all'"
        )
    each = count // cluster.processes  # the first `each` devices of every process
    chosen = [
        f"{device.platform}:{device.id}"
        for process in range(cluster.processes)
        for device in [d for d in available if d.process_index == process][:each]
    ]
    distribution = keras.distribution.DataParallel(devices=chosen)
    keras.distribution.set_distribution(distribution)
    _current = Replicas(distribution, count, cluster.process, cluster.processes)
    logger.info(
        "data parallel on %d device(s) (%s), process %d of %d",
        count,
        ", ".join(chosen),
        cluster.process,
        cluster.processes,
    )
    return _current


def _start_mirrored(cluster: Cluster) -> Replicas:
    """TensorFlow: `tf.distribute.MirroredStrategy` over this machine's GPUs (or, without
    GPUs, as many logical CPU devices, as JAX's host-platform device count makes)."""
    global _current
    if cluster.processes > 1:
        raise ValueError(
            "under TensorFlow, several processes (hosts) are described by the "
            "TF_CONFIG environment variable, TensorFlow's own way, not by "
            "--coordinator / --num-processes / --process-id (JAX's)"
        )
    import tensorflow as tf

    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # a line per reduce, else
    if os.environ.get("TF_CONFIG"):
        return _start_multi_worker()

    gpus = tf.config.list_physical_devices("GPU")  # (listing logical ones would start TF)
    count = len(gpus) if cluster.devices == "all" else int(cluster.devices)
    if gpus:
        if count > len(gpus):
            raise ValueError(f"--devices {count}: this machine has {len(gpus)} GPU(s)")
        devices = [f"/gpu:{index}" for index in range(count)]
    else:
        if cluster.devices == "all":
            count = 1
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
        devices = [device.name for device in tf.config.list_logical_devices("CPU")][:count]
    strategy = tf.distribute.MirroredStrategy(devices)
    _current = Replicas(None, count, 0, 1, strategy=strategy)
    logger.info("data parallel on %d device(s) (%s): MirroredStrategy", count, ", ".join(devices))
    return _current


def _start_multi_worker() -> Replicas:
    """TensorFlow across processes (hosts): `MultiWorkerMirroredStrategy`, its workers
    and this one's index read from TF_CONFIG; each uses its GPUs, or its CPU."""
    global _current
    import tensorflow as tf

    try:
        described = json.loads(os.environ["TF_CONFIG"])
        workers = len(described["cluster"]["worker"])
        index = int(described["task"]["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"TF_CONFIG: not a TensorFlow cluster description ({error}); "
            f'expected {{"cluster": {{"worker": ["host:port", ...]}}, '
            f'"task": {{"type": "worker", "index": I}}}}'
        ) from None
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    count = strategy.num_replicas_in_sync
    _current = Replicas(None, count, index, workers, strategy=strategy)
    logger.info(
        "data parallel on %d device(s): MultiWorkerMirroredStrategy, worker %d of %d",
        count,
        index,
        workers,
    )
    return _current


def mirrored_adam():
    """Keras's Adam for a MirroredStrategy, clipping the gradient the replicas sum.

    Keras clips each replica's part of the gradient by `global_clipnorm` before the
    replicas sum their parts (`BaseOptimizer._backend_apply_gradients`, then the sum in
    `_backend_update_step`), so whenever clipping acts, a run on N devices takes another
    step than on one (measured: the same weights to 7e-8 over 66 steps without clipping,
    0.11 apart with it). This one sums first, clips the sum, and hands each replica 1/N of
    it, which Keras's sum then restores."""
    import keras
    import tensorflow as tf

    class MirroredAdam(keras.optimizers.Adam):
        def _clip_gradients(self, grads):
            context = tf.distribute.get_replica_context()
            if not (
                self.global_clipnorm and context is not None and context.num_replicas_in_sync > 1
            ):
                return super()._clip_gradients(grads)
            count = context.num_replicas_in_sync
            summed = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            return [gradient / count for gradient in super()._clip_gradients(summed)]

    return MirroredAdam


def stop() -> None:
    """Forget the distribution (the end of a run, or a test)."""
    global _current
    if _current is not None and _current.distribution is not None:
        import keras

        keras.distribution.set_distribution(None)
    _current = None


@contextmanager
def outside() -> Iterator[None]:
    """The block runs without the distribution: what the chief does alone (Keras's
    `save_weights` makes a variable, which under the distribution would be placed on every
    process's devices, a collective the others never join: a hang)."""
    import keras

    distribution = keras.distribution.distribution() if _current is not None else None
    if distribution is None:
        yield
        return
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(distribution)
