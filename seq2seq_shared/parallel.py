"""Data-parallel training on the framework's own engine: Keras's `DataParallel` on JAX.

`--devices N` (or "all") replicates the model on N devices (`keras.distribution.
DataParallel`: every variable replicated, the batch sharded along its rows); the training
step, one `jax.jit` over the global batch, is partitioned by XLA (GSPMD): each device
computes its rows, and the gradients and the loss are summed over all of them. The loss
is still normalised by the global number of target tokens, so the step is the one-device
step on the same batch, up to the order of floating-point sums. A batch's rows are padded
with empty rows (no target token: they weigh nothing) to a multiple of the devices; which
pairs make a batch does not depend on the device count, so a run may resume on another.

Several processes, one per host (or per GPU), join through JAX's distributed runtime
(`keras.distribution.initialize`, given the coordinator's address, the number of
processes and this one's index): each builds the same global batch from the prepared
corpus, hands in its own share of the rows, and holds a full replica of the weights.
Process 0, the chief, writes the model directory; the others only read it (to resume).

TensorFlow is not supported here: Keras 3 runs `tf.distribute` strategies only inside
`Model.fit`, which this trainer does not use (see the README).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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
            raise ValueError(f"--devices must be a positive number or 'all', not "
                             f"{self.devices!r}")
        if (self.coordinator is None) != (self.processes == 1):
            raise ValueError("several processes need --coordinator HOST:PORT and "
                             "--num-processes N (above 1), together")
        if not 0 <= self.process < self.processes:
            raise ValueError(f"--process-id must be in 0..{self.processes - 1}, not "
                             f"{self.process}")

    @property
    def single(self) -> bool:
        return self.devices == "1" and self.processes == 1


class Replicas:
    """The running data-parallel set-up: the distribution, and how this process feeds it."""

    def __init__(self, distribution, devices: int, process: int, processes: int):
        self.distribution, self.devices = distribution, devices
        self.process, self.processes = process, processes

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

    def agreed(self, flag: bool) -> bool:
        """True if `flag` is true in any process: decisions that change which collective
        comes next (stop now, a signal, a time limit on one clock) are taken by all."""
        if self.processes == 1:
            return flag
        from jax.experimental import multihost_utils

        return bool(np.any(multihost_utils.process_allgather(np.array(flag))))

    def check_same(self, value: int, what: str) -> None:
        """Refuse to go on unless every process has the same `value` (what it resumed
        from, how many batches it planned): replicas that disagree would drift apart."""
        if self.processes == 1:
            return
        from jax.experimental import multihost_utils

        values = np.asarray(multihost_utils.process_allgather(np.array(value))).ravel()
        if (values != values[0]).any():
            raise ValueError(f"the processes disagree on {what} ({values.tolist()}, by "
                             f"process): give them the same command, data and model "
                             f"directory (a shared filesystem, the same path)")


_current: Replicas | None = None


def current() -> Replicas | None:
    """The data-parallel set-up of this process's training run, if it has one."""
    return _current


def start(cluster: Cluster) -> Replicas | None:
    """Join the processes (if several) and set Keras's distribution: call before any model
    or optimizer is built. None for one device in one process."""
    global _current
    if cluster.single:
        return None
    from . import backend

    if backend.name() != "jax":
        raise ValueError(f"--devices and several processes need the JAX backend (run with "
                         f"KERAS_BACKEND=jax); Keras 3 distributes TensorFlow training only "
                         f"inside Model.fit. This process runs {backend.name()}")
    import keras

    if cluster.processes > 1:
        keras.distribution.initialize(job_addresses=cluster.coordinator,
                                      num_processes=cluster.processes,
                                      process_id=cluster.process)
    import jax

    available = jax.devices()
    count = len(available) if cluster.devices == "all" else int(cluster.devices)
    if count > len(available) or count % cluster.processes:
        raise ValueError(f"--devices {cluster.devices}: {len(available)} device(s) are "
                         f"available to {cluster.processes} process(es), and every process "
                         f"needs the same number; pass at most {len(available)}, a multiple "
                         f"of {cluster.processes}, or 'all'")
    each = count // cluster.processes  # the first `each` devices of every process
    chosen = [f"{device.platform}:{device.id}" for process in range(cluster.processes)
              for device in [d for d in available if d.process_index == process][:each]]
    distribution = keras.distribution.DataParallel(devices=chosen)
    keras.distribution.set_distribution(distribution)
    _current = Replicas(distribution, count, cluster.process, cluster.processes)
    logger.info("data parallel on %d device(s) (%s), process %d of %d", count,
                ", ".join(chosen), cluster.process, cluster.processes)
    return _current


def stop() -> None:
    """Forget the distribution (the end of a run, or a test)."""
    global _current
    if _current is not None:
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


def to_numpy(value: Any) -> np.ndarray:
    """A variable's value on the host: a replicated array spanning several processes is
    read from this process's own replica."""
    if getattr(value, "is_fully_addressable", True) is False:
        return np.asarray(value.addressable_data(0))
    import keras

    return keras.ops.convert_to_numpy(value)
