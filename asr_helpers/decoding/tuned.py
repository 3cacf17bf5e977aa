"""Tuned decoding weights: one record per run, one layout for every decoder.

Notebook 04 tunes some decoders' weights on dev (which ones, and on which metric, the decoder
table says). Each result goes into ``tuned.json`` beside the checkpoint, keyed by decoder name::

    {"lm": {"weights": {"alpha": 0.5, "beta": 1.0}, "metric": "wer", "score": 0.29,
            "grid": [{"weights": {"alpha": 0.0, "beta": 0.0}, "score": 0.35}, ...]},
     "joint": {"weights": {"ctc_weight": 0.5}, "metric": "cer", ...}}

Exports carry the same dict. Runs written before this record (``lm_params.json``,
``joint_params.json``, ``fusion_params.json``, or an export holding those) still read.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from asr_helpers.decoding.decoders import spec

TUNED_FILE = "tuned.json"
LEGACY_FILES = {"lm": "lm_params.json", "joint": "joint_params.json", "joint+lm": "fusion_params.json"}


@dataclass(frozen=True)
class Tuned:
    """One decoder's weights chosen on dev (lowest ``score`` of ``metric``), with every grid point tried.

    A weight belongs to its decoder: ``joint``'s ``ctc_weight`` and ``joint+lm``'s are tuned apart,
    and neither is the training loss weight ``ctc_weight`` of ``TrainConfig``.
    """
    decoder: str
    weights: dict[str, float]
    metric: str
    score: float
    grid: list[dict] = field(default_factory=list)  # {"weights": {...}, "score": float} per point tried

    def __post_init__(self) -> None:
        missing = set(spec(self.decoder).tuned) - set(self.weights)
        if missing:
            raise ValueError(f"the tuned weights of {self.decoder!r} lack {', '.join(sorted(missing))}")

    def to_dict(self) -> dict:
        return {"weights": dict(self.weights), "metric": self.metric, "score": self.score, "grid": list(self.grid)}

    def settings(self) -> str:
        """The chosen weights as ``name=value`` pairs (``alpha=0.5 beta=1``)."""
        return " ".join(f"{name}={value:g}" for name, value in self.weights.items())

    @classmethod
    def from_dict(cls, decoder: str, state: dict) -> "Tuned":
        """A record entry; a malformed one is a ValueError naming the decoder."""
        try:
            weights = {str(k): float(v) for k, v in state["weights"].items()}
            metric, score, grid = str(state["metric"]), float(state["score"]), list(state.get("grid", []))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"the tuned weights of {decoder!r} are malformed ({error})") from None
        return cls(decoder, weights, metric, score, grid)


def _from_legacy(decoder: str, state: dict) -> Tuned:
    """An entry of the three files the record replaces, in the record's layout."""
    try:
        if decoder == "lm":
            grid = [{"weights": {"alpha": a, "beta": b}, "score": state["grid"][i][j]}
                    for i, a in enumerate(state["alphas"]) for j, b in enumerate(state["betas"])]
            return Tuned("lm", {"alpha": float(state["alpha"]), "beta": float(state["beta"])}, "wer",
                         float(state["wer"]), grid)
        if decoder == "joint":
            grid = [{"weights": {"ctc_weight": w}, "score": c} for w, c in zip(state["weights"], state["cers"])]
            return Tuned("joint", {"ctc_weight": float(state["ctc_weight"])}, "cer", float(state["cer"]), grid)
        grid = [{"weights": {k: p[k] for k in ("ctc_weight", "alpha", "beta")}, "score": p["cer"]}
                for p in state["points"]]
        weights = {k: float(state[k]) for k in ("ctc_weight", "alpha", "beta")}
        return Tuned("joint+lm", weights, "cer", float(state["cer"]), grid)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise ValueError(f"the tuned weights of {decoder!r} are malformed ({error})") from None


def record_from_state(state: dict) -> dict[str, Tuned]:
    """The record a dict holds: an export's ``tuned`` entry, or the three legacy entries an older export carried."""
    if isinstance(state.get("tuned"), dict):
        return {name: Tuned.from_dict(name, entry) for name, entry in state["tuned"].items()}
    return {name: _from_legacy(name, state[Path(file).stem])
            for name, file in LEGACY_FILES.items() if isinstance(state.get(Path(file).stem), dict)}


def _read_json(path: Path) -> dict:
    try:
        found = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(found, dict):
        raise ValueError(f"{path} holds no tuned weights (a JSON object was expected)")
    return found


def read_record(folder: Path) -> dict[str, Tuned]:
    """The tuned weights kept in a run folder: ``tuned.json``, with any legacy file filling a decoder it lacks.

    A malformed file is a one-line ValueError naming the file and the decoder.
    """
    folder = Path(folder)
    record = {}
    for name, file in LEGACY_FILES.items():
        if (folder / file).is_file():
            record[name] = _naming(folder / file, lambda: _from_legacy(name, _read_json(folder / file)))
    if (folder / TUNED_FILE).is_file():
        path = folder / TUNED_FILE
        record.update(_naming(path, lambda: record_from_state({"tuned": _read_json(path)})))
    return record


def _naming(path: Path, read):
    """``read()``, with a ValueError's message prefixed by the file it came from."""
    try:
        return read()
    except ValueError as error:
        message = str(error)
        raise ValueError(message if message.startswith(str(path)) else f"{path}: {message}") from None


def save_tuned(folder: Path, tuned: Tuned) -> Path:
    """Add (or replace) one decoder's entry in ``folder/tuned.json``; the other decoders' entries stay."""
    folder = Path(folder)
    path = folder / TUNED_FILE
    state = _read_json(path) if path.is_file() else {}
    state[tuned.decoder] = tuned.to_dict()
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(partial, path)
    return path
