"""The ONNX graphs compute what the NumPy network computes, for every shape of model the
settings allow (untrained weights: no training needed to compare the maths)."""

from __future__ import annotations

import numpy as np
import pytest

from seq2seq_shared.config import ModelConfig

BASE = dict(vocab_size=60, embedding_dim=12, hidden_size=16, dropout=0.0)
VARIANTS = {
    "default": {},
    "two layers": {"num_layers": 2},
    "separate LSTMs": {"share_lstm": False},
    "separate embeddings": {"share_embeddings": False, "joint_vocab": False},
    "untied output": {"tie_output": False},
    "general attention": {"attention": "general"},
    "no attention": {"attention": "none"},
    "role embedding": {"role_signal": "embedding"},
    "no role signal": {"role_signal": "none"},
    "no fed context, forward source": {"feed_context": False, "reverse_source": False},
    "bidirectional": {"bidirectional": True},
    "bidirectional, two layers, forward source": {
        "bidirectional": True,
        "num_layers": 2,
        "reverse_source": False,
    },
}


def networks(settings: dict, precision: str):
    from seq2seq_shared.model.seq2seq import Seq2Seq
    from seq2seq_shared.runtime.network import Network
    from seq2seq_shared.runtime.onnx_graphs import onnx_graphs
    from seq2seq_shared.runtime.onnx_network import OnnxNetwork
    from seq2seq_shared.runtime.release import dequantized, network_arrays, quantized

    config = ModelConfig(**{**BASE, **settings})
    target_vocab = 50 if settings.get("share_embeddings") is False else 60
    model = Seq2Seq.from_model_config(config, 60, target_vocab)
    model.build()
    stored = quantized(network_arrays(model), precision)
    graphs, names = onnx_graphs(stored, config)
    weights = {g: {n: stored[n] for n in names[g]} for g in graphs}
    onnx = OnnxNetwork(graphs, weights, config, target_vocab)
    return Network(dequantized(stored), config), onnx


def one_step(network, source: np.ndarray, token: np.ndarray):
    encoded = network.encode(source)
    log_probs, states = network.decode_step(token, encoded["states"], network.constants(encoded))
    return encoded["states"], log_probs, states


@pytest.mark.parametrize("settings", list(VARIANTS.values()), ids=list(VARIANTS))
def test_onnx_graphs_compute_the_numpy_network(settings):
    reference, onnx = networks(settings, "float32")
    source, token = batch(reference)
    expected, found = one_step(reference, source, token), one_step(onnx, source, token)
    for want, got in zip(expected[0], found[0], strict=True):  # the encoder's states
        np.testing.assert_allclose(got[0], want[0], atol=1e-5)
        np.testing.assert_allclose(got[1], want[1], atol=1e-5)
    np.testing.assert_allclose(found[1], expected[1], atol=1e-4)
    for want, got in zip(expected[2], found[2], strict=True):  # the step's states
        np.testing.assert_allclose(got[0], want[0], atol=1e-5)


@pytest.mark.parametrize("settings", list(VARIANTS.values()), ids=list(VARIANTS))
def test_int8_onnx_graphs_load_and_run_for_every_shape(settings):
    """int8 graphs of every shape load and give log-probabilities of the right shape.
    (Their numbers are not compared here: on a tiny untrained model the activations'
    8-bit rounding moves them as much as a bug would; test_release.py and the release
    benchmark compare a trained model's int8 translations.)"""
    reference, onnx = networks(settings, "int8")
    source, token = batch(reference)
    states, log_probs, _ = one_step(onnx, source, token)
    assert log_probs.shape == (5, reference.target_vocab_size)
    assert np.isfinite(log_probs).all() and np.allclose(np.exp(log_probs).sum(1), 1, atol=1e-3)
    assert [h.shape for h, _ in states] == [(5, BASE["hidden_size"])] * len(states)


def batch(reference) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    source = rng.integers(4, 60, (5, 7))
    source[1, 4:] = source[3, 2:] = 0  # (padding: sentences of 4 and 2 pieces)
    return source, rng.integers(4, reference.target_vocab_size, 5)


@pytest.mark.parametrize("reverse_source", [False, True])
def test_the_numpy_network_reads_both_ways_as_the_keras_model(reverse_source):
    """A bidirectional model's memory and first step, Keras against the NumPy network."""
    import keras
    from keras import ops

    from seq2seq_shared.model.seq2seq import Seq2Seq
    from seq2seq_shared.runtime.network import Network, log_softmax
    from seq2seq_shared.runtime.release import network_arrays

    config = ModelConfig(**BASE, bidirectional=True, reverse_source=reverse_source)
    keras.utils.set_random_seed(5)
    model = Seq2Seq.from_model_config(config, 60, 60)
    model.build()
    rng = np.random.default_rng(1)
    for variable in model.weights:  # of order 1: small initial weights would hide a slip
        variable.assign(rng.normal(0, 0.5, variable.shape).astype(variable.dtype))
    network = Network(network_arrays(model), config)
    source, token = batch(network)
    encoded, mine = model.encode(source.astype("int32")), network.encode(source)
    real = mine["mask"][:, :, None]
    memory = ops.convert_to_numpy(encoded["memory"])
    np.testing.assert_allclose(mine["memory"] * real, memory * real, atol=1e-5)
    logits, _ = model.decode_step(token, encoded["states"], model.decoder_constants(encoded))
    log_probs, _ = network.decode_step(token, mine["states"], network.constants(mine))
    expected = log_softmax(ops.convert_to_numpy(logits))
    np.testing.assert_allclose(log_probs, expected, atol=1e-4)
