"""``bench stream``: what streaming costs, as one JSON line.

Per chunk size (80 / 160 / 320 / 640 ms): the algorithmic latency (the chunk, plus the audio past the
end of an output frame's stretch that the model hears before emitting it: the look-ahead's frames and
the rest of the STFT window, ``StreamingRecognizer.latency_ms``) and the compute per chunk as a
real-time factor (seconds of compute per second of audio, mean and 95th percentile over chunks) on
``threads`` CPU threads. Then one long stream (10 minutes by default, speech-level noise alternating
with silence, 160 ms chunks) with the process's resident memory sampled each minute: it must stay
flat apart from the features and log-probs a ``StreamResult`` returns (about 1.8 MB per minute at
64 mels).
Compute does not depend on the weights, so without a checkpoint an untrained ``small`` model is timed.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from asr_helpers.inference.stream_record import CHUNKS_MS, latency_rows


def _recognizer(checkpoint: Path | None):
    from asr_helpers.data.text import CharTokenizer
    from asr_helpers.models.registry import build_model
    from asr_helpers.training.checkpoint import load_recognizer
    if checkpoint is not None:
        return load_recognizer(Path(checkpoint))[0]
    return build_model("ds2_stream", "small", CharTokenizer()).eval()


def _rss_mb() -> float:
    """Resident memory of this process (Linux /proc), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise at speech level, silent every other second: both paths of the front end."""
    rng = np.random.default_rng(seed)
    wave = (0.05 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
    whole = len(wave) // 16000 * 16000
    wave[:whole].reshape(-1, 16000)[1::2] = 0.0
    return wave


def long_stream(streamer, minutes: float, chunk_ms: float = 160.0) -> dict:
    """Resident memory each minute over a ``minutes``-long stream, and the stream's real-time factor."""
    wave, step = _audio(60.0, seed=1), int(16000 * chunk_ms / 1000)
    rss, began = [_rss_mb()], time.perf_counter()
    for _ in range(int(minutes)):
        for start in range(0, len(wave), step):
            streamer.feed(wave[start:start + step])
        rss.append(_rss_mb())
    result = streamer.finish()
    elapsed = time.perf_counter() - began
    return {"minutes": int(minutes), "rss_mb_each_minute": [round(r, 1) for r in rss],
            "rss_growth_mb_after_minute_1": round(rss[-1] - rss[1], 1) if len(rss) > 2 else 0.0,
            "result_mb": round((result.log_mel.nbytes + result.log_probs.nbytes) / 1e6, 1),
            "rtf": round(elapsed / (60 * int(minutes)), 4)}


def bench_stream(checkpoint: Path | None = None, seconds: float = 20.0, threads: int = 2,
                 long_minutes: float = 10.0, chunks_ms: tuple[int, ...] = CHUNKS_MS) -> dict:
    """The latency table (one row per chunk size) and the long stream's memory, as one dict."""
    from asr_helpers.inference.streaming import Streamer
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        recognizer = _recognizer(checkpoint)
        streamer, wave = Streamer(recognizer), _audio(max(seconds, 1.0))
        waits_ms = recognizer.latency_ms()
        rows = latency_rows(streamer, wave, chunks_ms)
        long = long_stream(streamer, long_minutes) if long_minutes >= 1 else None
    finally:
        torch.set_num_threads(previous)
    return {"benchmark": "stream", "threads": threads, "audio_seconds_per_size": seconds,
            "model": "untrained small" if checkpoint is None else str(checkpoint),
            "lookahead_frames": recognizer.net.lookahead, "frame_ms": 10 * recognizer.net.config.time_stride,
            "waits_beyond_chunk_ms": round(waits_ms, 1), "chunks": rows, "long_stream": long}
