"""What notebook 04 records about a streaming run, for the report's Streaming section (05 never decodes).

One utterance streamed 160 ms at a time gives the partial transcripts a listener would see and when
(audio seconds heard); the same streamer timed over about 20 s of audio (the utterance repeated) in
chunks of 80 to 640 ms gives the latency table: the algorithmic latency (the chunk, plus the look-ahead
frames and the rest of the STFT window the model hears before emitting a frame) and the compute per
chunk as a real-time factor. ``bench stream`` times chunks with the same ``time_chunks``.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from asr_helpers.inference.streaming import Streamer, changed_partials, chunk_samples

CHUNKS_MS = (80, 160, 320, 640)
PARTIAL_CHUNK_MS = 160  # what the microphone panel sends


def time_chunks(streamer: Streamer, wave: np.ndarray, chunk_ms: float) -> dict:
    """Compute per chunk of ``chunk_ms`` over ``wave`` as real-time factors (mean and p95); the stream is finished."""
    step = chunk_samples(chunk_ms)
    costs = []
    for start in range(0, len(wave) - step + 1, step):
        began = time.perf_counter()
        streamer.feed(wave[start:start + step])
        costs.append(time.perf_counter() - began)
    began = time.perf_counter()
    streamer.finish()
    finish_ms = 1000 * (time.perf_counter() - began)
    rtf = np.array(costs or [float("nan")]) / (chunk_ms / 1000)
    return {"chunk_ms": chunk_ms, "chunks": len(costs), "rtf_mean": round(float(rtf.mean()), 4),
            "rtf_p95": round(float(np.percentile(rtf, 95)), 4),
            "compute_ms_per_chunk": round(1000 * float(np.mean(costs or [float("nan")])), 2),
            "finish_ms": round(finish_ms, 1)}


def latency_rows(streamer: Streamer, wave: np.ndarray, chunks_ms=CHUNKS_MS) -> list[dict]:
    """One row per chunk size: algorithmic latency (chunk + ``latency_ms()``), RTF mean and p95, threads used."""
    streamer.feed(wave[:Streamer.SAMPLE_RATE])  # warm-up: first calls allocate
    streamer.finish()
    waits_ms, threads = streamer.recognizer.latency_ms(), torch.get_num_threads()
    return [{**time_chunks(streamer, wave, chunk), "algorithmic_latency_ms": round(chunk + waits_ms, 1),
             "threads": threads} for chunk in chunks_ms]


def timeline(streamer: Streamer, wave: np.ndarray, chunk_ms: float = PARTIAL_CHUNK_MS) -> tuple[list, object]:
    """(seconds heard, partial text) at each change, ending at the end of the audio with the final greedy
    text (what ``finish`` flushes shows then too), and the ``StreamResult``."""
    partials = [[round(s, 3), text] for s, text in changed_partials(streamer.feed, wave, chunk_ms, streamer.SAMPLE_RATE)]
    result = streamer.finish()
    end = round(len(wave) / streamer.SAMPLE_RATE, 3)
    if partials and partials[-1][0] >= end:
        partials.pop()
    return partials + [[end, result.text]], result


def stream_record(streamer: Streamer, wave: np.ndarray, utt_id: str, reference: str,
                  chunks_ms=CHUNKS_MS, timed_seconds: float = 20.0) -> dict:
    """The JSON-able record 05 shows: the utterance, its partials over time, the final texts, the latency table."""
    partials, result = timeline(streamer, wave)
    repeats = max(1, math.ceil(timed_seconds * streamer.SAMPLE_RATE / max(1, len(wave))))
    net = streamer.recognizer.net
    return {"id": utt_id, "reference": reference, "seconds": round(len(wave) / streamer.SAMPLE_RATE, 3),
            "partial_chunk_ms": PARTIAL_CHUNK_MS, "partials": partials, "greedy": result.text,
            "lm": result.lm_text, "lookahead_frames": net.lookahead,
            "frame_ms": 1000 * net.config.time_stride * streamer.recognizer.features.hop_length
            / streamer.recognizer.features.sample_rate,
            "waits_beyond_chunk_ms": round(streamer.recognizer.latency_ms(), 1),
            "latency": latency_rows(streamer, np.tile(wave, repeats), chunks_ms)}


def record_utterance(streamer: Streamer, utterance, path: Path) -> dict | None:
    """Stream a manifest ``utterance`` (id, path, text), write its record to ``path`` (``RunDir.streaming``)
    and return it; an unreadable file is one line naming it, and ``None``."""
    from asr_helpers.data.audio import AudioError, load_audio
    try:
        wave = load_audio(utterance.path).numpy().astype(np.float32)
    except AudioError as error:
        print(f"no streaming record: {utterance.id} ({error.reason})")
        return None
    record = stream_record(streamer, wave, utterance.id, utterance.text)
    Path(path).write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record
