"""Where things live: repo root, data, artifacts and caches, independent of the cwd.

Environment overrides (set by the Kaggle/Colab setup or by a user):
``ASR_DATA_DIR``, ``ASR_ARTIFACTS_DIR``, ``ASR_CACHE_DIR``.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DATA = Path(__file__).resolve().parent / "data"


def _dir(env: str, default: Path) -> Path:
    path = Path(os.environ.get(env, default)).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Corpora (downloaded LibriSpeech, the synthetic corpus)."""
    return _dir("ASR_DATA_DIR", REPO_ROOT / "data")


def artifacts_dir() -> Path:
    """Outputs of runs: executed notebooks, checkpoints, metrics, figures, LMs."""
    return _dir("ASR_ARTIFACTS_DIR", REPO_ROOT / "artifacts")


def cache_dir() -> Path:
    """Derived data that can be rebuilt (manifests, cached log-probs)."""
    return _dir("ASR_CACHE_DIR", artifacts_dir() / "cache")


def runs_dir() -> Path:
    return _dir("ASR_RUNS_DIR", artifacts_dir() / "runs")


def tools_dir() -> Path:
    """Compiled helper programs (KenLM's lmplz and build_binary)."""
    return _dir("ASR_TOOLS_DIR", REPO_ROOT / ".tools")
