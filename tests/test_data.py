import numpy as np
import pytest

from seq2seq_shared.data.batches import (
    ParallelBatches,
    pad,
    read_lines,
    read_parallel,
    teacher_forcing,
)
from seq2seq_shared.data.check import MAX_CHARACTERS_PER_WORD, check_corpus, length_excess
from seq2seq_shared.data.tokenizer import BOS_ID, EOS_ID, PAD_ID


def test_teacher_forcing_shift_by_hand():
    decoder_input, labels = teacher_forcing([17, 42, 9])
    assert decoder_input == [2, 17, 42, 9]  # bos + target
    assert labels == [17, 42, 9, 3]  # target + eos
    assert (BOS_ID, EOS_ID) == (2, 3)


def test_pad_rounds_up_to_a_multiple_and_uses_pad_id():
    array = pad([[5, 6, 7], [8]], multiple=4)
    assert array.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert PAD_ID == 0 and array.dtype == np.int32


def test_read_lines_splits_on_newline_alone(tmp_path):
    path = tmp_path / "odd.txt"
    path.write_bytes("a\rb\nc\u2028d\u0085e\n\nlast".encode("utf-8"))
    assert read_lines(path) == ["a\rb", "c\u2028d\u0085e", "", "last"]


def test_read_lines_names_file_line_and_column_of_invalid_utf8(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\nbad \xff here\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2:5: invalid UTF-8.*iconv"):
        read_lines(path)


def test_read_parallel_refuses_different_line_counts(tmp_path):
    (tmp_path / "a").write_text("one\ntwo\n")
    (tmp_path / "b").write_text("eins\n")
    with pytest.raises(ValueError, match="has 2 lines but .* has 1"):
        read_parallel(tmp_path / "a", tmp_path / "b")


def test_read_parallel_drops_pairs_with_an_empty_side_together(tmp_path):
    (tmp_path / "a").write_text("one\n\nthree\nfour\n")
    (tmp_path / "b").write_text("eins\nzwei\ndrei\n \n")
    assert read_parallel(tmp_path / "a", tmp_path / "b") == (["one", "three"], ["eins", "drei"])


@pytest.mark.parametrize("fixed_shapes", [False, True])
def test_batches_cover_every_pair_once_within_the_token_budget(fixed_shapes):
    rng = np.random.default_rng(0)
    sources = [list(rng.integers(4, 50, rng.integers(1, 30))) for _ in range(300)]
    targets = [list(rng.integers(4, 50, rng.integers(1, 30))) for _ in range(300)]
    batches = ParallelBatches.from_lists(
        sources, targets, batch_tokens=256, seed=1, fixed_shapes=fixed_shapes
    )
    seen = []
    for index in range(len(batches)):
        batch = batches.batch(index)
        assert batch.target_output.size <= 256 or batch.target_output.shape[0] == 1
        for row in range(batch.source.shape[0]):
            if fixed_shapes and (batch.target_output[row] == PAD_ID).all():
                assert batch.source[row].tolist() == [EOS_ID] + [PAD_ID] * (
                    batch.source.shape[1] - 1
                )
                continue  # an empty row, filling the last batch of its width
            assert batch.target_input[row, 0] == BOS_ID
            source = batch.source[row][batch.source[row] != PAD_ID].tolist()
            target = batch.target_output[row][batch.target_output[row] != PAD_ID].tolist()
            seen.append((tuple(source), tuple(target[:-1])))
            assert target[-1] == EOS_ID
    assert sorted(seen) == sorted(
        (tuple(s), tuple(t)) for s, t in zip(sources, targets, strict=True)
    )


def test_fixed_shapes_give_one_shape_per_width():
    """For backends that compile one program per shape: lengths up to 128 pieces, rounded
    to 8, give at most 16 shapes per epoch, whatever the mix of lengths."""
    rng = np.random.default_rng(3)
    sources = [[5] * int(n) for n in rng.integers(1, 129, 5000)]
    targets = [[6] * int(n) for n in rng.integers(1, 128, 5000)]
    batches = ParallelBatches.from_lists(
        sources, targets, batch_tokens=3072, seed=1, multiple=8, fixed_shapes=True
    )
    shapes = {
        batches.batch(i).source.shape + batches.batch(i).target_input.shape
        for i in range(len(batches))
    }
    assert len(shapes) == 16 and all(rows * width <= 3072 for rows, width, _, _ in shapes)
    free = ParallelBatches.from_lists(sources, targets, batch_tokens=3072, seed=1, multiple=8)
    assert (
        len(
            {
                free.batch(i).source.shape + free.batch(i).target_input.shape
                for i in range(len(free))
            }
        )
        > 16
    )  # what a compiling backend met before
    assert 0.5 < batches.padding_efficiency <= 1
    # A resumed run keeps its own plan: the same encoded pairs, batched by the other one.
    assert [b.tolist() for b in free.planned(True).batches] == [b.tolist() for b in batches.batches]


def test_batch_order_depends_on_seed_and_epoch_alone():
    sources = [[5] * (i % 13 + 1) for i in range(200)]
    targets = [[6] * (i % 7 + 1) for i in range(200)]

    def first_sources(seed, epoch):
        batches = ParallelBatches.from_lists(sources, targets, batch_tokens=64, seed=seed)
        batches.set_epoch(epoch)
        return [batches.batch(i).source.shape for i in range(len(batches))]

    assert first_sources(1, 3) == first_sources(1, 3)
    assert first_sources(1, 3) != first_sources(1, 4)


def test_one_length_rule_counts_words_and_characters():
    assert MAX_CHARACTERS_PER_WORD == 10
    assert length_excess("a b c", 3) is None
    assert length_excess("a b c d", 3) == "longer than 3 words"
    assert length_excess("x" * 30, 3) is None
    assert length_excess("x" * 31, 3) == "longer than 30 characters (the cap for 3 words)"
    assert length_excess("x" * 31, None) is None


def test_a_long_line_without_spaces_is_dropped_by_the_check_train_runs(tmp_path):
    (tmp_path / "a").write_text("one\n" + "x" * 100_000 + "\nthree\n")
    (tmp_path / "b").write_text("eins\nzwei\ndrei\n")
    report = check_corpus(tmp_path / "a", tmp_path / "b", max_length=128)
    assert report.dropped == {"longer than 1280 characters (the cap for 128 words)": [2]}
    assert read_parallel(tmp_path / "a", tmp_path / "b", 128) == (
        ["one", "three"],
        ["eins", "drei"],
    )
    assert check_corpus(tmp_path / "a", tmp_path / "b").sources[1] == "x" * 100_000
