"""Export to a TensorFlow SavedModel (TensorFlow backend only; imported lazily).

The serving signature takes ids and returns ids; the SentencePiece model(s) are copied
beside it. Why not strings in and out: SentencePiece inside the graph needs
tensorflow-text, whose releases trail TensorFlow's and which has no wheels for some
platforms; ids keep the export loadable wherever TensorFlow is, and any SentencePiece
binding (Python, C++, Java, JS) turns text into ids and back.

    serve(source_ids int32 (batch, length), right-padded with 0, natural word order)
      -> {"target_ids": int32 (batch, steps)}: pieces, then 0 after each sentence's end
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from . import backend
from .config import DecodeConfig
from .decode import greedy_search
from .model_dir import ModelDir
from .tokenizer import EOS_ID, PAD_ID

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


def export_saved_model(model_dir: Path | str, output: Path | str,
                       decode_config: DecodeConfig = DecodeConfig()) -> Path:
    if backend.name() != "tensorflow":
        raise ValueError("export writes a TensorFlow SavedModel: run it with the TensorFlow "
                         "backend (unset KERAS_BACKEND or set it to 'tensorflow')")
    import tensorflow as tf
    from keras import ops

    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise ValueError(f"{output}: exists and is not empty; choose a new --output")
    directory = ModelDir(model_dir)
    model, tokenizer, config = directory.load_model()
    reverse = config.model.reverse_source

    class Exported(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model  # tracks the weights

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="source_ids")])
        def serve(self, source_ids):
            lengths = tf.reduce_sum(tf.cast(source_ids != PAD_ID, tf.int32), axis=1)  # (batch,)
            source = (tf.reverse_sequence(source_ids, lengths, seq_axis=1, batch_axis=0)
                      if reverse else source_ids)
            limits = tf.where(lengths > 0, tf.cast(decode_config.length_ratio
                                                   * tf.cast(lengths, tf.float32), tf.int32)
                              + decode_config.length_offset, 0)
            ids = greedy_search(self.model, source, limits, tf.reduce_max(limits))
            ends = tf.cumsum(tf.cast(ids == EOS_ID, tf.int32), axis=1) > 0
            return {"target_ids": ops.where(ends, PAD_ID, ids)}

    module = Exported()
    tf.saved_model.save(module, str(output), signatures={"serving_default": module.serve})
    files = directory.sentencepiece_files()
    for path in files.values():
        shutil.copy2(path, output / path.name)
    (output / "seq2seq_shared.json").write_text(json.dumps(
        {"config": config.to_dict(), "decode": {"length_ratio": decode_config.length_ratio,
                                                "length_offset": decode_config.length_offset}},
        indent=2) + "\n")
    (output / "README.txt").write_text(README.format(
        path=output, source_spm=files["source"].name, target_spm=files["target"].name))
    return output
