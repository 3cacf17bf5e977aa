"""From measured GPU figures to a student's week: memory budgets and hours per epoch on Kaggle/Colab GPUs.

Everything here is arithmetic on the GPU check's measurements plus published constants (data-
sheet peaks, LibriSpeech split sizes); what it returns are estimates, and PERFORMANCE.md says so.
"""
from __future__ import annotations

T4_USABLE_GIB = 15.0   # a 16 GB T4 shows about 15 GiB to PyTorch
HEADROOM = 0.15        # kept free for fragmentation, longer utterances and cuDNN workspaces
TRAIN_HOURS = {"clean_460h": 100.6 + 363.6, "all_960h": 960.9}  # LibriSpeech train-clean-100 + 360; all three
# Student GPUs: (count, data-sheet fp16 TFLOP/s each); a second GPU under DDP is counted at 90 %.
STUDENT_GPUS = {"kaggle_t4x2": (2, 65.0), "kaggle_p100": (1, 18.7), "colab_t4": (1, 65.0)}
WEEKLY_GPU_HOURS = 30.0


def fit_batch_seconds(points: dict[float, float], budget_gib: float) -> float | None:
    """The batch_seconds whose peak memory reaches ``budget_gib``, from a straight line through ``points``."""
    if len(points) < 2:
        return None
    xs, ys = list(points), list(points.values())
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    if slope <= 0:
        return None
    return (budget_gib - (mean_y - slope * mean_x)) / slope


def student_gpu_estimates(flops_per_audio_second: float, mfu: float) -> dict:
    """Audio-s/s, hours per epoch and epochs in 30 GPU-hours on each student GPU, at the given MFU.

    An estimate: it assumes the measured MFU carries over to another GPU and ignores the data
    loader, which on Kaggle's 4 CPU cores may be the tighter limit.
    """
    estimates = {}
    for name, (count, peak) in STUDENT_GPUS.items():
        rate = mfu * peak * 1e12 * count * (1 - 0.1 * (count - 1)) / flops_per_audio_second
        hours = {split: round(h / rate, 2) for split, h in TRAIN_HOURS.items()}  # audio hours / (audio-s per s)
        estimates[name] = {"audio_sec_per_sec": round(rate, 1), "hours_per_epoch": hours,
                           "epochs_in_30h": {split: round(WEEKLY_GPU_HOURS / h, 1) for split, h in hours.items()}}
    return estimates
