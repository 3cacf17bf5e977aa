"""Shared fixtures: a tiny corpus in exact LibriSpeech layout, and isolated artifact folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr_helpers.data.text import CharTokenizer

WORDS = "the cat sat on a mat while her sister read an old letter by the fire".split()


def write_librispeech(root: Path, split: str, speakers: int = 2, chapters: int = 1, utterances: int = 4,
                      seed: int = 0, sample_rate: int = 16000) -> list[str]:
    """Tone-sequence audio plus transcripts in LibriSpeech layout; returns the utterance ids."""
    rng = np.random.default_rng(seed)
    ids = []
    for s in range(speakers):
        speaker = str(100 + s + 10 * seed)
        for c in range(chapters):
            chapter = str(2000 + c)
            folder = root / split / speaker / chapter
            folder.mkdir(parents=True, exist_ok=True)
            lines = []
            for u in range(utterances):
                utt_id = f"{speaker}-{chapter}-{u:04d}"
                words = rng.choice(WORDS, size=int(rng.integers(2, 5)))
                seconds = 0.4 * len(words) + 0.3
                t = np.arange(int(seconds * sample_rate)) / sample_rate
                wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * len(words[0])) * t) + 0.01 * rng.standard_normal(len(t))
                soundfile.write(folder / f"{utt_id}.flac", wave.astype(np.float32), sample_rate)
                lines.append(f"{utt_id} {' '.join(words).upper()}")
                ids.append(utt_id)
            (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return ids


@pytest.fixture(autouse=True)
def isolated_artifacts(tmp_path, monkeypatch):
    """Every test writes artifacts, caches and data into its own temporary folder."""
    monkeypatch.setenv("ASR_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("ASR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ASR_CACHE_DIR", raising=False)
    monkeypatch.delenv("ASR_RUNS_DIR", raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    """A LibriSpeech root with train-clean-100 and dev-clean (tone audio, real layout)."""
    root = tmp_path / "LibriSpeech"
    write_librispeech(root, "train-clean-100", speakers=2, utterances=6, seed=0)
    write_librispeech(root, "dev-clean", speakers=1, utterances=3, seed=1)
    return root


def train_in_folder(root: Path, run_name: str, **settings) -> Path:
    """One short training run for a whole test module: ``root`` gets LibriSpeech/ (tone audio) and
    runs/<run_name>/, with artifacts and data kept in ``root`` too. Returns ``root``."""
    from asr_helpers.training.run import train
    write_librispeech(root / "LibriSpeech", "train-clean-100", speakers=2, utterances=6, seed=0)
    write_librispeech(root / "LibriSpeech", "dev-clean", speakers=1, utterances=3, seed=1)
    with pytest.MonkeyPatch.context() as env:
        for name, folder in (("ASR_ARTIFACTS_DIR", "artifacts"), ("ASR_DATA_DIR", "data"), ("ASR_RUNS_DIR", "runs")):
            env.setenv(name, str(root / folder))
        env.delenv("ASR_CACHE_DIR", raising=False)
        env.setenv("WANDB_MODE", "disabled")
        train(dict(corpus="librispeech", data_root=str(root / "LibriSpeech"), dev_splits=["dev-clean"],
                   run_name=run_name, **settings))
    return root


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``python -m asr_helpers ARGS`` run in this process."""
    from asr_helpers.tools import cli
    try:
        cli.main(list(args))
        code = 0
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def spelled(spec, labels: tuple[str, ...] = tuple(CharTokenizer().labels)) -> np.ndarray:
    """Log-probs spelling ``spec`` over ``labels``: a confident frame per character (or a dict of choices),
    then a blank (the LM decoders' tests feed these instead of a model's output)."""
    rows = []
    for item in spec:
        row = np.full(len(labels), 1e-4)
        for char, prob in (item.items() if isinstance(item, dict) else [(item, 1.0)]):
            row[labels.index(char)] = prob
        blank = np.full(len(labels), 1e-4)
        blank[0] = 1.0
        rows += [row / row.sum(), blank / blank.sum()]
    return np.log(np.array(rows)).astype(np.float32)
