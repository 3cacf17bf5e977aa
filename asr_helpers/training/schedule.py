"""The one-cycle learning-rate shape as a function of training progress in [0, 1].

Progress is the larger of the step fraction and the time-budget fraction, so a run that will
hit its wall-clock budget (a Kaggle session, the CPU demo) still warms up and anneals fully
instead of being cut off at a high learning rate.
"""
from __future__ import annotations

import math


def one_cycle(progress: float, peak: float, warmup: float = 0.15, start_div: float = 25.0,
              final_div: float = 1e3) -> float:
    """Cosine warm-up from ``peak/start_div`` to ``peak``, then cosine decay to ``peak/final_div``."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        low, high, t = peak / start_div, peak, progress / warmup
    else:
        low, high, t = peak, peak / final_div, (progress - warmup) / max(1.0 - warmup, 1e-9)
    return high + (low - high) * (1 + math.cos(math.pi * t)) / 2


def session_progress(step: int, total_steps: int, start_progress: float, elapsed: float,
                     budget: float | None) -> float:
    """Training progress: steps done, or the session's share of its time budget if that is ahead.

    ``start_progress`` is the progress when this session began (0 for a new run), so a resumed
    run squeezes the rest of the schedule into the new session's budget.
    """
    by_steps = step / max(total_steps, 1)
    if not budget:
        return by_steps
    return max(by_steps, start_progress + (1 - start_progress) * min(elapsed / budget, 1.0))
