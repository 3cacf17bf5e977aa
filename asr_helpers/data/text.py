"""Transcript normalisation and the character tokenizer.

LibriSpeech transcripts are upper-case letters, space and apostrophe. Everything is mapped to
lower case for the model; language models and unigram lists are cased to match in ``lm``.
Text that still holds other characters after normalisation (digits, symbols) is rejected with
a reason rather than silently altered, because the audio says something we cannot spell.
"""
from __future__ import annotations

import base64
import io
import re
import unicodedata
from dataclasses import dataclass

ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
_SEPARATORS = re.compile(r"[-\u2010-\u2015_/]+")
_PUNCTUATION = re.compile(r"[.,;:!?\"()\[\]{}\u201c\u201d\u00ab\u00bb*]+")


class TextError(ValueError):
    """A transcript that cannot be spelled with the alphabet."""


def normalize_transcript(text: str) -> str:
    """Lower-case, strip accents and punctuation, keep letters, space and apostrophe.

    Raises ``TextError`` naming the offending characters (digits, symbols) so callers can
    skip the utterance and count the reason.
    """
    text = _PUNCTUATION.sub(" ", _SEPARATORS.sub(" ", text.translate(_APOSTROPHES)))
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    text = " ".join(word.strip("'") for word in text.split())
    text = " ".join(text.split())
    unknown = sorted(set(text) - set(ALPHABET))
    if unknown:
        raise TextError(f"unsupported characters {''.join(unknown)!r}")
    if not text:
        raise TextError("empty transcript")
    return text


@dataclass(frozen=True)
class CharTokenizer:
    """Blank (id 0), space, apostrophe and a-z: the classic DeepSpeech2 output alphabet."""

    alphabet: str = ALPHABET
    kind: str = "char"

    @property
    def blank_id(self) -> int:
        return 0

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet) + 1

    @property
    def labels(self) -> list[str]:
        """Output labels in id order, in the form pyctcdecode expects ('' is the blank)."""
        return [""] + list(self.alphabet)

    def encode(self, text: str) -> list[int]:
        """Ids for a normalised transcript; raises ``TextError`` on characters outside the alphabet."""
        try:
            return [self.alphabet.index(ch) + 1 for ch in text]
        except ValueError:
            unknown = sorted(set(text) - set(self.alphabet))
            raise TextError(f"unsupported characters {''.join(unknown)!r}") from None

    def decode(self, ids: list[int]) -> str:
        """Text for label ids (no CTC collapsing here: that is the decoder's job)."""
        return "".join(self.alphabet[i - 1] for i in ids if i != self.blank_id)

    def decode_more(self, text: str, ids: list[int]) -> str:
        """``text`` (the decoding of earlier ids) extended by ``ids``, as ``decode`` of all of them reads:
        a stream grows its transcript without decoding it all again."""
        return text + self.decode(ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "alphabet": self.alphabet}


class BPETokenizer:
    """Sentencepiece BPE pieces behind a blank (id 0): fewer, longer output units than characters.

    Labels use sentencepiece's word-start mark, which pyctcdecode recognises as BPE; the
    unknown piece is written the way pyctcdecode expects.
    """

    kind = "bpe"
    blank_id = 0
    UNK_LABEL = "\u2581\u2047\u2581"

    def __init__(self, model: bytes):
        import sentencepiece
        self.model = model
        self._sp = sentencepiece.SentencePieceProcessor(model_proto=model)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size() + 1

    @property
    def labels(self) -> list[str]:
        pieces = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        return [""] + [self.UNK_LABEL if self._sp.is_unknown(i) else p for i, p in enumerate(pieces)]

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - set(ALPHABET))
        if unknown:
            raise TextError(f"unsupported characters {''.join(unknown)!r}")
        return [i + 1 for i in self._sp.encode(text)]

    def decode(self, ids: list[int]) -> str:
        return self._sp.decode([i - 1 for i in ids if i != self.blank_id])

    def decode_more(self, text: str, ids: list[int]) -> str:
        """``text`` (the decoding of earlier ids) extended by ``ids``, as ``decode`` of all of them reads
        (sentencepiece drops the space only before the first word, so later pieces are joined as they read)."""
        pieces = [i - 1 for i in ids if i != self.blank_id]
        if not text:
            return self._sp.decode(pieces)
        more = "".join(" \u2047 " if self._sp.is_unknown(i) else self._sp.id_to_piece(i).replace("\u2581", " ")
                       for i in pieces)
        return text + more

    def to_dict(self) -> dict:
        return {"kind": self.kind, "model": base64.b64encode(self.model).decode("ascii")}

    def __eq__(self, other) -> bool:
        return isinstance(other, BPETokenizer) and other.model == self.model


def train_bpe(texts: list[str], vocab_size: int) -> BPETokenizer:
    """A BPE model of about ``vocab_size`` pieces learnt from (training-split) transcripts."""
    import sentencepiece
    if vocab_size < len(ALPHABET) + 2:
        raise ValueError(f"bpe vocab_size must be at least {len(ALPHABET) + 2}, got {vocab_size}")
    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buffer, vocab_size=vocab_size, model_type="bpe",
        character_coverage=1.0, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, hard_vocab_limit=False,
        minloglevel=2)
    return BPETokenizer(buffer.getvalue())


def tokenizer_from_dict(state: dict):
    """Rebuild a tokenizer stored in a checkpoint."""
    if state["kind"] == "char":
        return CharTokenizer(alphabet=state["alphabet"])
    if state["kind"] == "bpe":
        return BPETokenizer(base64.b64decode(state["model"]))
    raise ValueError(f"unknown tokenizer kind {state['kind']!r}")
