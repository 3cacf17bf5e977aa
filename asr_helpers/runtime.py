"""Notebook start-up: where we run (local, Kaggle, Colab), seeds, versions and device."""
from __future__ import annotations

import os
import platform
import random
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: importing runtime stays cheap
    import torch


def environment() -> str:
    """``kaggle``, ``colab`` or ``local``."""
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") or Path("/kaggle/working").exists():
        return "kaggle"
    if os.environ.get("COLAB_RELEASE_TAG") or Path("/content").exists() and "google.colab" in _modules():
        return "colab"
    return "local"


def _modules() -> set[str]:
    import sys
    return set(sys.modules)


def _wandb_key_from_secrets(env: str) -> None:
    """Export a W&B key stored as a Kaggle secret or Colab user secret named WANDB_API_KEY."""
    if os.environ.get("WANDB_API_KEY"):
        return
    try:
        if env == "kaggle":
            from kaggle_secrets import UserSecretsClient
            os.environ["WANDB_API_KEY"] = UserSecretsClient().get_secret("WANDB_API_KEY")
        elif env == "colab":
            from google.colab import userdata
            os.environ["WANDB_API_KEY"] = userdata.get("WANDB_API_KEY")
    except Exception:  # no secret stored: W&B stays offline
        os.environ.pop("WANDB_API_KEY", None)


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch RNGs from one seed."""
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(requested: str) -> "torch.device":
    """``auto`` picks the GPU when one is visible; asking for a missing GPU is an error."""
    import torch
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but no GPU is visible")
    return torch.device(requested)


def resolve_precision(requested: str, device: "torch.device") -> str:
    """bf16 where the GPU supports it, fp16 (with loss scaling) on T4/P100, fp32 on CPU."""
    if requested != "auto":
        if device.type == "cpu" and requested == "fp16":
            raise ValueError("fp16 needs a GPU; use fp32 or bf16 on CPU")
        return requested
    if device.type != "cuda":
        return "fp32"
    import torch
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def setup(seed: int = 0) -> dict:
    """Seed everything, point artifacts at persistent storage on Kaggle, print versions and device."""
    import numpy as np
    import torch
    import torchaudio

    env = environment()
    if env == "kaggle":
        os.environ.setdefault("ASR_ARTIFACTS_DIR", "/kaggle/working/artifacts")
        os.environ.setdefault("ASR_DATA_DIR", "/kaggle/working/data")
    _wandb_key_from_secrets(env)
    seed_everything(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    info = {"environment": env, "python": platform.python_version(), "torch": torch.__version__,
            "torchaudio": torchaudio.__version__, "numpy": np.__version__, "device": device,
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
            "cpu_threads": torch.get_num_threads()}
    print(" | ".join(f"{k}: {v}" for k, v in info.items() if v not in ([], None)))
    return info
