"""Training: the run, its state and directory, checkpoints, validation, accumulation, averaging, data parallelism."""
