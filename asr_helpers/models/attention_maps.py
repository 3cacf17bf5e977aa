"""Attention maps a student can read, and one number saying whether attention has locked on.

A trained attention decoder looks at a narrow, advancing window of frames for each output
symbol: its map (output symbols x encoder frames) is close to a diagonal staircase. Early in
training, or when it fails, the mass is smeared over the whole utterance. ``lock_on`` measures
that: the share of attention mass within ``band`` frames of the best monotonic path (the path
through the map, one frame per symbol, never going back, that collects the most weight), times
how often that path moves forward (attention parked on one column for every symbol is not locked on).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _as_array(weights) -> np.ndarray:
    if hasattr(weights, "detach"):
        weights = weights.detach().float().cpu().numpy()
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or 0 in weights.shape:
        raise ValueError(f"expected one attention map [symbols, frames], got shape {weights.shape}")
    return weights


def monotonic_path(weights) -> np.ndarray:
    """For each output symbol, the frame of the non-decreasing path that collects the most weight."""
    weights = _as_array(weights)
    symbols, frames = weights.shape
    best = weights[0].copy()
    came_from = np.zeros((symbols, frames), dtype=np.int64)
    for u in range(1, symbols):
        running_best = np.maximum.accumulate(best)
        # index of the best earlier frame t' <= t (the latest one on ties)
        where = np.arange(frames)
        where = np.where(best == running_best, where, 0)
        came_from[u] = np.maximum.accumulate(where)
        best = running_best + weights[u]
    path = np.zeros(symbols, dtype=np.int64)
    path[-1] = int(np.argmax(best))
    for u in range(symbols - 1, 0, -1):
        path[u - 1] = came_from[u, path[u]]
    return path


def lock_on(weights, band: int = 3) -> float:
    """Share (0..1) of the attention mass within ``band`` frames of the best monotonic path, times
    the share of symbols at which that path moves forward.

    A staircase gives 1. Uniform attention over ``T`` frames gives about ``(2 band + 1) / T``;
    attention stuck on the same frames for every symbol (a failure that a path allowed to stand
    still fits perfectly) gives about 0, because that path never moves.
    """
    weights = _as_array(weights)
    path = monotonic_path(weights)
    frames = np.arange(weights.shape[1])[None, :]
    near = np.abs(frames - path[:, None]) <= band
    total = weights.sum()
    concentration = float((weights * near).sum() / total) if total > 0 else 0.0
    moving = float(np.mean(np.diff(path) > 0)) if len(path) > 1 else 1.0
    return concentration * moving


def mean_lock_on(maps: Sequence, band: int = 3) -> float:
    """``lock_on`` averaged over utterances (each map cut to its own symbols and frames beforehand)."""
    if not maps:
        raise ValueError("no attention maps to score")
    return float(np.mean([lock_on(m, band) for m in maps]))


def attention_figure(weights, symbols: Sequence[str], title: str = ""):
    """One utterance's map: encoder frames across, output symbols down (labelled), brighter = more attention."""
    import matplotlib.pyplot as plt  # here, so the training core can score lock-on without matplotlib
    weights = _as_array(weights)
    if len(symbols) != weights.shape[0]:
        raise ValueError(f"{len(symbols)} symbol labels for a map of {weights.shape[0]} rows")
    figure, ax = plt.subplots(figsize=(10, min(8.0, max(2.5, 0.16 * len(symbols) + 1))))
    ax.imshow(weights, origin="upper", aspect="auto", cmap="viridis", interpolation="nearest", vmin=0)
    every = max(1, -(-len(symbols) // 45))  # at most ~45 labels, so a long utterance stays readable
    rows = np.arange(0, len(symbols), every)
    ax.set_yticks(rows, [symbols[r] if symbols[r].strip() else "\u2423" for r in rows], fontsize=7)
    ax.set(xlabel="encoder frame", ylabel="output symbol")
    ax.set_title(title[:90], fontsize=9)
    figure.tight_layout()
    plt.close(figure)
    return figure
