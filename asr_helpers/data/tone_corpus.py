"""A learnable stand-in for speech that needs no TTS voices: each letter is a tone of its own pitch.

The GPU check trains the real Trainer on it, so the loss must fall within minutes on any
machine: a model learns to read tones far faster than voices. Files are written in LibriSpeech
layout as FLAC when soundfile is installed, else as 16-bit WAV through the standard library,
so the check runs on a bare machine too.
"""
from __future__ import annotations

import importlib.util
import os
import wave
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
LETTERS = "abcdefghijklmnopqrstuvwxyz"
LETTER_SECONDS = 0.08  # 12.5 letters a second, close to read speech's ~14 characters


def tone_wave(text: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Float32 wave of ``text``: a tone per letter (200-1700 Hz), silence for a space."""
    t = np.arange(int(LETTER_SECONDS * sample_rate)) / sample_rate
    envelope = np.hanning(len(t))
    pieces = [0.3 * envelope * np.sin(2 * np.pi * (200 + 60 * LETTERS.index(c)) * t) if c in LETTERS
              else np.zeros(len(t)) for c in text]
    return np.concatenate(pieces).astype(np.float32)


def random_text(seconds: float, rng: np.random.Generator) -> str:
    """Random words of 2-7 letters filling about ``seconds`` of tone audio."""
    words: list[str] = []
    while (len(" ".join(words)) + 8) * LETTER_SECONDS < seconds:
        words.append("".join(rng.choice(list(LETTERS), int(rng.integers(2, 8)))))
    return " ".join(words) or "a"


def write_audio(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write ``path`` with its suffix changed to .flac (soundfile present) or .wav (standard library)."""
    if importlib.util.find_spec("soundfile") is not None:
        import soundfile
        path = path.with_suffix(".flac")
        soundfile.write(str(path), samples, sample_rate)
        return path
    path = path.with_suffix(".wav")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def write_tone_split(root: Path, split: str, utterances: int, seconds: tuple[float, float], seed: int = 0,
                     copies: int = 1) -> float:
    """``utterances`` files of ``seconds`` (low, high) each under ``root/split``; returns the audio seconds.

    ``copies`` > 1 lists every file that many times under new ids (hard links, so no extra disk
    or writing time): epochs as long as a real corpus's, for timing a Trainer on a fast GPU.
    """
    rng = np.random.default_rng(seed)
    chapter = Path(root) / split / "1" / str(seed)
    chapter.mkdir(parents=True, exist_ok=True)
    lines, total = [], 0.0
    for i in range(utterances):
        text = random_text(float(rng.uniform(*seconds)), rng)
        samples = tone_wave(text)
        path = write_audio(chapter / f"1-{seed}-{i:04d}", samples)
        for copy in range(1, copies):
            os.link(path, path.with_name(f"1-{seed}-{copy * utterances + i:04d}{path.suffix}"))
        lines += [f"1-{seed}-{copy * utterances + i:04d} {text.upper()}" for copy in range(copies)]
        total += copies * len(samples) / SAMPLE_RATE
    (chapter / f"1-{seed}.trans.txt").write_text("\n".join(lines) + "\n")
    return total
