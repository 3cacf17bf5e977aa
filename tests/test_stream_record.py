"""What notebook 04 records for a streaming run (``streaming.json``): partials over time on the fixture export,
the latency table, and ``bench stream`` timing chunks with the same function."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from asr_helpers.data.audio import load_audio
from asr_helpers.inference.stream_record import CHUNKS_MS, record_utterance, stream_record
from asr_helpers.inference.streaming import Streamer, changed_partials
from asr_helpers.tools.bench_stream import bench_stream

FIXTURE = Path(__file__).parent / "fixtures" / "stream"
UTTERANCE = "9112-91121-0001"


@pytest.fixture(scope="module")
def streamer() -> Streamer:
    return Streamer.from_checkpoint(FIXTURE / "model.pt")


@pytest.fixture(scope="module")
def record(streamer) -> dict:
    wave = load_audio(FIXTURE / f"{UTTERANCE}.wav").numpy()
    return stream_record(streamer, wave, UTTERANCE, "did it said he", timed_seconds=2.0)


def test_the_partials_grow_over_time_and_end_with_the_final_greedy_text_at_the_end_of_the_audio(streamer, record):
    times = [seconds for seconds, _ in record["partials"]]
    assert record["greedy"] and record["partials"][-1][1] == record["greedy"]
    assert times == sorted(set(times)) and times[0] > 0 and times[-1] == record["seconds"]
    wave = load_audio(FIXTURE / f"{UTTERANCE}.wav").numpy()
    assert record["seconds"] == pytest.approx(len(wave) / 16000, abs=1e-3)
    heard = [[round(s, 3), text] for s, text in changed_partials(streamer.feed, wave, record["partial_chunk_ms"])]
    streamer.finish()
    assert record["partials"][:-1] == heard[:len(record["partials"]) - 1]  # what the mic panel prints, in order
    assert record["id"] == UTTERANCE and record["reference"] == "did it said he" and record["lm"] is None


def test_the_latency_rows_have_positive_rtfs_and_latency_is_the_chunk_plus_the_models_wait(streamer, record):
    waits = streamer.recognizer.latency_ms()
    assert [row["chunk_ms"] for row in record["latency"]] == list(CHUNKS_MS)
    for row in record["latency"]:
        assert row["rtf_mean"] > 0 and row["rtf_p95"] > 0 and row["chunks"] >= 2
        assert row["algorithmic_latency_ms"] == pytest.approx(row["chunk_ms"] + waits, abs=0.06)
        assert row["threads"] == torch.get_num_threads()
    assert record["waits_beyond_chunk_ms"] == pytest.approx(waits, abs=0.06)
    assert json.loads(json.dumps(record)) == record
    assert streamer.seconds == 0.0  # the stream was finished: the mic panel starts clean


def test_record_utterance_writes_the_file_and_an_unreadable_one_is_one_line(streamer, tmp_path, capsys):
    utterance = SimpleNamespace(id=UTTERANCE, path=str(FIXTURE / f"{UTTERANCE}.wav"), text="did it")
    assert record_utterance(streamer, utterance, tmp_path / "streaming.json") is not None
    assert json.loads((tmp_path / "streaming.json").read_text())["id"] == UTTERANCE
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    bad = SimpleNamespace(id="bad-1", path=str(broken), text="")
    assert record_utterance(streamer, bad, tmp_path / "other.json") is None
    out = capsys.readouterr().out.strip()
    assert out.startswith("no streaming record: bad-1") and "\n" not in out and not (tmp_path / "other.json").exists()


def test_bench_stream_times_chunks_with_the_same_rows():
    result = bench_stream(seconds=1.0, threads=1, long_minutes=0, chunks_ms=(160, 320))
    rows = result["chunks"]
    assert [r["chunk_ms"] for r in rows] == [160, 320] and all(r["rtf_mean"] > 0 and r["threads"] == 1 for r in rows)
    assert rows[0]["algorithmic_latency_ms"] == pytest.approx(160 + result["waits_beyond_chunk_ms"], abs=0.06)
    assert result["long_stream"] is None and np.isfinite(rows[1]["rtf_p95"])
