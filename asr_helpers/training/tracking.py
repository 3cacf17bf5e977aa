"""Experiment logging: wandb (offline by default) plus plain files the report can read.

Everything goes to ``history.jsonl`` (scalars), ``samples.jsonl`` (text tables) and
``media/`` (spectrogram PNGs, augmented audio) in the run folder, so the report never needs
wandb. wandb runs offline unless ``WANDB_API_KEY`` is set (or a Kaggle/Colab secret was
exported to it); ``wandb sync`` uploads an offline run later. This is the only module that
imports wandb.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from asr_helpers.training.rundir import RunDir

log = logging.getLogger(__name__)


def resolve_wandb_mode(requested: str) -> str:
    """``auto``: online with an API key, offline otherwise; ``disabled`` skips wandb entirely."""
    if requested not in ("auto", "online", "offline", "disabled"):
        raise ValueError(f"wandb_mode must be auto, online, offline or disabled, not {requested!r}")
    if requested == "auto":
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
    return requested


class Tracker:
    """One run's logger; only rank 0 of a distributed run should create an active one."""

    def __init__(self, run_dir: Path, config: dict, wandb_mode: str = "auto", project: str = "asr-workbook",
                 active: bool = True):
        self.run_dir, self.active = Path(run_dir), active
        self.files = RunDir(self.run_dir)
        self.media = self.files.media
        self._wandb = None
        if not active:
            return
        self.media.mkdir(parents=True, exist_ok=True)
        mode = resolve_wandb_mode(wandb_mode)
        if mode != "disabled":
            try:
                import wandb
                self._wandb = wandb.init(project=project, name=self.run_dir.name, config=config, mode=mode,
                                         dir=str(self.run_dir), resume="allow", id=_run_id(self.run_dir))
            except Exception as error:  # a tracker must never stop training
                log.warning("wandb unavailable (%s); logging to files only", error)

    def _append(self, path: Path, record: dict) -> None:
        with path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def scalars(self, kind: str, values: dict, step: int) -> None:
        """Numbers such as loss, grad norm, LR; ``kind`` is ``train`` or ``eval/<split>``."""
        if not self.active:
            return
        self._append(self.files.history, {"kind": kind, "step": step, "time": time.time(), **values})
        if self._wandb is not None:
            self._wandb.log({f"{kind}/{k}": v for k, v in values.items() if isinstance(v, (int, float))}, step=step)

    def table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        """A text table, e.g. target / prediction / CER / WER samples."""
        if not self.active:
            return
        self._append(self.files.samples, {"name": name, "step": step, "rows": [dict(zip(columns, r)) for r in rows]})
        if self._wandb is not None:
            import wandb
            self._wandb.log({name: wandb.Table(columns=columns, data=rows)}, step=step)

    def image(self, name: str, figure, step: int) -> None:
        """A matplotlib figure, saved as PNG and sent to wandb."""
        if not self.active:
            return
        path = self.files.media_file(name, step, "png")
        figure.savefig(path, dpi=80, bbox_inches="tight")
        if self._wandb is not None:
            import wandb
            self._wandb.log({name: wandb.Image(str(path))}, step=step)

    def audio(self, name: str, wave: np.ndarray, sample_rate: int, step: int, caption: str = "") -> None:
        if not self.active:
            return
        try:
            import soundfile
        except ImportError:  # a bare GPU machine: the audio sample is the one thing lost
            log.warning("soundfile is not installed; %s not written", name)
            return
        path = self.files.media_file(name, step, "wav")
        soundfile.write(path, np.asarray(wave, dtype=np.float32), sample_rate)
        if self._wandb is not None:
            import wandb
            self._wandb.log({name: wandb.Audio(str(path), sample_rate=sample_rate, caption=caption)}, step=step)

    def finish(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _run_id(run_dir: Path) -> str:
    """A stable wandb id per run folder, so a resumed run continues the same wandb run."""
    id_file = RunDir(run_dir).wandb_id
    if not id_file.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        id_file.write_text(f"{run_dir.name}-{int(time.time())}")
    return id_file.read_text().strip()


def read_jsonl(path: Path) -> list[dict]:
    """Records of a ``history.jsonl`` or ``samples.jsonl`` file (missing file -> empty).

    A line that is not a JSON object (the last line of a run killed mid-write) is skipped with a warning.
    """
    if not Path(path).exists():
        return []
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            record = line
        if isinstance(record, dict):
            records.append(record)
        elif record is not None:
            log.warning("%s line %d skipped: not a JSON record", path, number)
    return records
