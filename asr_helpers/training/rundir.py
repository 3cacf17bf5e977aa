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

LM_PARAMS = "lm_params.json"  # tuned alpha/beta, kept next to the checkpoint they were tuned for
FUSION_PARAMS = "fusion_params.json"  # the joint search's LM fusion weights (CTC weight, alpha, beta), tuned on dev
JOINT_PARAMS = "joint_params.json"  # the joint CTC/attention search's CTC weight, tuned on dev


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
    def lm_params(self) -> Path:
        return self.path / LM_PARAMS

    @property
    def fusion_params(self) -> Path:
        return self.path / FUSION_PARAMS

    @property
    def joint_params(self) -> Path:
        return self.path / JOINT_PARAMS

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
        return self.path / f"recogs-{split}-{decoder.replace('+', '_')}.txt"

    def read_config(self) -> dict:
        return read_json(self.config)

    def read_summary(self) -> dict:
        return read_json(self.summary)

    @property
    def finished(self) -> bool:
        return self.summary.exists()
