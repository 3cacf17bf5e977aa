"""The offline speech corpus: Jane Austen read by Debian's free voices, in LibriSpeech layout.

Every voice is one LibriSpeech "speaker" in exactly one split. The clean dev/test splits hold
voices never heard in training (their recorded speakers are not in training either), from
engines that training does use. Training gets five of the six recorded speakers behind the
flite/festival voices (a recogniser does not generalise from two or three), and the sixth
(slt) is split between dev-clean (flite) and test-clean (festival HTS). The ``*-other``
splits hold the rougher formant voices and add mild reverberation and noise. Sentences are assigned to splits by a hash of their text,
so no sentence is ever heard in two splits, whatever the size or seed. A seed fixes every
choice (sentences, rate, pitch, level, noise), so the same seed gives byte-identical files.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import zlib
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from asr_helpers.data import tts
from asr_helpers.data.sentences import load_sentences
from asr_helpers.data.tts import SAMPLE_RATE, Prosody, Voice

log = logging.getLogger(__name__)

SPLIT_SHARES = {"train-clean-100": 0.80, "dev-clean": 0.05, "test-clean": 0.05,
                "dev-other": 0.05, "test-other": 0.05}
TRAIN_SPLIT = "train-clean-100"
CHARS_PER_SECOND = 18.0   # speaking rate of these voices (measured), to budget sentences before rendering
PAUSE_SECONDS = 0.4       # leading and trailing silence the engines add (measured)
CHAPTERS_PER_SPEAKER = 3
UTTERANCES_PER_CHAPTER = 10
RATE_RANGE = (0.85, 1.2)       # duration stretch per utterance
PITCH_RANGE = (0.9, 1.12)      # F0 multiplier per utterance
LEVEL_DBFS = (-30.0, -18.0)    # RMS level per utterance
OTHER_SNR_DB = (10.0, 20.0)    # noise in the *-other splits
OTHER_RT60_S = (0.15, 0.5)     # reverberation time in the *-other splits
OTHER_DRR_DB = (0.0, 10.0)     # direct-to-reverberant ratio in the *-other splits


@dataclass(frozen=True)
class CorpusVoice:
    """A voice's place in the corpus: its LibriSpeech speaker id, split and share of the split."""

    speaker: int
    split: str
    voice: Voice
    weight: float = 1.0


def _flite(name: str, sex: str, source: str, f0: float | None) -> Voice:
    return Voice(f"flite-{name}", "flite", name, sex, source, "flite", f0)


def _festival(name: str, sex: str, source: str, package: str) -> Voice:
    return Voice(f"festival-{name.removesuffix('_diphone')}", "festival", name, sex, source, package)


def _espeak(name: str) -> Voice:
    sex = "F" if name.split("+")[1].startswith("f") else "M"
    return Voice(f"espeak-{name.replace('+', '-')}", "espeak-ng", name, sex, "", "espeak-ng")


VOICES = (
    CorpusVoice(9101, TRAIN_SPLIT, _flite("rms", "M", "rms (CMU ARCTIC)", None), 3.0),
    CorpusVoice(9102, TRAIN_SPLIT, _flite("kal16", "M", "kal (CMU diphones)", 91.0), 1.5),
    CorpusVoice(9103, TRAIN_SPLIT, _flite("kal", "M", "kal (CMU diphones)", 90.0), 1.0),
    CorpusVoice(9104, TRAIN_SPLIT, _festival("kal_diphone", "M", "kal (CMU diphones)", "festvox-kallpc16k"), 1.5),
    CorpusVoice(9113, TRAIN_SPLIT, _flite("awb", "M", "awb (CMU ARCTIC)", 124.0), 2.5),
    CorpusVoice(9114, TRAIN_SPLIT, _festival("ked_diphone", "M", "ked (CSTR diphones)", "festvox-kdlpc16k"), 2.0),
    *(CorpusVoice(9105 + i, TRAIN_SPLIT, _espeak(name)) for i, name in enumerate(
        ("en-us+m1", "en-us+f2", "en-gb+m3", "en-gb+f3", "en-gb-scotland+m2", "en-029+f1",
         "en-gb-x-rp+m5", "en-us+f4"))),
    *(CorpusVoice(9115 + i, TRAIN_SPLIT, _espeak(name)) for i, name in enumerate(
        ("en-029+m6", "en-gb-scotland+f4", "en-us+klatt", "en-gb-x-gbcwmd+m1"))),
    CorpusVoice(9201, "dev-clean", _flite("slt", "F", "slt (CMU ARCTIC)", 167.0)),
    CorpusVoice(9202, "dev-clean", _espeak("en-us-nyc+m4")),
    CorpusVoice(9203, "dev-clean", _espeak("en-gb-x-rp+f1")),
    CorpusVoice(9301, "test-clean", _festival("cmu_us_slt_arctic_hts", "F", "slt (CMU ARCTIC)", "festvox-us-slt-hts")),
    CorpusVoice(9302, "test-clean", _espeak("en-gb-x-gbclan+f2")),
    CorpusVoice(9303, "test-clean", _espeak("en-us+m8")),
    CorpusVoice(9401, "dev-other", _espeak("en-gb-x-gbcwmd+croak")),
    CorpusVoice(9402, "dev-other", _espeak("en-029+klatt3")),
    CorpusVoice(9403, "dev-other", _espeak("en-gb-scotland+f5")),
    CorpusVoice(9501, "test-other", _espeak("en-us-nyc+klatt2")),
    CorpusVoice(9502, "test-other", _espeak("en-gb-x-gbclan+m7")),
    CorpusVoice(9503, "test-other", _espeak("en-gb-x-rp+f5")),
)


def corpus_voices() -> list[dict]:
    """One row per voice: speaker id, split, engine, engine voice, sex, recorded source, apt package."""
    return [{"speaker": cv.speaker, "split": cv.split, "name": cv.voice.name, "engine": cv.voice.engine,
             "voice": cv.voice.voice, "sex": cv.voice.sex, "source": cv.voice.source or "formant synthesis",
             "package": cv.voice.package} for cv in VOICES]


def sentences_by_split(sentences: list[str] | None = None) -> dict[str, list[str]]:
    """Partition the sentence list by a hash of each sentence, in the split shares.

    The partition never depends on the corpus size or seed, so a language model can be built
    from the training sentences alone without ever seeing an evaluation sentence.
    """
    bounds, total = [], 0.0
    for split, share in SPLIT_SHARES.items():
        total += share
        bounds.append((round(total * 1000), split))
    parts: dict[str, list[str]] = {split: [] for split in SPLIT_SHARES}
    for text in load_sentences() if sentences is None else sentences:
        bucket = zlib.crc32(text.encode("utf-8")) % 1000
        parts[next(split for bound, split in bounds if bucket < bound)].append(text)
    return parts


@dataclass(frozen=True)
class ChapterJob:
    """One chapter to render: a voice reading a batch of sentences into one folder."""

    cv: CorpusVoice
    chapter: int
    texts: tuple[str, ...]
    seed: int
    split_dir: Path


@dataclass
class ChapterResult:
    cv: CorpusVoice
    chapter: int
    seconds: float = 0.0
    utterances: int = 0
    skipped: list[str] = field(default_factory=list)


def _estimate_seconds(text: str) -> float:
    return len(text) / CHARS_PER_SECOND + PAUSE_SECONDS


def _plan(minutes: float, seed: int, voices: list[CorpusVoice], split_dirs: dict[str, Path]) -> list[ChapterJob]:
    """Give each voice its share of its split's budget in unused sentences, cut into chapters."""
    jobs = []
    for index, (split, sentences) in enumerate(sentences_by_split().items()):
        split_voices = [cv for cv in voices if cv.split == split]
        if not split_voices:
            log.warning("%s: no voice available, split skipped", split)
            continue
        order = np.random.default_rng([seed, index]).permutation(len(sentences))
        pool = iter([sentences[i] for i in order])
        budget = minutes * 60.0 * SPLIT_SHARES[split] / sum(cv.weight for cv in split_voices)
        for cv in split_voices:
            texts: list[str] = []
            seconds = 0.0
            # stop when one more sentence of average length would overshoot by more than half
            while not texts or seconds * (1 + 0.5 / len(texts)) < budget * cv.weight:
                text = next(pool, None)
                if text is None:
                    log.warning("%s: ran out of sentences for %s", split, cv.voice.name)
                    break
                texts.append(text)
                seconds += _estimate_seconds(text)
            n_chapters = min(CHAPTERS_PER_SPEAKER, max(1, round(len(texts) / UTTERANCES_PER_CHAPTER)))
            size = -(-len(texts) // n_chapters)
            for k, first in enumerate(range(0, len(texts), size)):
                jobs.append(ChapterJob(cv, cv.speaker * 10 + k + 1, tuple(texts[first:first + size]), seed,
                                       split_dirs[split]))
    return jobs


def _reverb(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room: a direct path plus exponentially decaying noise."""
    rt60 = rng.uniform(*OTHER_RT60_S)
    t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
    tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    tail[0] = 0.0
    tail *= 10 ** (-rng.uniform(*OTHER_DRR_DB) / 20) / np.sqrt(np.sum(tail ** 2))
    tail[0] = 1.0
    size = 1 << int(np.ceil(np.log2(len(wave) + len(tail))))
    return np.fft.irfft(np.fft.rfft(wave, size) * np.fft.rfft(tail, size), size)[:len(wave)]


def _add_noise(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add coloured noise (white to brown, 1/f^alpha) at a random SNR."""
    spectrum = np.fft.rfft(rng.standard_normal(len(wave)))
    freqs = np.maximum(np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE), 20.0)
    noise = np.fft.irfft(spectrum / freqs ** (rng.uniform(0.0, 2.0) / 2), len(wave))
    snr_db = rng.uniform(*OTHER_SNR_DB)
    noise *= np.sqrt(np.mean(wave ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    return wave + noise


def _finish(wave: np.ndarray, rng: np.random.Generator, other: bool) -> np.ndarray | None:
    """Room and noise for *-other, then a random level; None for silent or truncated output."""
    wave = wave.astype(np.float64)
    if len(wave) < 0.3 * SAMPLE_RATE or np.sqrt(np.mean(wave ** 2)) < 1e-4:
        return None
    if other:
        wave = _add_noise(_reverb(wave, rng), rng)
    wave *= 10 ** (rng.uniform(*LEVEL_DBFS) / 20) / np.sqrt(np.mean(wave ** 2))
    return wave / max(1.0, np.max(np.abs(wave)) / 0.98)


def _render_chapter(job: ChapterJob) -> ChapterResult:
    """Render, finish and write one chapter (runs in a worker process)."""
    cv, result = job.cv, ChapterResult(job.cv, job.chapter)
    rng = np.random.default_rng([job.seed, job.chapter])
    prosodies = [Prosody(rng.uniform(*RATE_RANGE), rng.uniform(*PITCH_RANGE)) for _ in job.texts]
    spoken = [text[0].upper() + text[1:] + "." for text in job.texts]
    with tempfile.TemporaryDirectory(prefix="asr-tts-") as tmp:
        waves = tts.render(cv.voice, spoken, prosodies, Path(tmp))
    folder = job.split_dir / str(cv.speaker) / str(job.chapter)
    lines = []
    for text, wave in zip(job.texts, waves):
        if isinstance(wave, str):
            result.skipped.append(f"{cv.voice.name} {text[:40]!r}: {wave}")
            continue
        finished = _finish(wave, rng, other=cv.split.endswith("-other"))
        if finished is None:
            result.skipped.append(f"{cv.voice.name} {text[:40]!r}: silent or too short audio")
            continue
        utt_id = f"{cv.speaker}-{job.chapter}-{result.utterances:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(folder / f"{utt_id}.flac"), finished, SAMPLE_RATE, subtype="PCM_16")
        lines.append(f"{utt_id} {text.upper()}\n")
        result.utterances += 1
        result.seconds += len(finished) / SAMPLE_RATE
    if lines:
        (folder / f"{cv.speaker}-{job.chapter}.trans.txt").write_text("".join(lines), encoding="utf-8")
    return result


def _collect(job: ChapterJob, future: Future) -> ChapterResult:
    """The chapter's result; a chapter whose worker failed is removed and counted as skipped."""
    try:
        return future.result()
    except Exception as error:  # one broken chapter must not cost the whole corpus
        shutil.rmtree(job.split_dir / str(job.cv.speaker) / str(job.chapter), ignore_errors=True)
        reason = f"chapter {job.chapter} failed ({type(error).__name__}: {error})"
        return ChapterResult(job.cv, job.chapter, skipped=[f"{job.cv.voice.name} {t[:40]!r}: {reason}"
                                                           for t in job.texts])


def _write_tables(root: Path, results: list[ChapterResult]) -> None:
    """SPEAKERS.TXT and CHAPTERS.TXT in LibriSpeech's pipe-separated format."""
    speakers: dict[CorpusVoice, float] = {}
    chapters = []
    for r in sorted(results, key=lambda r: r.chapter):
        if r.utterances:
            speakers[r.cv] = speakers.get(r.cv, 0.0) + r.seconds / 60
            chapters.append(f"{r.chapter:<7}| {r.cv.speaker:<5}| {r.seconds / 60:<6.2f}| {r.cv.split:<17}| 0    "
                            f"| 0     | Chapter {r.chapter % 10} | Jane Austen read by {r.cv.voice.name}\n")
    (root / "SPEAKERS.TXT").write_text(
        "; Offline TTS corpus of asr-workbook: each speaker is one synthetic voice (NAME: engine voice)\n"
        ";ID  |SEX| SUBSET           |MINUTES| NAME\n"
        + "".join(f"{cv.speaker:<5}| {cv.voice.sex} | {cv.split:<17}| {m:<6.2f}| {cv.voice.engine} {cv.voice.voice}\n"
                  for cv, m in speakers.items()), encoding="utf-8")
    (root / "CHAPTERS.TXT").write_text(
        "; ID      - the ID of the chapter (speaker id * 10 + chapter number)\n"
        "; READER  - the ID of the reader (the synthetic voice)\n"
        "; MINUTES - the total length of the chapter's recordings in minutes\n"
        "; SUBSET  - the corpus subset to which the chapter's recordings are assigned\n"
        "; PROJ.   - 0: no LibriVox project\n"
        "; BOOK ID - 0: sentences from all six Jane Austen novels (asr_helpers/data/SENTENCES_ORIGIN.md)\n"
        "; CH. TITLE - the title of the chapter\n"
        "; PROJECT TITLE - the voice that read it\n"
        ";ID    |READER|MINUTES| SUBSET           | PROJ.|BOOK ID| CH. TITLE | PROJECT TITLE\n"
        + "".join(chapters), encoding="utf-8")


def synthesize_corpus(out: Path, minutes: float, seed: int = 0, workers: int | None = None) -> dict:
    """Render about ``minutes`` of speech into ``out/LibriSpeech/<split>/...``; returns a summary.

    Voices whose engine is missing are reported at the start and left out; an utterance the
    engine fails on is logged and skipped. Existing split folders under ``out/LibriSpeech``
    are replaced, so a rerun never mixes two corpora.
    """
    if not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    workers = workers or os.cpu_count() or 1
    start = time.perf_counter()
    missing = tts.unavailable([cv.voice for cv in VOICES])
    for cv in VOICES:
        if cv.voice.name in missing:
            log.warning("voice %s (%s) unavailable: %s", cv.voice.name, cv.split, missing[cv.voice.name])
    voices = [cv for cv in VOICES if cv.voice.name not in missing]
    root = Path(out) / "LibriSpeech"
    split_dirs = {split: root / split for split in SPLIT_SHARES}
    for folder in split_dirs.values():
        if folder.exists():
            log.info("replacing %s", folder)
            shutil.rmtree(folder)
    root.mkdir(parents=True, exist_ok=True)
    jobs = _plan(minutes, seed, voices, split_dirs)
    jobs.sort(key=lambda job: -sum(map(len, job.texts)))  # longest first keeps the workers busy to the end
    with ProcessPoolExecutor(max_workers=min(workers, max(1, len(jobs)))) as pool:
        futures = [(job, pool.submit(_render_chapter, job)) for job in jobs]
        results = [_collect(job, future) for job, future in futures]
    _write_tables(root, results)
    wall = time.perf_counter() - start
    summary: dict = {"out": str(root), "seed": seed, "workers": workers, "splits": {},
                     "unavailable_voices": missing}
    for split in SPLIT_SHARES:
        done = [r for r in results if r.cv.split == split]
        for reason in (reason for r in done for reason in r.skipped):
            log.warning("%s: skipped %s", split, reason)
        row = {"utterances": sum(r.utterances for r in done), "seconds": round(sum(r.seconds for r in done), 1),
               "speakers": len({r.cv.speaker for r in done if r.utterances}),
               "skipped": sum(len(r.skipped) for r in done)}
        summary["splits"][split] = row
        log.info("%s: %d utterances, %.1f s, %d speakers, %d skipped", split, row["utterances"],
                 row["seconds"], row["speakers"], row["skipped"])
    audio = sum(r.seconds for r in results)
    summary.update(audio_seconds=round(audio, 1), wall_seconds=round(wall, 1),
                   realtime_factor=round(audio / wall, 1))
    log.info("%.1f s of audio in %.1f s wall (%.0fx real time, %d workers)", audio, wall, audio / wall, workers)
    return summary
