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
from ..model_dir import RELEASE_GRAPHS, SHORTLIST, ModelDir, read_release_file, release_files


def is_release(path: Path | str) -> bool:
    return ModelDir(path).is_release()


class LoadedRelease:
    """A release loaded once (its arrays checked and dequantized); a `Translator` per
    search setting from it."""

    def __init__(self, path: Path | str):
        directory = ModelDir(path)
        self.document = directory.read_config_document()
        self.config = directory.read_config()
        self.runtime = self.document["release"].get("runtime", "numpy")
        self.network: Any = self._network(directory)
        self.tokenizer = directory.load_tokenizer()
        self.directory, self.shortlist = directory, None

    def _network(self, directory: ModelDir):
        if self.runtime == "onnx":
            from .onnx_network import OnnxNetwork
            from .release import release_stored

            names = self.document["release"].get("shared_weights")  # (older: in the graphs)
            files = set(release_files(directory))
            graphs = {k: read_release_file(directory, n)
                      for k, n in RELEASE_GRAPHS.items() if n in files}  # fmt: skip
            stored = release_stored(directory) if names else {}
            weights = {g: {n: stored[n] for n in names[g]} for g in graphs} if names else None
            self.parameters = self.document["release"].get("parameters", 0)
            vocab = directory.vocab_sizes()[1]
            return OnnxNetwork(graphs, weights, self.config.model, vocab, str(directory))
        from .network import Network
        from .release import release_arrays

        arrays = release_arrays(directory)
        self.parameters = int(sum(array.size for array in arrays.values()))
        return Network(arrays, self.config.model)

    def translator(self, decode_config: DecodeConfig = DecodeConfig()):
        from ..decoding.translator import Translator
        from .decoder import LightDecoder

        shortlist = self.load_shortlist() if decode_config.shortlist else None
        max_length = self.config.model.max_source_length
        decoder = LightDecoder(self.network, decode_config, max_length, shortlist)
        return Translator(
            self.network, self.tokenizer, self.config.model, decode_config, decoder=decoder
        )

    def load_shortlist(self):
        """The release's shortlist.npz (checked against checksums.json), read once."""
        from .shortlist import Shortlist

        if self.shortlist is None:
            path = self.directory.path / SHORTLIST
            if not path.is_file():
                raise ValueError(
                    f"{self.directory.path} has no shortlist; build one: seq2seq-shared "
                    f"shortlist --model-dir {self.directory.path} SOURCE TARGET"
                )
            data = read_release_file(self.directory, SHORTLIST)
            shortlist = Shortlist.from_bytes(data, str(path))
            self.shortlist = shortlist.check(self.directory.vocab_sizes()[1], str(path))
        return self.shortlist

    def info(self) -> dict[str, Any]:
        """What `info --json` says of a model, as far as a release holds it."""
        return {
            "config": {
                key: self.document[key]
                for key in ("model", "training", "vocab", "format_version", "package_version")
            },
            "release": self.document["release"],
            "total": self.parameters,
        }


def check_shortlist(path: Path | str, decode_config: DecodeConfig) -> None:
    """A shortlist runs on a release's runtime: refused for a trained model directory."""
    if decode_config.shortlist and not is_release(path):
        raise ValueError(
            f"--shortlist runs on a release: seq2seq-shared release --model-dir {path} --out "
            f"RELEASE (a shortlist built for {path} goes with it), then translate RELEASE"
        )


def load_translator(path: Path | str, decode_config: DecodeConfig = DecodeConfig()):
    """A `Translator` for the model directory or release at `path`."""
    if is_release(path):
        return LoadedRelease(path).translator(decode_config)
    check_shortlist(path, decode_config)
    from ..decoding.translator import Translator

    return Translator.from_model_dir(path, decode_config)  # (imports Keras)
