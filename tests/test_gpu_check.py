"""The GPU check runs end to end on a bare interpreter, and its pieces compute what they claim."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from asr_helpers.data.audio import audio_frames, load_audio
from asr_helpers.tools.gpu_check import _run_part, missing_modules
from asr_helpers.tools.gpu_plan import fit_batch_seconds, student_gpu_estimates
from asr_helpers.data.manifest import load_splits
from asr_helpers.data.tone_corpus import LETTER_SECONDS, tone_wave, write_audio, write_tone_split

REPO = Path(__file__).resolve().parent.parent
# What the bare GPU image lacks (wandb, pyctcdecode, kenlm, soundfile, jiwer) and more (matplotlib).
BLOCKED = ("soundfile", "jiwer", "wandb", "pyctcdecode", "kenlm", "matplotlib")


def test_quick_check_runs_without_the_modules_a_bare_gpu_machine_lacks(tmp_path):
    code = ("import sys\n"
            f"for name in {BLOCKED!r}: sys.modules[name] = None\n"
            "from asr_helpers.tools.cli import main\n"
            "main(['bench', 'gpu-check', '--quick', '--device', 'cpu'])\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), ASR_ARTIFACTS_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, "the check prints exactly one line on stdout"
    result = json.loads(lines[0])
    assert set(BLOCKED) <= set(result["missing_modules"])
    parts = ("corpus", "matmul", "bench", "memory", "ctc", "trainer", "loader")
    assert not [name for name in parts if "error" in result[name]], {name: result[name] for name in parts}
    assert not [name for name, run in result["bench"].items() if "error" in run], result["bench"]
    assert result["corpus"]["format"] == ".wav"  # no soundfile: the standard library wrote WAV
    assert result["memory"] == {"skipped": "needs a GPU", "part_seconds": result["memory"]["part_seconds"]}
    bench = result["bench"]
    assert bench["tiny_fp32"]["audio_sec_per_sec"] > 0 and bench["tiny_fp32"]["baseline_audio_sec_per_sec"] > 0
    assert bench["tiny_fp32"]["time_stride"] == 2 and bench["tiny_fp32_stride3"]["time_stride"] == 3
    assert bench["tiny_fp32"]["mfu"] is None  # no data-sheet peak for a CPU
    assert bench["tiny_fp32_las"]["arch"] == "las" and bench["tiny_fp32_las"]["audio_sec_per_sec"] > 0
    assert result["ctc"]["steps"] == 3 and result["ctc"]["nonfinite_losses"] == 0 and not result["ctc"]["skips"]
    trainer = result["trainer"]
    assert trainer["stop_reason"] == "max_steps" and trainer["steps"] == 2 and trainer["loss_finite"]
    assert result["loader"]["audio_sec_per_sec"] > 0
    assert result["summary"]["loader_over_trainer"] == pytest.approx(
        result["loader"]["audio_sec_per_sec"] / trainer["audio_sec_per_sec"])
    assert not (tmp_path / "runs").exists(), "the check writes into a temporary folder of its own"


def test_a_failing_or_overrunning_part_is_recorded_and_the_next_still_runs():
    result: dict = {}
    _run_part("broken", lambda: 1 / 0, 10.0, result)
    _run_part("slow", lambda: time.sleep(5) or {}, 0.3, result)
    _run_part("fine", lambda: {"value": 1}, 10.0, result)
    assert result["broken"]["error"] == "ZeroDivisionError: division by zero"
    assert result["slow"]["error"].startswith("PartTimeout") and result["slow"]["part_seconds"] < 3
    assert result["fine"]["value"] == 1


def test_missing_modules_sees_a_blocked_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "jiwer", None)
    assert missing_modules(("jiwer", "torch", "no_such_module_here")) == ["jiwer", "no_such_module_here"]


def test_largest_batch_for_a_memory_budget_follows_the_measured_line():
    points = {100.0: 2.0, 200.0: 3.5, 400.0: 6.5}  # 0.5 GiB + 1.5 GiB per 100 s
    assert fit_batch_seconds(points, 12.75) == pytest.approx(816.67, abs=0.01)
    assert fit_batch_seconds({100.0: 2.0}, 12.75) is None


def test_tone_corpus_is_indexed_and_read_as_written(tmp_path):
    seconds = write_tone_split(tmp_path, "train-clean-100", 5, (1.0, 2.0), seed=3)
    utterances = load_splits(tmp_path, ["train-clean-100"])
    assert len(utterances) == 5 and sum(u.seconds for u in utterances) == pytest.approx(seconds)
    for utt in utterances:
        assert len(load_audio(utt.path)) == round(len(utt.text) * LETTER_SECONDS * 16000)
    assert len(tone_wave("ab c")) == 4 * int(LETTER_SECONDS * 16000)


def test_tone_corpus_copies_list_each_file_again_without_writing_it_again(tmp_path):
    seconds = write_tone_split(tmp_path, "dev-clean", 2, (1.0, 2.0), seed=4, copies=3)
    utterances = load_splits(tmp_path, ["dev-clean"])
    assert len(utterances) == 6 and sum(u.seconds for u in utterances) == pytest.approx(seconds)
    assert {Path(u.path).stat().st_nlink for u in utterances} == {3}
    assert len({u.text for u in utterances}) == 2


def test_wav_is_read_without_soundfile_as_soundfile_reads_it(tmp_path, monkeypatch):
    samples = (0.5 * np.sin(np.linspace(0, 200, 8000))).astype(np.float32)
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes((samples * 32767).astype("<i2").tobytes())
    with_soundfile = load_audio(path)
    monkeypatch.setitem(sys.modules, "soundfile", None)
    assert audio_frames(path) == (8000, 8000)
    assert torch.allclose(load_audio(path), with_soundfile, atol=1e-4)  # resampled to 16 kHz both ways
    assert write_audio(tmp_path / "written", samples).suffix == ".wav"
    flac = tmp_path / "x.flac"
    soundfile.write(flac, samples, 16000)
    with pytest.raises(ValueError, match="without soundfile"):
        load_audio(flac)


def test_student_estimates_scale_with_peak_and_flops():
    estimates = student_gpu_estimates(10e9, 0.2)  # 10 GFLOP per audio second at 20 % of peak
    t4x2, p100 = estimates["kaggle_t4x2"], estimates["kaggle_p100"]
    assert t4x2["audio_sec_per_sec"] == pytest.approx(0.2 * 65e12 * 2 * 0.9 / 10e9)
    assert p100["audio_sec_per_sec"] == pytest.approx(0.2 * 18.7e12 / 10e9)
    assert p100["hours_per_epoch"]["clean_460h"] == pytest.approx(464.2 * 3600 / 374.0 / 3600, abs=0.01)
    assert t4x2["epochs_in_30h"]["all_960h"] == pytest.approx(30 / t4x2["hours_per_epoch"]["all_960h"], abs=0.1)


def test_tracker_skips_the_audio_sample_without_soundfile(tmp_path, monkeypatch, caplog):
    from asr_helpers.training.tracking import Tracker
    tracker = Tracker(tmp_path, {}, wandb_mode="disabled")
    tracker.audio("train/augmented_audio", np.zeros(160, dtype=np.float32), 16000, step=1)
    assert len(list(tracker.media.glob("*.wav"))) == 1
    monkeypatch.setitem(sys.modules, "soundfile", None)
    tracker.audio("train/augmented_audio", np.zeros(160, dtype=np.float32), 16000, step=2)
    assert len(list(tracker.media.glob("*.wav"))) == 1 and "soundfile is not installed" in caplog.text
