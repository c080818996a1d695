"""TensorBoard event files for a training run's scalars (TensorFlow backend only)."""

from __future__ import annotations

import importlib.util
import logging
import math

from .. import backend

logger = logging.getLogger(__name__)

FLOAT32_MAX = 3.4028234663852886e38


class TensorBoardWriter:
    """Scalars to TensorBoard event files (`tf.summary`); TensorFlow backend only."""

    def __init__(self, path):
        import tensorflow as tf

        self._summary = tf.summary
        self._writer = tf.summary.create_file_writer(str(path))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        with self._writer.as_default(step=step):
            for key, value in values.items():
                # float32 events: a diverging run's perplexity (1e42) is written as inf
                # instead of stopping the run.
                self._summary.scalar(
                    key, value if abs(value) < FLOAT32_MAX else math.copysign(math.inf, value)
                )
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def tensorboard_writer(path) -> TensorBoardWriter | None:
    """A writer, or None with a one-line warning where TensorFlow or TensorBoard is absent."""
    if backend.name() != "tensorflow":
        missing = f"the TensorFlow backend (this is {backend.name()})"
    elif importlib.util.find_spec("tensorboard") is None:
        missing = "the tensorboard package (pip install tensorboard)"
    else:
        return TensorBoardWriter(path)
    logger.warning(
        "TensorBoard logs need %s; skipping them (metrics.csv has the same figures)", missing
    )
    return None
