"""The Streamer on odd input, on a ds2_stream run trained through the Trainer (checkpoint and export), with
the LM at the end, and ``transcribe --stream``."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from asr_helpers.data.text import CharTokenizer
from asr_helpers.inference.streaming import Streamer, StreamResult
from asr_helpers.models.registry import build_model, model_name_of
from asr_helpers.training.checkpoint import load_recognizer
from asr_helpers.training.export import export_checkpoint
from conftest import run_cli, train_in_folder

TOK = CharTokenizer()
PINNED = Path(__file__).parent / "fixtures" / "pinned"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A ds2_stream run of one epoch (3 steps) through the Trainer: a folder with LibriSpeech/ and runs/stream/."""
    return train_in_folder(tmp_path_factory.mktemp("stream"), "stream", model="ds2_stream", lookahead=2,
                           model_size="tiny", epochs=1, batch_seconds=6.0, max_seconds=6.0,
                           num_workers=0, wandb_mode="disabled")


@pytest.fixture
def streamer() -> Streamer:
    torch.manual_seed(0)
    return Streamer(build_model("ds2_stream", "tiny", TOK))


def wave(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32)


@pytest.mark.parametrize("bad, reason", [
    (np.array([0.1, np.nan], dtype=np.float32), "NaN or infinite"),
    (np.array([np.inf], dtype=np.float32), "NaN or infinite"),
    (np.zeros((800, 2), dtype=np.float32), "mono"),
    (np.zeros(800, dtype=np.int16), "float samples"),
    ([0.0, 0.1], "NumPy array"),
])
def test_a_bad_chunk_is_a_one_line_error_and_the_stream_goes_on_as_if_it_never_came(streamer, bad, reason):
    audio = wave(0.5)
    streamer.feed(audio[:3000])
    with pytest.raises(ValueError, match=reason) as error:
        streamer.feed(bad)
    assert "\n" not in str(error.value)
    streamer.feed(audio[3000:])
    interrupted = streamer.finish()
    streamer.feed(audio)
    clean = streamer.finish()
    assert interrupted.seconds == 0.5 and np.allclose(interrupted.log_probs, clean.log_probs, atol=1e-5)


def test_empty_tiny_silent_and_no_input_give_a_result(streamer):
    assert streamer.feed(np.zeros(0, dtype=np.float32)) == "" and streamer.seconds == 0.0
    nothing = streamer.finish()
    assert isinstance(nothing, StreamResult) and nothing.text == "" and nothing.lm_text is None
    assert nothing.log_probs.shape == (0, TOK.vocab_size) and nothing.log_mel.shape[1] == 0
    streamer.feed(np.array([0.3], dtype=np.float32))
    one = streamer.finish()
    assert one.log_mel.shape[1] == 1 and one.log_probs.shape[0] == 1 and one.seconds == 1 / 16000
    for _ in range(50):
        assert isinstance(streamer.feed(np.zeros(1600, dtype=np.float32)), str)
    silence = streamer.finish()
    assert silence.seconds == 5.0 and np.isfinite(silence.log_probs).all()


def test_finish_resets_the_streamer_and_float64_chunks_are_taken(streamer):
    audio = wave(0.7, seed=2)
    streamer.feed(audio)
    first = streamer.finish()
    assert streamer.seconds == 0.0
    streamer.feed(audio.astype(np.float64))
    again = streamer.finish()
    assert np.allclose(first.log_probs, again.log_probs, atol=1e-6) and first.text == again.text


@pytest.mark.parametrize("model", ["deepspeech2", "las"])
def test_a_model_that_cannot_stream_is_a_one_line_error(model):
    with pytest.raises(ValueError, match="cannot stream") as error:
        Streamer(build_model(model, "tiny", TOK))
    assert "\n" not in str(error.value)


def test_a_trained_run_and_its_export_stream_as_the_same_model(trained, tmp_path):
    best = trained / "runs" / "stream" / "best.pt"
    exported = export_checkpoint(best, tmp_path / "export.pt")
    loaded, _, config = load_recognizer(exported)
    assert model_name_of(loaded) == "ds2_stream" and config["lookahead"] == 2 and loaded.net.lookahead == 2
    assert not torch.equal(loaded.features.norm.running_mean, torch.zeros_like(loaded.features.norm.running_mean))
    audio = soundfile.read(next((trained / "LibriSpeech" / "dev-clean").rglob("*.flac")), dtype="float32")[0]
    results = []
    for path in (best, exported):
        streamer = Streamer.from_checkpoint(path)
        for start in range(0, len(audio), 1234):
            streamer.feed(audio[start:start + 1234])
        results.append(streamer.finish())
    assert np.allclose(results[0].log_probs, results[1].log_probs, atol=1e-5)
    assert results[0].text == results[1].text and results[0].lm_text is None


def test_the_lm_rescores_the_whole_stream_at_the_end(trained, tmp_path):
    lm = tmp_path / "lm"
    shutil.copytree(PINNED, lm, ignore=shutil.ignore_patterns("*.pt", "audio"))
    streamer = Streamer.from_checkpoint(trained / "runs" / "stream" / "best.pt", lm / "3-gram.arpa")
    streamer.feed(wave(1.0))
    result = streamer.finish()
    assert isinstance(result.lm_text, str)
    assert streamer.finish().lm_text == ""  # nothing fed: nothing to rescore


def test_transcribe_stream_prints_partials_and_the_final_and_writes_it(trained, tmp_path, capsys):
    best = trained / "runs" / "stream" / "best.pt"
    audio = trained / "LibriSpeech" / "dev-clean"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF nonsense")
    shutil.copy(next(audio.rglob("*.flac")), tmp_path / "in" / "one.flac")
    code, out, err = run_cli(capsys, "transcribe", "--checkpoint", str(best), "--input", str(tmp_path / "in"),
                             "--output", str(tmp_path / "out"), "--stream", "--chunk-ms", "80")
    assert code == 0 and not err
    assert "one.flac" in out and "final (" in out and "skipped broken.wav" in out
    final = next(line for line in out.splitlines() if "final (" in line).split(": ", 1)[1]
    assert (tmp_path / "out" / "one.txt").read_text() == final + "\n"


def test_transcribe_stream_of_a_model_that_cannot_stream_is_one_error_line(tmp_path, capsys):
    from asr_helpers.training.checkpoint import save_atomic
    from asr_helpers.training.config import TrainConfig
    model = build_model("deepspeech2", "tiny", TOK)
    save_atomic({**model.checkpoint_entries(), "tokenizer": TOK.to_dict(),
                 "train_config": TrainConfig(model_size="tiny").to_dict()}, tmp_path / "ds2.pt")
    code, out, err = run_cli(capsys, "transcribe", "--checkpoint", str(tmp_path / "ds2.pt"), "--input",
                             str(PINNED / "audio"), "--output", str(tmp_path / "out"), "--stream")
    assert code == 2 and err.startswith("error: ") and "cannot stream" in err and err.count("\n") == 1


def test_streaming_and_batch_transcribe_agree_on_a_ds2_stream_run(trained, tmp_path, capsys):
    best = trained / "runs" / "stream" / "best.pt"
    audio = trained / "LibriSpeech" / "dev-clean"
    code, _, _ = run_cli(capsys, "transcribe", "--checkpoint", str(best), "--input", str(audio), "--output",
                         str(tmp_path / "batch"), "--decoder", "greedy")
    assert code == 0
    streamer = Streamer.from_checkpoint(best)
    for path in sorted(audio.rglob("*.flac")):
        samples = soundfile.read(path, dtype="float32")[0]
        for start in range(0, len(samples), 2000):
            streamer.feed(samples[start:start + 2000])
        assert (tmp_path / "batch" / f"{path.stem}.txt").read_text() == streamer.finish().text + "\n"


def test_a_long_stream_returns_its_freed_heap_every_ten_seconds_of_audio(streamer, monkeypatch):
    """glibc keeps the pages each chunk frees; the streamer hands them back every TRIM_EVERY_SECONDS."""
    from asr_helpers.inference import streaming
    assert streaming.release_free_heap() is True  # glibc here: the call exists and runs
    calls = []
    monkeypatch.setattr(streaming, "release_free_heap", lambda: calls.append(streamer.seconds) or True)
    audio = wave(35.0)
    for start in range(0, len(audio), 4000):  # 250 ms chunks
        streamer.feed(audio[start:start + 4000])
    assert calls == [10.0, 20.0, 30.0]
    assert streamer.finish().seconds == 35.0
