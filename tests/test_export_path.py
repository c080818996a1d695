"""The SavedModel takes the Translator's path: the same truncation, reversal, limits and search."""

import os

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="SavedModel export needs TensorFlow",
)


@pytest.mark.slow
def test_export_truncates_over_long_inputs_as_translate_does(trained, tmp_path):
    import tensorflow as tf

    from seq2seq_shared.decoding.export import export_saved_model
    from seq2seq_shared.decoding.translator import Translator

    translator = Translator.from_model_dir(trained)
    limit = translator.model_config.max_source_length
    lines = [
        " ".join(["one hundred ninety-nine", "seventy-seven", "twelve"] * 40),
        "twelve",
        "",
        "one hundred eleven",
    ]
    sources = translator.tokenizer.encode_source(lines)
    assert len(sources[0]) > limit  # over-long: translate reads its first `limit` pieces

    exported = tf.saved_model.load(str(export_saved_model(trained, tmp_path / "export")))
    batch = np.zeros((len(sources), max(map(len, sources))), np.int32)  # (batch, length)
    for row, ids in enumerate(sources):
        batch[row, : len(ids)] = ids
    output = exported.signatures["serving_default"](source_ids=tf.constant(batch))["target_ids"]
    ids = [row[row != 0].tolist() for row in output.numpy()]

    assert ids == translator.decoder.decode([s[:limit] for s in sources])
    assert translator.tokenizer.decode_target(ids) == translator.translate(lines)
