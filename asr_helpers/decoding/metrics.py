"""Word and character error rates, per utterance and over a corpus, and folder scoring.

Corpus rates are total edits over total reference length (not a mean of per-utterance
rates), which is what LibriSpeech results report. jiwer counts the edits. An empty reference
has no length to divide by: its hypothesis words are all insertions, counted over a length
of one, so an empty guess scores 0 and a non-empty guess scores its word count instead of
infinity. jiwer 3 refuses empty references, so they are counted here rather than passed on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import jiwer

from asr_helpers.data.text import TextError, normalize_transcript


@dataclass(frozen=True)
class _Counts:
    edits: int
    length: int

    @property
    def rate(self) -> float:
        return self.edits / max(self.length, 1)


def _counts(refs: Sequence[str], hyps: Sequence[str], unit: str) -> _Counts:
    """Total edits and reference length in words (``unit='word'``) or characters."""
    if isinstance(refs, str) or isinstance(hyps, str):
        raise TypeError("pass lists of transcripts; use utterance_errors(ref, hyp) for one pair")
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    refs = [" ".join(text.split()) for text in refs]
    hyps = [" ".join(text.split()) for text in hyps]
    size = (lambda text: len(text.split())) if unit == "word" else len
    edits = sum(size(h) for r, h in zip(refs, hyps) if not r)
    length = 0
    pairs = [(r, h) for r, h in zip(refs, hyps) if r]
    if pairs:
        process = jiwer.process_words if unit == "word" else jiwer.process_characters
        out = process([r for r, _ in pairs], [h for _, h in pairs])
        edits += out.substitutions + out.deletions + out.insertions
        length += out.substitutions + out.deletions + out.hits
    return _Counts(edits, length)


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate: total word edits over total reference words."""
    return _counts(refs, hyps, "word").rate


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus character error rate (spaces count as characters, runs of spaces as one)."""
    return _counts(refs, hyps, "char").rate


def utterance_errors(ref: str, hyp: str) -> dict[str, float]:
    """``{'wer': ..., 'cer': ...}`` of one pair, for sample tables in the training logs."""
    return {"wer": wer([ref], [hyp]), "cer": cer([ref], [hyp])}


def _normalise(text: str) -> str:
    """Model-side normalisation; text it cannot spell is still scored, lower-cased, not dropped."""
    try:
        return normalize_transcript(text)
    except TextError:
        return " ".join(text.lower().split())


@dataclass
class ScoreReport:
    """Scores of a predictions folder against a references folder (``<name>.txt`` pairs)."""

    wer: float
    cer: float
    utterances: int
    reference_words: int
    reference_chars: int
    missing: list[str] = field(default_factory=list)  # references with no prediction (not scored)
    extra: list[str] = field(default_factory=list)  # predictions with no reference (ignored)

    def summary(self) -> str:
        lines = [f"WER {100 * self.wer:.2f}%  CER {100 * self.cer:.2f}%  over {self.utterances} utterances "
                 f"({self.reference_words} words, {self.reference_chars} characters)"]
        if self.missing:
            lines.append(f"{len(self.missing)} references have no prediction and were not scored: "
                         f"{', '.join(self.missing[:5])}{' ...' if len(self.missing) > 5 else ''}")
        if self.extra:
            lines.append(f"{len(self.extra)} predictions have no reference: "
                         f"{', '.join(self.extra[:5])}{' ...' if len(self.extra) > 5 else ''}")
        return "\n".join(lines)


def _texts(folder: Path, role: str) -> dict[str, str]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{role} folder {folder} does not exist or is not a folder")
    return {path.stem: path.read_text(encoding="utf-8", errors="replace") for path in sorted(folder.glob("*.txt"))}


def score_folders(references: Path, predictions: Path) -> ScoreReport:
    """Corpus WER/CER over the ``<name>.txt`` files present in both folders.

    Both sides are normalised the same way, so upper-case LibriSpeech references score
    against lower-case model output. Unmatched files are listed in the report, not scored:
    a missing prediction usually means inference failed on that file, which should be seen
    as such rather than blended into the error rate.
    """
    refs, hyps = _texts(references, "references"), _texts(predictions, "predictions")
    names = sorted(refs.keys() & hyps.keys())
    if not names:
        raise ValueError(
            f"no file name appears in both {references} ({len(refs)} .txt files) and {predictions} "
            f"({len(hyps)} .txt files); expected one <utterance>.txt per utterance on each side")
    ref_texts = [_normalise(refs[n]) for n in names]
    hyp_texts = [_normalise(hyps[n]) for n in names]
    words, chars = _counts(ref_texts, hyp_texts, "word"), _counts(ref_texts, hyp_texts, "char")
    return ScoreReport(wer=words.rate, cer=chars.rate, utterances=len(names), reference_words=words.length,
                       reference_chars=chars.length, missing=sorted(refs.keys() - hyps.keys()),
                       extra=sorted(hyps.keys() - refs.keys()))
