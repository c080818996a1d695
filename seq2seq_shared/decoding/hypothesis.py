"""A hypothesis: one output of a search for one source, as every decoder returns it
(the Keras `Decoder` and the light runtime's alike)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Hypothesis:
    """One output for a source: its pieces' ids (eos stripped), whether it ended with eos
    (else its length limit stopped it), its log-probability (what the model gives it
    under teacher forcing, eos included), its score (the log-probability over the length
    penalty: what ranks a beam), and its attention weights where asked for."""

    ids: list[int]
    ended: bool = True
    log_prob: float | None = None
    score: float | None = None
    weights: np.ndarray | None = None  # (pieces + eos, source pieces read)
