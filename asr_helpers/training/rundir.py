"""Every file a run folder holds, named in one place.

Training writes ``artifacts/runs/<run>/``, notebook 04 adds decoding results, and the report
reads them back; all three go through ``RunDir`` so a file name is spelt once (as icefall's
fixed ``recogs-<set>.txt`` names are).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from asr_helpers import paths
from asr_helpers.decoding.decoders import file_safe
from asr_helpers.decoding.tuned import TUNED_FILE


def read_json(path: Path) -> dict:
    """A JSON file's content, or ``{}`` when the file is missing (a run that has not got there yet)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


@dataclass(frozen=True)
class RunDir:
    """The folder of one training run and the names of the files in it."""

    path: Path

    @classmethod
    def named(cls, name: str) -> "RunDir":
        return cls(paths.runs_dir() / name)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def launch_config(self) -> Path:
        """The YAML that ``torchrun`` ranks read their settings from."""
        return self.path / "config.yaml"

    @property
    def summary(self) -> Path:
        return self.path / "train_summary.json"

    @property
    def history(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def samples(self) -> Path:
        return self.path / "samples.jsonl"

    @property
    def media(self) -> Path:
        return self.path / "media"

    @property
    def wandb_id(self) -> Path:
        return self.path / "wandb_id.txt"

    @property
    def decoding(self) -> Path:
        return self.path / "decoding.json"

    @property
    def streaming(self) -> Path:
        """A streaming run's partials over time and latency table, recorded by notebook 04 for the report."""
        return self.path / "streaming.json"

    @property
    def tuned(self) -> Path:
        """Every decoder's weights tuned on dev by notebook 04 (``decoding.tuned``), next to the checkpoint."""
        return self.path / TUNED_FILE

    def media_file(self, name: str, step: int, suffix: str) -> Path:
        """A logged image or sound: ``media/<name, / as _>-<step>.<suffix>`` (``train/spectrogram`` at step 40
        is ``media/train_spectrogram-0000040.png``)."""
        return self.media / f"{name.replace('/', '_')}-{step:07d}.{suffix}"

    def media_files(self, name: str, suffix: str) -> list[Path]:
        """Every logged file of a media name (glob wildcards allowed: ``eval/*/spectrogram``), oldest first."""
        return sorted(self.media.glob(f"{name.replace('/', '_')}-*.{suffix}"), key=lambda p: (p.stem[-7:], p.name))

    def checkpoint(self, name: str = "best.pt") -> Path:
        return self.path / name

    def recogs(self, split: str, decoder: str) -> Path:
        return self.path / f"recogs-{split}-{file_safe(decoder)}.txt"

    def logprobs(self, split: str) -> Path:
        """A split's model outputs, cached by ``inference.comparison`` so every decoder reuses them."""
        return self.path / f"logprobs-{split}.npz"

    def read_config(self) -> dict:
        return read_json(self.config)

    def read_summary(self) -> dict:
        return read_json(self.summary)

    @property
    def finished(self) -> bool:
        return self.summary.exists()
