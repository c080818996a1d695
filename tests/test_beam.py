"""Beam search, n-best lists and their scores (the model's own teacher-forced
log-probabilities), checked by hand and against greedy search."""

import json
import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from seq2seq_shared.config import DecodeConfig  # noqa: E402
from seq2seq_shared.decoding.beam import beam_search  # noqa: E402
from seq2seq_shared.decoding.decoder import Decoder  # noqa: E402
from seq2seq_shared.decoding.greedy import greedy_search, trim_at_eos  # noqa: E402

A, B, EOS = 4, 5, 3


class MarkovModel:
    """A hand-built 'model' whose next piece depends on the last one only:
    after bos A 0.6, B 0.4; after A: A 0.5, B 0.2, eos 0.3; after B: eos 0.9, A 0.1.
    Greedy search takes A, then A forever; the best sentence is B eos (0.4 x 0.9 = 0.36)."""

    attention = None
    target_vocab_size = 6

    def __init__(self):
        table = np.full((6, 6), 1e-9)
        table[2, [A, B]] = [0.6, 0.4]
        table[A, [A, B, EOS]] = [0.5, 0.2, 0.3]
        table[B, [EOS, A]] = [0.9, 0.1]
        table[[0, 1, 3]] = 1.0 / 6
        self.log_table = ops.convert_to_tensor(np.log(table).astype("float32"))

    def decoder_constants(self, encoded):
        return {}

    def decode_step(self, token, states, constants, input_table=None):
        return ops.take(self.log_table, token, axis=0), states


def test_beam_search_finds_the_better_sentence_greedy_search_misses():
    model = MarkovModel()
    encoded = {"states": [[ops.zeros((1, 1)), ops.zeros((1, 1))]]}
    limits = np.array([5], dtype="int32")
    greedy = ops.convert_to_numpy(greedy_search(model, encoded, limits, 5, compact=False))
    assert greedy.tolist() == [[A, A, A, A, A]]  # log(0.6 x 0.5^4) = -3.28
    found = beam_search(model, encoded, limits, 5, beam_size=2, n_best=2)
    ids = ops.convert_to_numpy(trim_at_eos(found["ids"][:, 0]))
    assert ids.tolist() == [[B, 0, 0, 0, 0]]
    log_probs = ops.convert_to_numpy(found["log_probs"])[0]
    assert log_probs[0] == pytest.approx(math.log(0.4 * 0.9), abs=1e-5)  # by hand
    # A eos (0.18) ranks third among step 1's candidates, below the beam (as in fairseq, only
    # the best K may end), so the second best found is A B eos (0.6 x 0.2 x 0.9).
    assert log_probs[1] == pytest.approx(math.log(0.6 * 0.2 * 0.9), abs=1e-5)
    assert ops.convert_to_numpy(found["ids"])[0, 1, :3].tolist() == [A, B, EOS]


def test_the_length_penalty_divides_the_score_and_can_change_the_winner():
    """GNMT: score = log-prob / ((5 + length) / 6) ** alpha, length counting eos."""
    model = MarkovModel()
    encoded = {"states": [[ops.zeros((1, 1)), ops.zeros((1, 1))]]}
    found = beam_search(model, encoded, np.array([6], "int32"), 6, beam_size=3, alpha=1.0, n_best=3)
    log_probs = ops.convert_to_numpy(found["log_probs"])[0]
    scores = ops.convert_to_numpy(found["scores"])[0]
    lengths = [(row != 0).sum() for row in ops.convert_to_numpy(trim_at_eos(found["ids"][0]))]
    for log_prob, score, length in zip(log_probs, scores, lengths, strict=True):
        assert score == pytest.approx(log_prob / ((5 + length + 1) / 6), rel=1e-5)
    assert list(scores) == sorted(scores, reverse=True)


def trained_parts(model_dir):
    from seq2seq_shared.model_dir import ModelDir

    return ModelDir(model_dir).load_model()


def numbers(corpus, count=60):
    return (corpus / "train.en").read_text(encoding="utf-8").splitlines()[:count]


def test_beam_1_is_greedy_search_token_for_token(trained, numbers_corpus):
    model, tokenizer, config = trained_parts(trained)
    decoder = Decoder(model, DecodeConfig(), config.model.max_source_length)
    sources = tokenizer.encode_source(numbers(numbers_corpus, 200))
    encoded, limits = decoder._encode(
        np.asarray([s + [0] * (max(map(len, sources)) - len(s)) for s in sources], "int32")
    )
    greedy = ops.convert_to_numpy(trim_at_eos(greedy_search(model, encoded, limits, 40)))
    beam = ops.convert_to_numpy(
        trim_at_eos(beam_search(model, encoded, limits, 40, 1)["ids"][:, 0])
    )
    np.testing.assert_array_equal(beam, greedy)
    assert (greedy[:, 0] != 0).all() and len({tuple(r) for r in greedy}) > 150


def teacher_forced_log_prob(model, source, target_with_eos):
    logits = ops.convert_to_numpy(
        model(
            {
                "source": np.array([source], "int32"),
                "target_input": np.array([[2] + target_with_eos[:-1]], "int32"),
            }
        )
    )[0]
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(sum(log_probs[t, piece] for t, piece in enumerate(target_with_eos)))


def test_n_best_scores_are_teacher_forced_log_probs_sorted_and_distinct(trained, numbers_corpus):
    model, tokenizer, config = trained_parts(trained)
    decoder = Decoder(model, DecodeConfig(beam_size=5, n_best=5), config.model.max_source_length)
    sources = tokenizer.encode_source(numbers(numbers_corpus, 12))
    for source, hypotheses in zip(sources, decoder.search(sources), strict=True):
        assert len(hypotheses) == 5
        assert len({tuple(h.ids) for h in hypotheses}) == 5
        scores = [h.score for h in hypotheses]
        assert scores == sorted(scores, reverse=True)
        for h in hypotheses:
            assert h.score == h.log_prob  # no length penalty
            forced = teacher_forced_log_prob(model, source, h.ids + [EOS] * h.ended)
            assert h.log_prob == pytest.approx(forced, abs=1e-4)
    # Greedy search's --scores: the same teacher-forced log-probability.
    greedy = Decoder(model, DecodeConfig(), config.model.max_source_length)
    for source, (h,) in zip(sources, greedy.search(sources, scores=True), strict=True):
        assert h.log_prob == pytest.approx(
            teacher_forced_log_prob(model, source, h.ids + [EOS] * h.ended), abs=1e-4
        )


def test_batch_size_and_order_change_no_beam_output_and_empty_lines_stay_empty(
    trained, numbers_corpus
):
    from seq2seq_shared.decoding.translator import Translator

    model, tokenizer, config = trained_parts(trained)
    translator = Translator(
        model, tokenizer, config.model, DecodeConfig(beam_size=4, n_best=2, length_penalty=0.6)
    )
    lines = numbers(numbers_corpus, 40)
    lines[5:5] = [""]
    lines.append("")
    whole = translator.translate_details(lines, batch_size=64)
    assert [t.text for t in whole][5] == "" and whole[-1].text == ""
    small = translator.translate_details(lines, batch_size=3)
    reversed_ = translator.translate_details(lines[::-1], batch_size=7)[::-1]
    for a, b, c in zip(
        whole, small, reversed_, strict=True
    ):  # scores: to float32 rounding of the batch
        for x, y, z in zip(a.hypotheses, b.hypotheses, c.hypotheses, strict=True):
            assert x["translation"] == y["translation"] == z["translation"]
            assert x["log_prob"] == pytest.approx(y["log_prob"], abs=1e-4)
            assert x["score"] == pytest.approx(z["score"], abs=1e-4)
    assert translator.translate(lines) == [t.text for t in whole]


def test_beam_alignments_are_the_best_hypothesis_teacher_forced_weights():
    from tests.test_model import V, build, randomize

    model = build(attention="general", feed_context=True, reverse_source=True)
    randomize(model, scale=0.3)
    rng = np.random.default_rng(8)
    sources = [rng.integers(4, V, size=n).tolist() for n in (5, 0, 9, 3)]
    decoder = Decoder(model, DecodeConfig(beam_size=3))
    found = decoder.search(sources, alignments=True)
    for source, (best,) in zip(sources, found, strict=True):
        if not source:
            assert best.ids == [] and best.weights.shape == (0, 0)
            continue
        target_input = np.array([[2] + best.ids + [EOS] * best.ended][:1], "int32")[:, :-1]
        _, forced = model.decoder_states(
            target_input, model.encode(np.array([source])), return_attention=True
        )
        assert best.weights.shape == (len(best.ids) + best.ended, len(source))
        np.testing.assert_allclose(best.weights, ops.convert_to_numpy(forced)[0], atol=1e-5)


def test_translate_cli_beam_n_best_and_scores(trained, tmp_path):
    from click.testing import CliRunner

    from seq2seq_shared.cli import main

    source = tmp_path / "in.txt"
    source.write_text("one hundred\n\ntwelve\n", encoding="utf-8")

    def run(*args):
        return CliRunner().invoke(
            main, ["translate", "--model-dir", str(trained), "-i", str(source), *map(str, args)]
        )

    result = run("--beam-size", "3", "--n-best", "3")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 3 and [len(line["hypotheses"]) for line in lines] == [3, 1, 3]
    assert lines[1]["hypotheses"][0]["translation"] == ""
    result = run("--scores")
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.split("\n")[:-1]]
    assert len(rows) == 3 and rows[1] == ["", "0.0"]
    assert all(float(log_prob) < 0 for _, log_prob in rows[::2])
    best = run("--beam-size", "3")
    assert best.stdout.splitlines()[0] == lines[0]["hypotheses"][0]["translation"]
    refused = run("--beam-size", "2", "--n-best", "3")
    assert refused.exit_code == 2 and "--beam-size 3" in refused.output


def test_averaging_identical_checkpoints_gives_their_weights_and_a_loadable_model(
    trained, tmp_path
):
    """Three copies of the newest checkpoint average to its own weights; averaging the
    run's real checkpoints gives a model `translate` loads, of other weights."""
    import shutil

    from click.testing import CliRunner

    from seq2seq_shared.cli import main
    from seq2seq_shared.model_dir import ModelDir
    from seq2seq_shared.training import checkpoint
    from seq2seq_shared.training.run_dir import RunDir

    run = RunDir(trained)
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    ((last_step, newest),) = RunDir(copy).checkpoints()[-1:]
    for step in (last_step + 1, last_step + 2):  # two newer checkpoints, identical to it
        shutil.copy(newest, newest.with_name(f"step-{step:09d}.npz"))
    result = CliRunner().invoke(
        main,
        ["average", "--model-dir", str(copy), "--last", "3", "--output", str(tmp_path / "same")],
    )
    assert result.exit_code == 0, result.output
    averaged, _, _ = ModelDir(tmp_path / "same").load_model()
    arrays, _ = checkpoint.read(newest)
    compared = 0
    for index, variable in enumerate(averaged.variables):
        if variable.trainable:  # (dropout's seed state is not a weight: h5 files omit it)
            np.testing.assert_array_equal(np.asarray(variable), arrays[f"model/{index:04d}"])
            compared += 1
    assert compared == len(averaged.trainable_variables) >= 3

    kept = len(run.checkpoints())
    assert kept >= 2
    result = CliRunner().invoke(
        main,
        [
            "average",
            "--model-dir",
            str(trained),
            "--last",
            str(kept),
            "--output",
            str(tmp_path / "mean"),
        ],
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        main, ["translate", "--model-dir", str(tmp_path / "mean")], input="twelve\n"
    )
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 1
    mean, _, _ = ModelDir(tmp_path / "mean").load_model()
    assert not all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(mean.trainable_variables, averaged.trainable_variables, strict=True)
    )
    refused = CliRunner().invoke(
        main,
        [
            "average",
            "--model-dir",
            str(trained),
            "--last",
            str(kept + 1),
            "--output",
            str(tmp_path / "more"),
        ],
    )
    assert refused.exit_code == 1 and "--keep-checkpoints" in refused.output
    assert not (tmp_path / "more").exists()


def test_the_compacting_loop_equals_the_masked_one_alignments_included():
    """TensorFlow drops done sentences from the loop; JAX keeps every row. Both give the
    same hypotheses, scores and alignments, empty sources included."""
    from tests.test_model import V, build, randomize

    model = build(attention="dot", feed_context=True, reverse_source=True)
    randomize(model, scale=0.5)
    rng = np.random.default_rng(3)
    lengths = (6, 0, 2, 9, 4, 1)
    source = np.zeros((len(lengths), max(lengths)), "int32")
    for row, n in enumerate(lengths):
        source[row, :n] = rng.integers(4, V, size=n)
    encoded = model.encode(source)
    limits = np.array([2 * n + 1 if n else 0 for n in lengths], "int32")
    for max_steps in (19, 5):  # 5: sentences still open when the loop ends
        runs = [
            beam_search(
                model,
                encoded,
                limits,
                max_steps,
                beam_size=3,
                alpha=0.6,
                n_best=3,
                alignments=True,
                compact=compact,
            )
            for compact in (True, False)
        ]
        for name in ("ids", "log_probs", "scores", "weights"):
            np.testing.assert_allclose(
                *(ops.convert_to_numpy(run[name]) for run in runs),
                atol=1e-5,
                err_msg=f"{name}, {max_steps} steps",
            )
        assert ops.convert_to_numpy(runs[0]["ids"])[1].sum() == 0  # the empty source
    assert (ops.convert_to_numpy(runs[0]["scores"])[[0, 3]] > -1e8).all()  # cut, but kept


def test_one_trace_serves_every_batch_shape_and_step_limit(trained, numbers_corpus):
    """On TensorFlow the decoder's search is traced once, whatever the batch's size,
    source lengths and step limit (a retrace costs seconds; a server sees every shape)."""
    from seq2seq_shared import backend

    if not backend.dynamic_shapes():
        pytest.skip("JAX compiles per shape, by design (rounded to few shapes)")
    model, tokenizer, config = trained_parts(trained)
    lines = numbers(numbers_corpus, 200)
    for beam_size in (1, 3):
        decoder = Decoder(model, DecodeConfig(beam_size=beam_size), config.model.max_source_length)
        for size in (1, 5, 17):
            decoder.decode(tokenizer.encode_source(lines[size * 3 : size * 4]))
        decoder.decode(tokenizer.encode_source(["one", "one hundred ninety-nine thousand"]))
        assert len(decoder._search.traced) == 1, list(decoder._search.traced)
        (function,) = decoder._search.traced.values()
        assert function.experimental_get_tracing_count() == 1


def test_pad_and_bos_are_never_written_even_where_the_model_prefers_them():
    model = MarkovModel()
    table = np.full((6, 6), 1e-9)
    table[:, 0], table[:, 2], table[:, B], table[:, EOS] = 0.5, 0.4, 0.06, 0.04
    model.log_table = ops.convert_to_tensor(np.log(table).astype("float32"))
    encoded = {"states": [[ops.zeros((2, 1)), ops.zeros((2, 1))]]}
    for compact in (True, False):
        found = beam_search(
            model, encoded, np.array([4, 3], "int32"), 4, beam_size=2, n_best=2, compact=compact
        )
        ids = ops.convert_to_numpy(found["ids"])
        # Pad (0.5) and bos (0.4) are masked, not renormalised away: eos alone (0.04)
        # is best, then B eos (0.06 x 0.04), for both sentences.
        assert ids[:, :, :3].tolist() == [[[EOS, 0, 0], [B, EOS, 0]]] * 2
        np.testing.assert_allclose(
            ops.convert_to_numpy(found["log_probs"]), np.log([[0.04, 0.06 * 0.04]] * 2), atol=1e-5
        )


def test_the_light_beam_s_selection_equals_a_full_stable_sort():
    """runtime/beam.py's `top` (a threshold from block maxima, then a sort of the few
    entries past it) picks what sorting every entry would: ties to the lower column,
    empty slots (-1e9) included."""
    from seq2seq_shared.runtime.beam import NONE, top

    rng = np.random.default_rng(0)
    for trial in range(400):
        rows, width = int(rng.integers(1, 20)), int(rng.integers(2, 400))
        count = int(rng.integers(1, min(width, 12) + 1))
        if trial % 2:  # many ties
            totals = rng.integers(-5, 5, (rows, width)).astype(np.float32)
        else:
            totals = rng.standard_normal((rows, width)).astype(np.float32)
        if trial % 3 == 0:
            totals[:, : width // 2] = NONE  # dead hypotheses' slots
        expected = np.argsort(-totals, axis=1, kind="stable")[:, :count]
        columns, values = top(totals, count)
        np.testing.assert_array_equal(columns, expected, err_msg=f"trial {trial}")
        np.testing.assert_array_equal(values, np.take_along_axis(totals, expected, 1))
