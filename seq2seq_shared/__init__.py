"""seq2seq-shared: compact translation models with ONE LSTM shared by encoder and decoder.

Importing the package is cheap: Keras (and so TensorFlow) loads only when a model is
built or loaded, e.g. by `Translator.from_model_dir`. The sub-packages, by layer
(docs/architecture.md): `config`; `backend`, `data/`; `model/`; `model_dir`; `decoding/`;
`training/`; `console`; `serve/`; `cli`, `commands/`.
"""

from ._version import __version__

__all__ = ["DecodeConfig", "Translator", "__version__"]


def __getattr__(name: str):
    if name == "Translator":
        from .decoding.translator import Translator

        return Translator
    if name == "DecodeConfig":
        from .config import DecodeConfig

        return DecodeConfig
    raise AttributeError(f"module 'seq2seq_shared' has no attribute {name!r}")
