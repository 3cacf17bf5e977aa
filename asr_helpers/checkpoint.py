"""Self-describing checkpoints, written atomically.

A checkpoint carries the model and tokenizer settings next to the weights, so decoding and
inference need nothing but the file; it also carries optimizer, scheduler, scaler, sampler
position and RNG states, so a resumed run continues exactly where it stopped. Writes go to a
temporary file that is renamed, so a kill mid-write never leaves a corrupt ``last.pt``.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from asr_helpers.model import DeepSpeech2, config_from_dict
from asr_helpers.text import tokenizer_from_dict


def save_atomic(state: dict, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:
        raise ValueError(f"{path} is not a readable checkpoint ({error})") from None


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[DeepSpeech2, object, dict]:
    """(model in eval mode, tokenizer, training config) from a checkpoint file."""
    state = load_checkpoint(path, map_location=device)
    model = DeepSpeech2(config_from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), tokenizer_from_dict(state["tokenizer"]), state.get("train_config", {})
