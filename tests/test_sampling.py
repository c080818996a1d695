"""Subword regularization (--subword-alpha): training batches sample their pieces anew,
reproducibly; validation and translation never sample."""

import json

import pytest
from click.testing import CliRunner

from seq2seq_shared.cli import main
from seq2seq_shared.data.batches import ParallelBatches
from seq2seq_shared.data.sampling import SubwordSampler
from seq2seq_shared.data.tokenizer import EOS_ID, UNK_ID, Tokenizer, train_sentencepiece


@pytest.fixture(scope="module")
def corpus(numbers_corpus):
    english = (numbers_corpus / "train.en").read_text().splitlines()
    german = (numbers_corpus / "train.de").read_text().splitlines()
    return english, german


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def tokenizer(corpus, request):
    english, german = corpus
    return Tokenizer(
        train_sentencepiece(english + german, vocab_size=120, model_type=request.param)
    )


def sampled_batches(tokenizer, corpus, alpha=0.3):
    english, german = corpus
    batches = ParallelBatches.from_lists(
        tokenizer.encode_source(english), tokenizer.encode_target(german), batch_tokens=256
    )
    batches.sampler = SubwordSampler(tokenizer, alpha, nbest=-1, seed=1234)
    return batches


def test_sampling_changes_a_sentence_s_pieces_between_epochs_never_its_text(tokenizer, corpus):
    batches = sampled_batches(tokenizer, corpus)
    best = ParallelBatches.from_lists(
        tokenizer.encode_source(corpus[0]), tokenizer.encode_target(corpus[1]), batch_tokens=256
    )
    seen = []
    for epoch in (1, 2):
        batches.set_epoch(epoch), best.set_epoch(epoch)
        sampled, plain = batches.batch(0), best.batch(0)
        assert sampled.source.shape[0] == plain.source.shape[0]  # the same pairs
        for mine, theirs in (
            (sampled.source, plain.source),
            (sampled.target_output, plain.target_output),
        ):
            decoded = tokenizer.decode_target([[int(i) for i in row if i > 3] for row in mine])
            assert decoded == tokenizer.decode_target(
                [[int(i) for i in row if i > 3] for row in theirs]
            )
        seen.append(sampled.source.tolist())
        rows = [[int(i) for i in row if i] for row in sampled.source]
        assert rows != [[int(i) for i in row if i] for row in plain.source], (
            "sampling left every piece of the batch as the best segmentation"
        )
    assert seen[0] != seen[1], "the same pieces in two epochs"


def test_the_same_batch_of_the_same_epoch_samples_the_same_pieces(tokenizer, corpus):
    first, second = sampled_batches(tokenizer, corpus), sampled_batches(tokenizer, corpus)
    first.set_epoch(3), second.set_epoch(3)
    for index in reversed(range(len(first))):  # another order: the draw is the batch's own
        a, b = first.batch(index), second.batch(index)
        assert (a.source == b.source).all() and (a.target_input == b.target_input).all()
    assert (first.batch(0).source == second.batch(0).source).all()


def test_a_sentence_holding_unk_keeps_its_pieces(tokenizer):
    sampler = SubwordSampler(tokenizer, 0.5, nbest=-1, seed=1)
    ids = tokenizer.encode_source(["one hundred"])[0]
    with_unk = [ids[0], UNK_ID, *ids[1:]]
    sources, _ = sampler.sample([with_unk], [ids], epoch=1, index=0)
    assert sources == [with_unk]


def test_teacher_forcing_and_fixed_shapes_hold_for_sampled_pieces(tokenizer, corpus):
    english, german = corpus
    batches = ParallelBatches.from_lists(
        tokenizer.encode_source(english),
        tokenizer.encode_target(german),
        batch_tokens=256,
        fixed_shapes=True,
        multiple=8,
    )
    batches.sampler = SubwordSampler(tokenizer, 0.1, nbest=-1, seed=5)  # long samples
    batches.set_epoch(1)
    for index in range(len(batches)):
        batch = batches.batch(index)
        assert batch.source.shape[1] == batch.target_input.shape[1]
        assert batch.source.shape[1] % 8 == 0
        shifted, ahead = batch.target_input[:, 1:], batch.target_output[:, :-1]
        assert (shifted[ahead != EOS_ID] == ahead[ahead != EOS_ID]).all()  # one step ahead
        assert ((batch.target_output == EOS_ID).sum(axis=1) <= 1).all()


@pytest.mark.slow
def test_a_run_with_sampling_samples_training_batches_alone_and_decodes_deterministically(
    numbers_corpus, tmp_path, monkeypatch
):
    calls = []
    sample = SubwordSampler.sample

    def counted(self, sources, targets, epoch, index):
        calls.append((epoch, index))
        return sample(self, sources, targets, epoch, index)

    monkeypatch.setattr(SubwordSampler, "sample", counted)
    model_dir = tmp_path / "model"
    corpus = numbers_corpus
    arguments = [
        "train", corpus / "train.en", corpus / "train.de", "--model-dir", model_dir,
        "--valid", corpus / "train.en", corpus / "train.de",
        "--embedding-dim", "16", "--hidden-size", "32", "--vocab-size", "120",
        "--batch-tokens", "256", "--epochs", "2", "--quiet", "--no-tensorboard",
        "--subword-alpha", "0.3",
    ]  # fmt: skip
    result = CliRunner().invoke(main, [str(a) for a in arguments], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    state = json.loads((model_dir / "training_state.json").read_text())
    assert sorted(calls) == sorted(set(calls)) and len(calls) == state["step"]
    assert {epoch for epoch, _ in calls} == {1, 2}
    calls.clear()
    outputs = []
    for _ in range(2):
        result = CliRunner().invoke(
            main, ["translate", "--model-dir", str(model_dir), "-i", str(corpus / "train.en")]
        )
        assert result.exit_code == 0, result.output
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1] and not calls


@pytest.mark.slow
def test_a_run_with_sampling_resumes_exactly(numbers_corpus, tmp_path, monkeypatch):
    import signal

    from test_resume import assert_same_run, invoke, train_arguments

    from seq2seq_shared.training.run import TrainingRun

    sampling = ("--epochs", "3", "--subword-alpha", "0.3")
    reference = tmp_path / "reference"
    assert invoke(train_arguments(numbers_corpus, reference, *sampling)).exit_code == 0
    step = TrainingRun._step

    def step_then_signal(self, batch, index):
        stepped = step(self, batch, index)
        if self.state.step == 6:  # inside the second epoch
            signal.raise_signal(signal.SIGINT)
        return stepped

    monkeypatch.setattr(TrainingRun, "_step", step_then_signal)
    model_dir = tmp_path / "model"
    assert invoke(train_arguments(numbers_corpus, model_dir, *sampling)).exit_code == 130
    monkeypatch.undo()
    assert invoke(train_arguments(numbers_corpus, model_dir, *sampling)).exit_code == 0
    assert_same_run(model_dir, reference)
