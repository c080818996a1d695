"""Export to a TensorFlow SavedModel (TensorFlow backend only; imported lazily).

The serving signature takes ids and returns ids; the SentencePiece model(s) are copied
beside it. Why not strings in and out: SentencePiece inside the graph needs
tensorflow-text, whose releases trail TensorFlow's and which has no wheels for some
platforms; ids keep the export loadable wherever TensorFlow is, and any SentencePiece
binding (Python, C++, Java, JS) turns text into ids and back.

    serve(source_ids int32 (batch, length), right-padded with 0, natural word order)
      -> {"target_ids": int32 (batch, steps)}: pieces, then 0 after each sentence's end

The graph is `translate`'s path, traced: `search.prepare_sources` (truncation to the
model's `max_source_length`, length limits), the encoder (`Seq2Seq.encode`, which reverses
the source if the model reads it backwards), `search.greedy_search` and
`search.trim_at_eos`, the very functions `Decoder` compiles.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .. import backend
from ..config import Config, DecodeConfig
from ..data.writer import atomic_directory
from ..model_dir import ModelDir
from .greedy import greedy_search, prepare_sources, trim_at_eos

README = """SavedModel exported by seq2seq-shared.

  import numpy as np, sentencepiece as spm, tensorflow as tf
  model = tf.saved_model.load("{path}")
  source_sp = spm.SentencePieceProcessor(model_file="{path}/{source_spm}")
  target_sp = spm.SentencePieceProcessor(model_file="{path}/{target_spm}")
  ids = source_sp.encode(["a sentence"])                      # list of lists of ints
  batch = np.zeros((len(ids), max(map(len, ids))), np.int32)  # right-pad with 0
  for row, sentence in enumerate(ids): batch[row, :len(sentence)] = sentence
  out = model.signatures["serving_default"](source_ids=tf.constant(batch))["target_ids"]
  print(target_sp.decode([[int(i) for i in row if i != 0] for row in out.numpy()]))
"""


def export_saved_model(
    model_dir: Path | str, output: Path | str, decode_config: DecodeConfig = DecodeConfig()
) -> Path:
    """Write the model in `model_dir` to `output` as a SavedModel, ids in and ids out,
    with its SentencePiece model(s), its settings and a README beside it."""
    if backend.name() != "tensorflow":
        raise ValueError(
            "export writes a TensorFlow SavedModel: run it with the TensorFlow "
            "backend (unset KERAS_BACKEND or set it to 'tensorflow')"
        )
    import tensorflow as tf

    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"{output}: exists and is not empty; choose a new --output")
    directory = ModelDir(model_dir)
    with backend.portable_graph():  # no cuDNN op in the graph: it runs on any machine
        model, _, config = directory.load_model()
        module = _serving_module(model, config, decode_config)

    def fill(temporary: Path) -> None:
        with backend.portable_graph():
            tf.saved_model.save(
                module, str(temporary), signatures={"serving_default": module.serve}
            )
        _write_companions(temporary, output, directory, config, decode_config)

    atomic_directory(output, fill)  # a kill leaves nothing or the whole export
    return output


def _write_companions(
    folder: Path, output: Path, directory: ModelDir, config, decode_config: DecodeConfig
) -> None:
    """The SentencePiece model(s), the settings and a README beside the SavedModel."""
    output = Path(output)
    files = directory.sentencepiece_files()
    for path in files.values():
        shutil.copy2(path, folder / path.name)
    (folder / "seq2seq_shared.json").write_text(
        json.dumps(
            {
                "config": config.to_dict(),
                "decode": {
                    "length_ratio": decode_config.length_ratio,
                    "length_offset": decode_config.length_offset,
                },
            },
            indent=2,
        )
        + "\n"
    )
    (folder / "README.txt").write_text(
        README.format(path=output, source_spm=files["source"].name, target_spm=files["target"].name)
    )


def _serving_module(model, config: Config, decode_config: DecodeConfig):
    """A `tf.Module` holding the model's weights, with `serve` traced over `translate`'s
    path for any batch and length."""
    import tensorflow as tf
    from keras import ops

    class Exported(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model  # tracks the weights

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="source_ids")])
        def serve(self, source_ids):
            source, limits = prepare_sources(
                source_ids, decode_config, config.model.max_source_length
            )
            encoded = self.model.encode(source)
            ids = greedy_search(self.model, encoded, limits, ops.max(limits))  # (batch, steps)
            return {"target_ids": trim_at_eos(ids)}

    return Exported()
