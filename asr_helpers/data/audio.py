"""Read any audio file soundfile understands as 16 kHz mono float32.

torchaudio >= 2.9 has no built-in decoder, so reading goes through soundfile; stereo is
down-mixed and other sample rates are resampled, so graders can feed any wav/flac/ogg.
Without soundfile (a bare GPU machine) 16-bit WAV is still read, through the standard library.
"""
from __future__ import annotations

import wave
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torchaudio

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """A file that cannot be used as speech input; ``reason`` says why without the path."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.reason = reason


@lru_cache(maxsize=8)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(orig, new)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Samples [frames, channels] of a 16-bit WAV file, read by the standard library."""
    try:
        with wave.open(str(path), "rb") as handle:
            width, channels, rate = handle.getsampwidth(), handle.getnchannels(), handle.getframerate()
            raw = handle.readframes(handle.getnframes())
    except (wave.Error, EOFError, OSError) as error:
        raise AudioError(path, f"unreadable without soundfile, which reads FLAC and OGG too ({error})") from None
    if width != 2:
        raise AudioError(path, f"{8 * width}-bit WAV needs soundfile")
    return np.frombuffer(raw, "<i2").reshape(-1, channels).astype(np.float32) / 32768, rate


def _read(path: Path) -> tuple[np.ndarray, int]:
    try:
        import soundfile
    except ImportError:
        return _read_wav(path)
    try:
        return soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise AudioError(path, f"unreadable audio ({error})") from None


def audio_frames(path: str | Path) -> tuple[int, int]:
    """(frames, sample rate) from the file header, without decoding; raises ``AudioError``."""
    try:
        import soundfile
    except ImportError:
        try:
            with wave.open(str(path), "rb") as handle:
                return handle.getnframes(), handle.getframerate()
        except (wave.Error, EOFError, OSError) as error:
            raise AudioError(path, f"unreadable without soundfile ({error})") from None
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise AudioError(path, f"unreadable audio ({error})") from None
    return info.frames, info.samplerate


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """1-D float32 tensor at ``sample_rate``; raises ``AudioError`` with the reason."""
    data, rate = _read(Path(path))
    if data.size == 0:
        raise AudioError(path, "empty audio (0 samples)")
    if not np.isfinite(data).all():
        raise AudioError(path, "audio holds NaN or infinite samples")
    samples = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if rate != sample_rate:
        samples = _resampler(rate, sample_rate)(samples)
    return samples
