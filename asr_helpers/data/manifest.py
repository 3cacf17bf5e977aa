"""Index a LibriSpeech-layout split into one row per usable utterance.

The same code indexes real LibriSpeech, a Kaggle mount and the offline TTS corpus. Durations
come from file headers (``audio.audio_frames``), never by decoding. Utterances that cannot be used
(unreadable or empty audio, missing transcript, characters outside the alphabet) are skipped
with a counted reason, so one bad file never stops a run.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from asr_helpers import paths
from asr_helpers.data.audio import AudioError, audio_frames
from asr_helpers.data.text import TextError, normalize_transcript

log = logging.getLogger(__name__)
AUDIO_SUFFIXES = (".flac", ".wav", ".ogg")


@dataclass(frozen=True)
class Utterance:
    id: str
    path: str
    seconds: float
    text: str
    speaker: str
    split: str


@dataclass
class SplitIndex:
    """The usable utterances of one split and why the others were skipped."""

    split: str
    utterances: list[Utterance]
    skipped: Counter = field(default_factory=Counter)

    @property
    def hours(self) -> float:
        return sum(u.seconds for u in self.utterances) / 3600

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {why}" for why, n in self.skipped.most_common()) or "none"
        return (f"{self.split}: {len(self.utterances)} utterances, {self.hours:.2f} h, "
                f"{len({u.speaker for u in self.utterances})} speakers; skipped: {reasons}")


def read_transcripts(split_dir: Path) -> dict[str, str]:
    """All ``<id> TEXT`` lines of the split's ``*.trans.txt`` files."""
    found: dict[str, str] = {}
    for trans in sorted(split_dir.rglob("*.trans.txt")):
        for line in trans.read_text(encoding="utf-8", errors="replace").splitlines():
            utt_id, _, text = line.strip().partition(" ")
            if utt_id:
                found[utt_id] = text
    return found


def _audio_files(split_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(split_dir.rglob("*")) if p.suffix.lower() in AUDIO_SUFFIXES}


def _reject(utt_id: str, path: Path | None, raw: str | None, split: str) -> tuple[Utterance | None, str | None]:
    """One utterance, or the reason it cannot be used."""
    if path is None:
        return None, "transcript without audio"
    if raw is None:
        return None, "audio without transcript"
    try:
        text = normalize_transcript(raw)
    except TextError as error:
        return None, f"text: {error}"
    try:
        frames, rate = audio_frames(path)
    except AudioError:
        return None, "unreadable audio"
    if frames <= 0 or rate <= 0:
        return None, "empty audio"
    speaker = utt_id.split("-")[0]
    return Utterance(utt_id, str(path), frames / rate, text, speaker, split), None


def scan_split(root: Path, split: str) -> SplitIndex:
    """Index ``root/split`` without any cache."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"no split folder {split_dir} (expected LibriSpeech layout: <root>/<split>/<speaker>/<chapter>/)")
    audio, texts = _audio_files(split_dir), read_transcripts(split_dir)
    index = SplitIndex(split, [])
    for utt_id in sorted(set(audio) | set(texts)):
        utterance, reason = _reject(utt_id, audio.get(utt_id), texts.get(utt_id), split)
        if utterance is None:
            index.skipped[reason] += 1
            log.info("skip %s/%s: %s", split, utt_id, reason)
        else:
            index.utterances.append(utterance)
    return index


def _cache_file(split_dir: Path) -> Path:
    stamp = f"{split_dir.resolve()}|{split_dir.stat().st_mtime_ns}|{sum(1 for _ in split_dir.iterdir())}"
    key = hashlib.sha1(stamp.encode()).hexdigest()[:16]
    return paths.cache_dir() / "manifests" / f"{split_dir.name}-{key}.tsv"


def _write_cache(path: Path, index: SplitIndex) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # DDP ranks index the same split at the same time
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["#skipped"] + [f"{why}={n}" for why, n in index.skipped.items()])
        writer.writerow([f.name for f in fields(Utterance)])
        writer.writerows(list(asdict(u).values()) for u in index.utterances)
    tmp.replace(path)


def _read_cache(path: Path, split: str) -> SplitIndex:
    with path.open(newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        skipped = Counter({k: int(v) for k, _, v in (item.rpartition("=") for item in next(reader)[1:])})
        next(reader)
        rows = [Utterance(i, p, float(s), t, spk, sp) for i, p, s, t, spk, sp in reader]
    return SplitIndex(split, rows, skipped)


def index_split(root: Path, split: str, use_cache: bool = True) -> SplitIndex:
    """Index a split, cached under ``paths.cache_dir()`` (read-only mounts stay untouched)."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        return scan_split(root, split)
    cache = _cache_file(split_dir)
    if use_cache and cache.exists():
        return _read_cache(cache, split)
    index = scan_split(root, split)
    _write_cache(cache, index)
    log.info(index.summary())
    return index


def load_splits(root: Path | Mapping[str, Path], splits: list[str], max_seconds: float | None = None) -> list[Utterance]:
    """Utterances of several splits, optionally without those longer than ``max_seconds``.

    ``root`` is one LibriSpeech root, or each split's root as ``corpora.prepare_corpus`` returns them.
    """
    rows: list[Utterance] = []
    for split in splits:
        index = index_split(root[split] if isinstance(root, Mapping) else root, split)
        print(index.summary())
        rows += index.utterances
    if max_seconds is not None:
        kept = [u for u in rows if u.seconds <= max_seconds]
        if len(kept) < len(rows):
            print(f"max-duration filter: dropped {len(rows) - len(kept)} utterances longer than {max_seconds:g} s")
        rows = kept
    return rows
