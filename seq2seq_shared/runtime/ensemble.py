"""Ensembles at decode time: several models read the same source, and every step's
log-probabilities are the average of theirs (renormalized), for greedy and beam search.

An `Ensemble` has the interface of `network.py`'s `Network` (`encode`, `constants`,
`decode_step`), so `search.py` and `beam.py` run it unchanged: its states are its
members' states one after another, its constants theirs under "MEMBER/NAME". Members are
releases (NumPy or ONNX) or trained model directories (their Keras weights read into the
NumPy network), in any mix, as long as they share one SentencePiece model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DecodeConfig
from ..model_dir import ModelDir
from .network import Network, log_softmax


class Ensemble:
    def __init__(self, networks: list):
        sizes = {network.target_vocab_size for network in networks}
        if len(sizes) != 1:
            raise ValueError(f"the models' target vocabularies differ ({sorted(sizes)} pieces)")
        self.networks, self.target_vocab_size = networks, sizes.pop()
        self.layers = sum(network.layers for network in networks)
        self.attention = None  # (alignments: one model's, so refused for an ensemble)

    def _split(self, states: list) -> list[list]:
        parts, start = [], 0
        for network in self.networks:
            parts.append(states[start : start + network.layers])
            start += network.layers
        return parts

    def encode(self, source: np.ndarray) -> dict[str, Any]:
        parts = [network.encode(source) for network in self.networks]
        return {"states": [s for part in parts for s in part["states"]], "parts": parts}

    def constants(self, encoded: dict[str, Any]) -> dict[str, Any]:
        return {
            f"{member}/{name}": value
            for member, (network, part) in enumerate(zip(self.networks, encoded["parts"]))
            for name, value in network.constants(part).items()
        }

    def decode_step(
        self, token: np.ndarray, states: list, constants: dict, candidates=None
    ) -> tuple:
        """token (rows,) -> the members' averaged log-probabilities, renormalized, and
        the next states (`candidates`: a shortlist, or None)."""
        members, next_states = [], []
        for member, (network, own) in enumerate(zip(self.networks, self._split(states))):
            prefix = f"{member}/"
            mine = {k[len(prefix) :]: v for k, v in constants.items() if k.startswith(prefix)}
            log_probs, after = network.decode_step(token, own, mine, candidates)
            members.append(log_probs)
            next_states.extend(after)
        return log_softmax(np.mean(members, axis=0)), next_states


def member_network(path: Path | str):
    """A model's network for the runtime: a release's own, or a trained model
    directory's Keras weights read into the NumPy network (imports Keras)."""
    from . import LoadedRelease, is_release

    if is_release(path):
        return LoadedRelease(path).network
    from .release import network_arrays

    model, _tokenizer, config = ModelDir(path).load_model()
    return Network(network_arrays(model), config.model)


def load_translators(paths: Sequence[Path | str], decode_config: DecodeConfig = DecodeConfig()):
    """One model's `Translator` (`load_translator`), or the ensemble of several."""
    from . import load_translator

    if len(paths) == 1:
        return load_translator(paths[0], decode_config)
    return load_ensemble([Path(path) for path in paths], decode_config)


def load_ensemble(paths: list[Path], decode_config: DecodeConfig = DecodeConfig()):
    """A `Translator` over the ensemble of the models at `paths`."""
    from ..decoding.translator import Translator
    from .decoder import LightDecoder

    if decode_config.shortlist:
        raise ValueError("--shortlist is for one model, not an ensemble")
    directories = [ModelDir(path) for path in paths]
    vocab = [d.read_config_document()["vocab"]["sentencepiece_sha256"] for d in directories]
    for directory, own in zip(directories[1:], vocab[1:]):
        if own != vocab[0]:
            raise ValueError(
                f"{directory.path} and {directories[0].path} have different SentencePiece "
                f"models; an ensemble's models must share one (train them on one vocabulary)"
            )
    ensemble = Ensemble([member_network(path) for path in paths])
    config = directories[0].read_config()
    max_length = min(d.read_config().model.max_source_length or 10**9 for d in directories)
    decoder = LightDecoder(ensemble, decode_config, max_length)  # type: ignore[arg-type]
    tokenizer = directories[0].load_tokenizer()
    return Translator(ensemble, tokenizer, config.model, decode_config, decoder=decoder)
