"""The light runtime: a release (`seq2seq-shared release`) translated with NumPy and
SentencePiece alone, without importing TensorFlow or Keras.

`load_translator(path)` is what every translating command and script calls: a release
gets a `Translator` (the same text-in, text-out class) over the runtime's `LightDecoder`,
a trained model directory the Keras one, so users never need to know which it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import DecodeConfig
from ..model_dir import ModelDir


def is_release(path: Path | str) -> bool:
    return ModelDir(path).is_release()


class LoadedRelease:
    """A release loaded once (its arrays checked and dequantized); a `Translator` per
    search setting from it."""

    def __init__(self, path: Path | str):
        from .network import Network
        from .release import release_arrays

        directory = ModelDir(path)
        self.document = directory.read_config_document()
        self.config = directory.read_config()
        self.arrays = release_arrays(directory)
        self.network = Network(self.arrays, self.config.model)
        self.tokenizer = directory.load_tokenizer()

    def translator(self, decode_config: DecodeConfig = DecodeConfig()):
        from ..decoding.translator import Translator
        from .decoder import LightDecoder

        decoder = LightDecoder(self.network, decode_config, self.config.model.max_source_length)
        return Translator(
            self.network, self.tokenizer, self.config.model, decode_config, decoder=decoder
        )

    def info(self) -> dict[str, Any]:
        """What `info --json` says of a model, as far as a release holds it."""
        return {
            "config": {
                key: self.document[key]
                for key in ("model", "training", "vocab", "format_version", "package_version")
            },
            "release": self.document["release"],
            "total": int(sum(array.size for array in self.arrays.values())),
        }


def load_translator(path: Path | str, decode_config: DecodeConfig = DecodeConfig()):
    """A `Translator` for the model directory or release at `path`."""
    if is_release(path):
        return LoadedRelease(path).translator(decode_config)
    from ..decoding.translator import Translator

    return Translator.from_model_dir(path, decode_config)  # (imports Keras)
