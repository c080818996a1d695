import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from seq2seq_shared import backend  # noqa: E402
from seq2seq_shared.decoding.decoder import Decoder  # noqa: E402
from seq2seq_shared.decoding.greedy import greedy_search  # noqa: E402
from seq2seq_shared.model.parameters import expected_parameter_count, lstm_parameter_count  # noqa: E402
from seq2seq_shared.model.seq2seq import Seq2Seq  # noqa: E402

V, E, H = 37, 8, 12
# The shape every test builds unless it says otherwise: Seq2Seq takes its shape in full.
SHAPE = dict(
    source_vocab_size=V,
    target_vocab_size=V,
    embedding_dim=E,
    hidden_size=H,
    num_layers=1,
    share_lstm=True,
    share_embeddings=True,
    tie_output=False,
    feed_context=False,
    attention="none",
    role_signal="none",
)


def build(**options) -> Seq2Seq:
    keras.utils.set_random_seed(7)
    model = Seq2Seq(**{**SHAPE, **options})
    model.build()
    return model


def randomize(model, seed: int = 3, scale: float = 0.5) -> None:
    """Every weight drawn from N(0, scale). Keras's initialisers give logits of about 0.01,
    where atol=1e-5 hid a decode_step reading 0.99 x its context; these give logits of
    order 1 (std 0.4-0.9), and no two units alike (constants would hide a permutation)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(0.0, scale, size=variable.shape).astype(variable.dtype))


def random_ids(rows, length, seed):
    ids = np.random.default_rng(seed).integers(4, V, size=(rows, length)).astype("int32")
    ids[1, length - 3 :] = 0  # a shorter, right-padded sentence
    return ids


def test_encoder_and_decoder_use_the_very_same_lstm_variables():
    model = build(num_layers=2)
    for encoder_lstm, decoder_lstm in zip(model.encoder_lstms, model.decoder_lstms, strict=True):
        assert encoder_lstm is decoder_lstm
        assert [id(v) for v in encoder_lstm.weights] == [id(v) for v in decoder_lstm.weights]
    paths = [v.path for v in model.trainable_variables]
    assert len(paths) == len(set(paths))
    assert sum("lstm" in p for p in paths) == 2 * 3  # 2 layers x (kernel, recurrent, bias)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"num_layers": 3},
        {"share_lstm": False},
        {"tie_output": True},
        {"share_embeddings": False, "source_vocab_size": 29},
        {"num_layers": 2, "share_lstm": False},
        {"feed_context": True, "num_layers": 2},
        {"attention": "dot"},
        {"attention": "general", "num_layers": 2, "feed_context": True, "tie_output": True},
        {"role_signal": "bias", "num_layers": 2},
        {"role_signal": "embedding"},
        {"attention": "general", "role_signal": "bias", "share_lstm": False},
    ],
)
def test_parameter_count_matches_the_formula(options):
    model = build(**options)
    assert model.count_params() == expected_parameter_count(**{**SHAPE, **options})


def test_one_shared_lstm_by_hand():
    # embedding V*E, ONE LSTM 4*(E*H + H*H + H), projection H*V + V.
    assert build().count_params() == V * E + 4 * (E * H + H * H + H) + H * V + V
    assert lstm_parameter_count(E, H) == 4 * (E * H + H * H + H)
    shared, separate = build().count_params(), build(share_lstm=False).count_params()
    assert separate - shared == lstm_parameter_count(E, H)


STEP_BY_STEP_OPTIONS = [
    {},
    {"num_layers": 2},
    {"share_lstm": False},
    {"tie_output": True},
    {"feed_context": True, "num_layers": 2},
    # The recipe's shape (tied output through a bridge, fed context), with 2 layers.
    {"feed_context": True, "tie_output": True, "num_layers": 2},
    {
        "feed_context": True,
        "tie_output": True,
        "num_layers": 2,
        "share_lstm": False,
        "share_embeddings": False,
        "source_vocab_size": 29,
    },
    {"attention": "dot"},
    {"attention": "general", "reverse_source": True},
    {
        "attention": "general",
        "feed_context": True,
        "tie_output": True,
        "num_layers": 2,
        "role_signal": "bias",
        "reverse_source": True,
    },
    {"role_signal": "embedding", "feed_context": True, "tie_output": True},
    {"role_signal": "bias", "num_layers": 2, "share_lstm": False},
    {"attention": "dot", "bidirectional": True, "feed_context": True, "role_signal": "bias"},
    {"attention": "general", "bidirectional": True, "num_layers": 2, "reverse_source": True},
]


@pytest.mark.parametrize("options", STEP_BY_STEP_OPTIONS)
def test_step_by_step_decoding_reproduces_teacher_forced_logits(options):
    """`encode` + one `decode_step` per position (with the input table and without) gives
    the logits `call` gives under teacher forcing, to float32 rounding."""
    model = build(dropout=0.3, **options)  # dropout must be off at inference
    randomize(model)
    source = random_ids(3, 9, seed=1) % options.get("source_vocab_size", V)
    target_input = random_ids(3, 7, seed=2)
    target_input[:, 0] = 2
    forced = ops.convert_to_numpy(model({"source": source, "target_input": target_input}))
    assert forced.shape == (3, 7, V) and forced.std() > 0.25  # logits of order 1
    encoded = model.encode(source)
    states = looked_up = encoded["states"]
    constants, table = model.decoder_constants(encoded), model.input_table()
    assert ("context_projection" in constants) == options.get("feed_context", False)
    assert ("memory" in constants) == ("attention" in options)
    for t in range(target_input.shape[1]):
        logits, states = model.decode_step(target_input[:, t], states, constants)
        np.testing.assert_allclose(
            ops.convert_to_numpy(logits), forced[:, t], rtol=1e-5, atol=1e-5, err_msg=f"step {t}"
        )
        logits, looked_up = model.decode_step(target_input[:, t], looked_up, constants, table)
        np.testing.assert_allclose(
            ops.convert_to_numpy(logits),
            forced[:, t],
            rtol=1e-5,
            atol=1e-5,
            err_msg=f"step {t}, input table",
        )


def test_padding_does_not_change_the_encoder_state():
    model = build()
    source = random_ids(2, 6, seed=3)
    padded = np.pad(source, ((0, 0), (0, 10)))
    for (h, c), (h_padded, c_padded) in zip(
        model.encode(source)["states"], model.encode(padded)["states"], strict=True
    ):
        np.testing.assert_allclose(
            ops.convert_to_numpy(h), ops.convert_to_numpy(h_padded), atol=1e-6
        )
        np.testing.assert_allclose(
            ops.convert_to_numpy(c), ops.convert_to_numpy(c_padded), atol=1e-6
        )


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("options", [{}, {"feed_context": True, "num_layers": 2}])
def test_greedy_search_equals_a_plain_python_loop(options, compact):
    """Both searches: all rows stepping to the end, and finished rows leaving the batch."""
    if compact and not backend.dynamic_shapes():
        pytest.skip("the compacting search needs dynamic shapes (TensorFlow)")
    model = build(**options)
    source = random_ids(4, 5, seed=4)
    limits = np.array([3, 8, 8, 0], dtype="int32")
    # Sentences must also end by eos, not only by their limits: raise eos's bias just
    # enough to win the first step of the row where it comes closest.
    encoded = model.encode(source)
    first, _ = model.decode_step(
        np.full(4, 2, dtype="int32"), encoded["states"], model.decoder_constants(encoded)
    )
    first = ops.convert_to_numpy(first)[:3]
    bias = ops.convert_to_numpy(model.projection.bias)
    bias[3] += np.min(first.max(-1) - first[:, 3]) + 1e-3
    model.projection.bias.assign(bias)
    output = ops.convert_to_numpy(
        greedy_search(model, model.encode(source), limits, max_steps=8, compact=compact)
    )
    encoded, token = model.encode(source), np.full(4, 2, dtype="int32")
    states, context = encoded["states"], model.decoder_constants(encoded)
    expected = np.zeros((4, 8), dtype="int32")
    finished = limits <= 0
    for step in range(8):
        logits, states = model.decode_step(token, states, context)
        token = np.where(finished, 0, ops.convert_to_numpy(ops.argmax(logits, -1))).astype("int32")
        expected[:, step] = token
        finished |= (token == 3) | (step + 1 >= limits)
    np.testing.assert_array_equal(output, expected)
    assert (output[0, 3:] == 0).all() and (output[3] == 0).all()
    assert (output[:3, 0] == 3).any() and not (output[:3, 0] == 3).all()


@pytest.mark.parametrize("options", [{}, {"attention": "dot", "role_signal": "bias"}])
def test_batching_and_encoder_slices_do_not_change_translations(options):
    """`Decoder` sorts, batches and encodes in slices of `ENCODE_ROWS`; any batch size
    gives each sentence what it gets alone, in input order, [] for an empty source (with
    attention, the slices' memories padded to one length)."""
    model = build(feed_context=True, **options)
    rng = np.random.default_rng(8)
    sources = [rng.integers(4, V, size=n).tolist() for n in rng.integers(0, 12, size=80)]
    decoder = Decoder(model)
    alone = [decoder.decode([source], 1)[0] for source in sources]
    assert decoder.decode(sources, 80) == alone  # two encoder slices: 64 + the rest
    assert decoder.decode(sources, 7) == alone
    assert decoder.use_input_table
    decoder.use_input_table = False  # each step's input multiplied, not looked up
    assert decoder.decode(sources, 80) == alone
    assert all(ids == [] for ids, source in zip(alone, sources, strict=True) if not source)
    assert len({len(ids) for ids in alone}) > 3  # sentences finish at different steps


def test_loss_ignores_padding():
    """From logits (evaluation) and from decoder states (training, which projects only the
    real positions): the same mean over real target tokens."""
    model = build()
    rng = np.random.default_rng(5)
    states = ops.convert_to_tensor(rng.normal(size=(2, 4, H)).astype("float32"))
    logits = model.logits(states)
    labels = np.array([[5, 6, 3, 0], [7, 3, 0, 0]], dtype="int32")
    log_probs = ops.convert_to_numpy(ops.log_softmax(logits, axis=-1))
    real = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    expected = -np.mean([log_probs[b, t, labels[b, t]] for b, t in real])
    assert float(model.compute_loss(y=labels, y_pred=logits, training=False)) == pytest.approx(
        expected, rel=1e-5
    )
    assert float(model.compute_loss(y=labels, y_pred=states, training=True)) == pytest.approx(
        expected, rel=1e-5
    )
    model.label_smoothing = 0.1
    smooth = -np.mean([log_probs[b, t].mean() for b, t in real])
    assert float(model.compute_loss(y=labels, y_pred=states, training=True)) == pytest.approx(
        0.9 * expected + 0.1 * smooth, rel=1e-5
    )


def keras_teacher_forced_logits(model, inputs):
    """Teacher-forced logits through Keras's own LSTM layers (which take no context)."""
    states = model.encode(inputs["source"])["states"]
    x = model.target_embedding(inputs["target_input"])
    for lstm, state in zip(model.decoder_lstms, states, strict=True):
        x, _, _ = lstm(x, initial_state=state)
    return ops.convert_to_numpy(model.logits(x))


def test_weights_saved_with_keras_lstm_layers_still_load(tmp_path, monkeypatch):
    """Model directories trained before the model used its own LSTM class (with
    keras.layers.LSTM) load into today's model, giving the same logits."""

    def keras_lstm(self, prefix, index):
        layer = keras.layers.LSTM(
            self.hidden_size, return_sequences=True, return_state=True, name=f"{prefix}_{index}"
        )
        layer.build((None, None, self.hidden_size if index else self.first_input_size))
        return layer

    with monkeypatch.context() as patch:
        patch.setattr(Seq2Seq, "_lstm", keras_lstm)
        keras.utils.set_random_seed(8)
        old = Seq2Seq(**{**SHAPE, "num_layers": 2})
        old.source_embedding.build(None)
        old.projection.build((None, H))
        old.built = True
        assert type(old.encoder_lstms[0]) is keras.layers.LSTM
        randomize(old, seed=8)
        old.save_weights(tmp_path / "old.weights.h5")
    new = build(num_layers=2)
    assert type(new.encoder_lstms[0]) is not keras.layers.LSTM
    new.load_weights(tmp_path / "old.weights.h5")
    inputs = {"source": random_ids(2, 6, 1), "target_input": random_ids(2, 5, 2)}
    for a, b in zip(old.trainable_variables, new.trainable_variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    expected = keras_teacher_forced_logits(old, inputs)
    assert expected.shape == (2, 5, V) and expected.std() > 0.25  # logits of order 1
    np.testing.assert_allclose(ops.convert_to_numpy(new(inputs)), expected, rtol=1e-5, atol=1e-5)


def test_the_model_reads_its_source_backwards_real_tokens_only():
    from seq2seq_shared.model.seq2seq import reverse_sentences

    source = np.array([[5, 6, 7, 0], [8, 9, 0, 0], [0, 0, 0, 0]], dtype="int32")
    lengths = np.array([3, 2, 0], dtype="int32")
    assert ops.convert_to_numpy(reverse_sentences(source, lengths)).tolist() == [
        [7, 6, 5, 0],
        [9, 8, 0, 0],
        [0, 0, 0, 0],
    ]
    backwards = build(reverse_source=True)
    forwards = build()  # the same seed: the same weights
    by_hand = np.array([[7, 6, 5, 0], [9, 8, 0, 0], [0, 0, 0, 0]], dtype="int32")
    for mine, reference in zip(
        backwards.encode(source)["states"], forwards.encode(by_hand)["states"], strict=True
    ):
        for a, b in zip(mine, reference, strict=True):
            np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


@pytest.mark.parametrize("reverse_source", [False, True])
def test_the_bidirectional_read_is_the_same_lstm_over_the_reversed_source(reverse_source):
    """The memory of a bidirectional read is the average of the one-way model's memory of
    the source and, put back in order, of the source reversed by hand; the states are the
    one-way model's; the weights are the same variables, no more."""
    from seq2seq_shared.model.parameters import expected_parameter_count

    options = dict(attention="dot", role_signal="bias", feed_context=True, num_layers=2)
    both = build(bidirectional=True, reverse_source=reverse_source, **options)
    one = build(reverse_source=reverse_source, **options)  # the same seed: the same weights
    randomize(both)
    randomize(one)
    source = np.array([[5, 6, 7, 8], [9, 10, 0, 0]], dtype="int32")
    by_hand = np.array([[8, 7, 6, 5], [10, 9, 0, 0]], dtype="int32")
    encoded, forward, backward = both.encode(source), one.encode(source), one.encode(by_hand)
    back_in_order = ops.convert_to_numpy(backward["memory"])[:, [3, 2, 1, 0]]
    back_in_order[1, :2] = back_in_order[1, 2:]  # the short row: its two real pieces
    expected = (ops.convert_to_numpy(forward["memory"]) + back_in_order) / 2
    memory = ops.convert_to_numpy(encoded["memory"])
    np.testing.assert_allclose(memory[0], expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(memory[1, :2], expected[1, :2], rtol=1e-5, atol=1e-6)
    assert not np.allclose(memory, ops.convert_to_numpy(forward["memory"]), atol=1e-3)
    for mine, reference in zip(encoded["states"], forward["states"], strict=True):
        for a, b in zip(mine, reference, strict=True):
            np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))

    def names(model):  # (without the model's own name, which Keras numbers)
        return [v.path.split("/", 1)[1] for v in model.trainable_variables]

    assert names(both) == names(one)
    assert all(e is d for e, d in zip(both.encoder_lstms, both.decoder_lstms, strict=True))
    assert both.count_params() == expected_parameter_count(**{**SHAPE, **options})
