import pytest

from asr_helpers.data.text import ALPHABET, CharTokenizer, TextError, normalize_transcript, tokenizer_from_dict


def test_normalize_librispeech_style():
    assert normalize_transcript("HE HOPED THERE WOULD BE STEW FOR DINNER") == "he hoped there would be stew for dinner"


def test_normalize_punctuation_accents_and_apostrophes():
    assert normalize_transcript("“Café,” she said—it’s ‘fine’!") == "cafe she said it's fine"


@pytest.mark.parametrize("text", ["CHAPTER 12", "100% SURE", "A & B", "", "   "])
def test_unspellable_text_is_rejected_with_reason(text):
    with pytest.raises(TextError):
        normalize_transcript(text)


def test_tokenizer_round_trip_and_layout():
    tok = CharTokenizer()
    text = "it's a test of the alphabet z"
    ids = tok.encode(text)
    assert tok.blank_id == 0 and 0 not in ids
    assert tok.decode(ids) == text
    assert tok.vocab_size == len(ALPHABET) + 1 == 29
    assert tok.labels[0] == "" and tok.labels[1] == " "


def test_tokenizer_rejects_unknown_characters_and_restores_from_dict():
    tok = CharTokenizer()
    with pytest.raises(TextError, match="'7'"):
        tok.encode("route 7")
    assert tokenizer_from_dict(tok.to_dict()) == tok


def test_bpe_tokenizer_round_trip_labels_and_checkpoint_state():
    from asr_helpers.data.text import BPETokenizer, train_bpe
    texts = ["the cat sat on the mat", "her sister read an old letter", "it's a fine day by the fire"] * 30
    tok = train_bpe(texts, vocab_size=48)
    ids = tok.encode("the sister sat by the fire")
    assert 0 not in ids and tok.decode(ids) == "the sister sat by the fire"
    assert len(ids) < len("the sister sat by the fire")          # pieces are longer than characters
    assert tok.labels[0] == "" and len(tok.labels) == tok.vocab_size
    assert any(label.startswith("\u2581") for label in tok.labels)  # pyctcdecode's BPE convention
    restored = tokenizer_from_dict(tok.to_dict())
    assert isinstance(restored, BPETokenizer) and restored.encode("the cat") == tok.encode("the cat")
    with pytest.raises(TextError):
        tok.encode("route 66")


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_decode_more_grows_a_transcript_as_decoding_all_ids_reads(kind):
    """A stream extends its text chunk by chunk: any split of the ids gives ``decode`` of all of them,
    blanks, lone word-start pieces and the unknown piece included."""
    import random
    from asr_helpers.data.text import train_bpe
    tok = CharTokenizer() if kind == "char" else train_bpe(["the cat sat on a mat", "a dog ran far"] * 30, vocab_size=40)
    rng = random.Random(0)
    for _ in range(500):
        ids = [rng.randrange(tok.vocab_size) for _ in range(rng.randrange(12))]
        text, start = "", 0
        while start < len(ids):
            step = rng.randrange(1, 4)
            text, start = tok.decode_more(text, ids[start:start + step]), start + step
        assert text == tok.decode(ids), [tok.labels[i] for i in ids]
