import pytest

from seq2seq_shared.data.tokenizer import Tokenizer, train_sentencepiece


@pytest.fixture(scope="module")
def tokenizer(numbers_corpus):
    lines = (numbers_corpus / "train.en").read_text().splitlines() + (
        numbers_corpus / "train.de"
    ).read_text().splitlines()
    return Tokenizer(train_sentencepiece(lines, vocab_size=200))


def test_special_ids(tokenizer):
    processor = tokenizer.source
    assert (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id()) == (
        0,
        1,
        2,
        3,
    )
    assert [processor.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]


def test_round_trip(tokenizer):
    lines = ["one hundred twenty-one", "einhunderteinundzwanzig", "zwölf"]
    ids = tokenizer.encode_target(lines)
    assert all(i >= 4 for sentence in ids for i in sentence)
    assert tokenizer.decode_target(ids) == lines


def test_joint_by_default_and_separate_on_request(numbers_corpus):
    english = (numbers_corpus / "train.en").read_text().splitlines()
    german = (numbers_corpus / "train.de").read_text().splitlines()
    joint = Tokenizer(train_sentencepiece(english + german, vocab_size=100))
    separate = Tokenizer(
        train_sentencepiece(english, vocab_size=60), train_sentencepiece(german, vocab_size=60)
    )
    assert joint.joint and not separate.joint
    assert separate.decode_target(separate.encode_target(["zweiundvierzig"])) == ["zweiundvierzig"]


def test_training_text_without_content_is_refused():
    with pytest.raises(ValueError, match="no non-empty lines"):
        train_sentencepiece(["", "  "], vocab_size=50)
