"""transcribe never loses work: odd files are reported and skipped, every readable one gets its own transcript."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from asr_helpers.training.checkpoint import rng_state, save_atomic
from asr_helpers.training.config import TrainConfig
from asr_helpers.inference.transcribe import (AudioInput, TranscribeReport, length_batches, transcribe,
                                             transcript_names)
from asr_helpers.models.deepspeech2 import DeepSpeech2, config_to_dict, model_config
from asr_helpers.data.text import CharTokenizer


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny model saved the way training saves it (same keys, save_atomic)."""
    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    config = model_config("tiny", tokenizer.vocab_size, rnn_mode="masked")
    model = DeepSpeech2(config)
    optimizer = torch.optim.AdamW(model.parameters())
    state = {
        "model": model.state_dict(), "model_config": config_to_dict(config), "tokenizer": tokenizer.to_dict(),
        "train_config": TrainConfig(model_size="tiny").to_dict(), "optimizer": optimizer.state_dict(),
        "progress": 0.0, "scaler": torch.amp.GradScaler("cpu", enabled=False).state_dict(), "step": 0, "epoch": 0,
        "sampler": {"epoch": 0, "position": 0}, "rng": rng_state(), "best_wer": float("inf"),
        "last_eval_step": -1, "trained_seconds": 0.0, "skips": {},
    }
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_atomic(state, path)
    return path


def tone(seconds: float, rate: int = 16000, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return np.repeat(wave[:, None], channels, 1) if channels > 1 else wave


class Fuzz:
    """Writes odd inputs into a folder and remembers which ones a reader should accept."""

    def __init__(self, root: Path, seed: int = 0):
        self.root, self.rng = root, np.random.default_rng(seed)
        self.readable: set[str] = set()
        self.bad: set[str] = set()

    def good(self, name: str, data: np.ndarray, rate: int = 16000, **kwargs) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, data, rate, **kwargs)
        self.readable.add(name)

    def broken(self, name: str, content: bytes | None = None, data: np.ndarray | None = None, **kwargs) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            soundfile.write(path, data, 16000, **kwargs)
        else:
            path.write_bytes(content)
        self.bad.add(name)

    def garbage(self, size: int) -> bytes:
        return self.rng.integers(0, 256, size, dtype=np.uint8).tobytes()


def make_fuzz_folder(root: Path) -> Fuzz:
    fuzz = Fuzz(root)
    suffixes = [".wav", ".flac", ".ogg", ".mp3", ".aiff", ".WAV"]
    for i in range(200):
        fuzz.broken(f"random/{i:03d}{suffixes[i % len(suffixes)]}", fuzz.garbage(int(fuzz.rng.integers(1, 3000))))
    for i, suffix in enumerate(suffixes * 2):
        fuzz.broken(f"empty/{i}{suffix}", b"")
    for i in range(80):
        fuzz.broken(f"riff/{i:02d}.wav", b"RIFF" + fuzz.garbage(int(fuzz.rng.integers(0, 200))))
        fuzz.broken(f"flac/{i:02d}.flac", b"fLaC" + fuzz.garbage(int(fuzz.rng.integers(0, 200))))
    for i in range(20):
        fuzz.broken(f"text/{i:02d}.wav", f"this is not audio {i}\n".encode() * (i + 1))
    for i, suffix in enumerate((".wav", ".flac")):
        fuzz.broken(f"zero/zero{i}{suffix}", data=np.zeros(0, np.float32))
    for i in range(30):
        wave = tone(0.5)
        wave[int(fuzz.rng.integers(0, len(wave)))] = [np.nan, np.inf, -np.inf][i % 3]
        fuzz.broken(f"nonfinite/{i:02d}.wav", data=wave, subtype="FLOAT")
    for samples in (1, 2, 10, 100, 255, 256, 257, 511, 512, 513):
        fuzz.good(f"short/{samples}.wav", tone(1.0)[:samples])
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        fuzz.good(f"subtypes/{subtype}.wav", tone(0.7), subtype=subtype)
    fuzz.good("channels/six.wav", tone(0.8, channels=6))
    fuzz.good("channels/stereo.flac", tone(0.8, channels=2))
    for rate in (4000, 8000, 11025, 22050, 32000, 44100, 48000, 96000, 192000):
        fuzz.good(f"rates/{rate}.wav", tone(0.6, rate), rate)
    fuzz.good("long/silence.wav", np.zeros(16000 * 10, np.float32))
    fuzz.good("long/noise.flac", (0.1 * fuzz.rng.standard_normal(16000 * 180)).astype(np.float32))
    fuzz.good("names/with spaces.wav", tone(0.5))
    fuzz.good("names/Ünïcödé ñame.ogg", tone(0.5))
    fuzz.good("names/日本語.flac", tone(0.5))
    fuzz.good("x.wav/inside.wav", tone(0.5))
    fuzz.good("dup/jfk.wav", tone(0.5))
    fuzz.good("dup/jfk.ogg", tone(0.6))
    fuzz.good("dup/a/1.wav", tone(0.5))
    fuzz.good("dup/b/1.wav", tone(0.7))
    for i in range(40):
        fuzz.good(f"plain/utt{i:02d}.flac", tone(0.3 + 0.05 * i))
    (root / "notes.txt").write_text("not an audio suffix: ignored\n")
    return fuzz


def test_fuzz_every_readable_file_gets_one_transcript_every_other_a_reason(tiny_checkpoint, tmp_path):
    fuzz = make_fuzz_folder(tmp_path / "in")
    assert len(fuzz.readable) + len(fuzz.bad) >= 500
    report = transcribe(tiny_checkpoint, [tmp_path / "in"], tmp_path / "out", decoder="greedy", batch_seconds=30)
    written = [label for label, _ in report.written]
    skipped = dict(report.skipped)
    assert sorted(written) == sorted(fuzz.readable)            # each readable file exactly once
    assert set(skipped) == fuzz.bad and len(report.skipped) == len(fuzz.bad)
    assert all(reason.strip() for reason in skipped.values())
    on_disk = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.txt"))
    assert on_disk == sorted(path for _, path in report.written)  # nothing overwritten
    assert report.mirrored and Path("dup/jfk.wav.txt") in on_disk and Path("dup/a/1.txt") in on_disk
    assert "empty audio" in skipped["zero/zero0.wav"] and "NaN" in skipped["nonfinite/00.wav"]
    assert "skipped riff/00.wav: " in report.summary() and "dup/jfk.wav -> dup/jfk.wav.txt" in report.summary()


def test_summary_lists_renames_only_when_there_are_some():
    mirrored = TranscribeReport(output=Path("out"), mirrored=True,
                                written=[("a/1.wav", Path("a/1.txt")), ("b/1.wav", Path("b/1.txt"))])
    assert "renamed" not in mirrored.summary() and "mirror the input folders" in mirrored.summary()
    mirrored.written.append(("c/jfk.ogg", Path("c/jfk.ogg.txt")))
    assert mirrored.summary().endswith("renamed to keep every transcript:\n  c/jfk.ogg -> c/jfk.ogg.txt")


def test_unique_stems_stay_flat_librispeech_style():
    relatives = [Path("dev-clean/1/2/1-2-0000.flac"), Path("dev-clean/1/2/1-2-0001.flac")]
    assert transcript_names(relatives) == ([Path("1-2-0000.txt"), Path("1-2-0001.txt")], False)


def test_repeated_stems_mirror_folders_and_keep_extensions():
    relatives = [Path("jfk.wav"), Path("jfk.ogg"), Path("a/1.wav"), Path("b/1.wav"), Path("c.wav")]
    names, mirrored = transcript_names(relatives)
    assert mirrored and names == [Path("jfk.wav.txt"), Path("jfk.ogg.txt"), Path("a/1.txt"), Path("b/1.txt"),
                                  Path("c.txt")]
    names, _ = transcript_names([Path("1.wav"), Path("1.wav")])  # two input files with one name
    assert names == [Path("1.wav.txt"), Path("1.wav-2.txt")]


def test_batches_are_sorted_and_bounded_by_padded_seconds():
    items = [AudioInput(Path(f"{s}"), str(s), Path(f"{s}"), seconds=s) for s in (5.0, 1.0, 3.0, 2.0, 9.0, 4.0)]
    batches = list(length_batches(items, batch_seconds=10.0, max_batch_size=3))
    assert [[i.seconds for i in b] for b in batches] == [[1.0, 2.0, 3.0], [4.0, 5.0], [9.0]]
    assert all(len(b) * b[-1].seconds <= 10.0 for b in batches)


def test_batched_transcripts_equal_one_at_a_time(tiny_checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        soundfile.write(folder / f"u{i}.wav", (0.2 * rng.standard_normal(int(16000 * (0.3 + 0.2 * i)))), 16000)
    for decoder in ("greedy", "beam"):
        batched = transcribe(tiny_checkpoint, [folder], tmp_path / f"b-{decoder}", decoder=decoder, beam_width=4)
        single = transcribe(tiny_checkpoint, [folder], tmp_path / f"s-{decoder}", decoder=decoder, beam_width=4,
                            batch_seconds=0.01)
        assert len(batched.written) == len(single.written) == 8
        for name in (f"u{i}.txt" for i in range(8)):
            assert (tmp_path / f"b-{decoder}" / name).read_text() == (tmp_path / f"s-{decoder}" / name).read_text()


def test_a_failing_batch_is_retried_so_only_the_bad_file_is_reported(tiny_checkpoint, tmp_path, monkeypatch):
    from asr_helpers.inference import transcribe as transcribe_module
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        soundfile.write(folder / f"u{i}.wav", tone(0.4 + 0.1 * i), 16000)
    soundfile.write(folder / "poison.wav", tone(0.45) * 0 + 0.123, 16000)
    real = transcribe_module.Transcriber.texts

    def fails_on_poison(self, waves):
        if any(torch.allclose(w, torch.full_like(w, 0.123), atol=1e-3) for w in waves):
            raise RuntimeError("boom")
        return real(self, waves)

    monkeypatch.setattr(transcribe_module.Transcriber, "texts", fails_on_poison)
    report = transcribe(tiny_checkpoint, [folder], tmp_path / "out", decoder="greedy")
    assert sorted(label for label, _ in report.written) == [f"u{i}.wav" for i in range(4)]
    assert report.skipped == [("poison.wav", "model error (RuntimeError: boom)")]


def test_a_missing_input_is_reported_and_the_others_go_on(tiny_checkpoint, tmp_path):
    soundfile.write(tmp_path / "ok.wav", tone(0.5), 16000)
    report = transcribe(tiny_checkpoint, [tmp_path / "nope.wav", tmp_path / "ok.wav"], tmp_path / "out",
                        decoder="greedy")
    assert [label for label, _ in report.written] == [str(tmp_path / "ok.wav")]
    assert report.skipped == [(str(tmp_path / "nope.wav"), "no such file or folder")]
