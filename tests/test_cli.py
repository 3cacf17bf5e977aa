"""The command-line entry points a grader uses, run as subprocesses like a grader would."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr_helpers import paths
from asr_helpers.data.manifest import index_split
from asr_helpers.training.run import train


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "asr_helpers", *args], capture_output=True, text=True,
                            env=dict(os.environ), timeout=300)
    if check:
        assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.skipif(shutil.which("flite") is None, reason="apt-get install flite festival espeak-ng")
def test_corpus_synth_then_index_with_the_librispeech_code(tmp_path):
    cli("corpus", "synth", "--out", str(tmp_path / "x"), "--minutes", "1", "--seed", "3")
    root = tmp_path / "x" / "LibriSpeech"
    trans_lines = {split: sum(len(p.read_text().splitlines()) for p in (root / split).rglob("*.trans.txt"))
                   for split in ("train-clean-100", "dev-clean", "test-clean", "dev-other", "test-other")}
    flacs = {split: len(list((root / split).rglob("*.flac"))) for split in trans_lines}
    for split, expected in trans_lines.items():
        index = index_split(root, split)
        assert expected > 0 and len(index.utterances) == expected == flacs[split] and not index.skipped
    assert "utterances" in cli("corpus", "index", "--root", str(root), "--split", "dev-clean").stdout


@pytest.fixture
def checkpoint(tiny_corpus) -> Path:
    train(dict(corpus="librispeech", data_root=str(tiny_corpus), dev_splits=["dev-clean"], run_name="cli",
               model_size="tiny", epochs=1, batch_seconds=6.0, max_seconds=6.0, num_workers=0, wandb_mode="disabled"))
    return paths.runs_dir() / "cli" / "last.pt"


def test_transcribe_any_audio_and_score(checkpoint, tiny_corpus, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    source = next((tiny_corpus / "dev-clean").rglob("*.flac"))
    wave, _ = soundfile.read(source)
    soundfile.write(audio / "stereo44k.wav", np.stack([wave, wave], 1)[::1], 44100)
    shutil.copy(source, audio / "plain.flac")
    soundfile.write(audio / "voice.ogg", wave, 16000)
    (audio / "broken.wav").write_bytes(b"RIFF....not a wave")
    out = tmp_path / "predictions"
    for decoder in ("greedy", "beam"):
        result = cli("transcribe", "--checkpoint", str(checkpoint), "--input", str(audio), "--output", str(out),
                     "--decoder", decoder)
        assert "skipped broken.wav" in result.stdout
        assert sorted(p.name for p in out.glob("*.txt")) == ["plain.txt", "stereo44k.txt", "voice.txt"]
    refs = tmp_path / "references"
    refs.mkdir()
    (refs / "plain.txt").write_text("the cat sat\n")
    (refs / "missing.txt").write_text("nobody said this\n")
    score = cli("score", "--references", str(refs), "--predictions", str(out))
    assert "WER" in score.stdout and "missing" in score.stdout and "over 1 utterances" in score.stdout


def test_cli_errors_are_clear(tmp_path):
    result = cli("transcribe", "--checkpoint", str(tmp_path / "nope.pt"), "--input", str(tmp_path),
                 "--output", str(tmp_path / "o"), check=False)
    assert result.returncode == 2 and "no checkpoint" in result.stderr and "Traceback" not in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("score", "--references", str(empty), "--predictions", str(empty), check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr


def test_user_mistakes_are_one_line_without_a_traceback(tmp_path):
    import torch
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    (tmp_path / "bad.yaml").write_text("lr: [1, 2\n")
    out = str(tmp_path / "o")
    for args, expected in [
        (("transcribe", "--checkpoint", str(tmp_path / "garbage.pt"), "--input", str(tmp_path), "--output", out),
         "is not a readable checkpoint"),
        (("transcribe", "--checkpoint", str(tmp_path / "other.pt"), "--input", str(tmp_path), "--output", out),
         "is not an asr-workbook checkpoint"),
        (("train", "--set", "lr=abc"), "lr must be a number, got 'abc'"),
        (("train", "--set", "epochs=2.5"), "epochs must be an integer, got 2.5"),
        (("train", "--config", str(tmp_path / "bad.yaml")), "while parsing"),
    ]:
        result = cli(*args, check=False)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr


def test_lm_decoder_without_an_lm_is_one_line(checkpoint, tmp_path):
    result = cli("transcribe", "--checkpoint", str(checkpoint), "--input", str(tmp_path), "--output",
                 str(tmp_path / "o"), "--decoder", "lm", check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--decoder lm needs --lm" in lines[0], result.stderr


def test_same_stems_keep_every_transcript_through_the_cli(checkpoint, tmp_path):
    audio = tmp_path / "audio"
    for name in ("jfk.wav", "jfk.ogg", "a/1.wav", "b/1.wav"):
        (audio / name).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(audio / name, 0.1 * np.sin(np.arange(8000) / 5.0), 16000)
    (audio / "short.wav").write_bytes(b"")
    soundfile.write(audio / "one-sample.wav", np.zeros(1), 16000)
    result = cli("transcribe", "--checkpoint", str(checkpoint), "--input", str(audio), "--output",
                 str(tmp_path / "out"), "--decoder", "greedy")
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.txt"))
    assert written == ["a/1.txt", "b/1.txt", "jfk.ogg.txt", "jfk.wav.txt", "one-sample.txt"]
    assert "wrote 5 transcripts" in result.stdout and "mirror the input folders" in result.stdout
    assert "jfk.ogg -> jfk.ogg.txt" in result.stdout and "a/1.wav ->" not in result.stdout  # only renames listed
    assert "skipped short.wav: " in result.stdout
