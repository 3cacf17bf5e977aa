"""Data-loading throughput (``python -m asr_helpers bench data``): what the training DataLoader delivers.

``loader_throughput`` is also the GPU check's loader part.
"""
from __future__ import annotations

import time

from torch.utils.data import DataLoader

from asr_helpers.data.dataset import LengthBucketSampler


def loader_throughput(utterances: list, workers: int, seconds: float, augment: str = "light",
                      batch_seconds: float = 160.0) -> float:
    """Audio-seconds per second the training DataLoader delivers (read, resample, augment, collate)."""
    from asr_helpers.data.augment import WaveAugment
    from asr_helpers.data.dataset import SpeechDataset, collate
    from asr_helpers.data.text import CharTokenizer
    dataset = SpeechDataset(utterances, CharTokenizer(), WaveAugment.from_config(augment))
    sampler = LengthBucketSampler([u.seconds for u in utterances], batch_seconds, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                        prefetch_factor=4 if workers else None, persistent_workers=workers > 0)
    audio, epoch, started = 0.0, 1, time.perf_counter()
    while time.perf_counter() - started < seconds:
        epoch += 1
        sampler.set_epoch(epoch)  # a new epoch: the sampler resumes from its position otherwise
        for batch in loader:
            audio += batch.audio_seconds if batch is not None else 0.0
            if time.perf_counter() - started > seconds:
                break
    return audio / (time.perf_counter() - started)


def bench_data(workers: int = 2, seconds: float = 20.0, augment: tuple[str, ...] = ("none", "light", "full"),
               synth_minutes: float = 20.0, batch_seconds: float = 160.0) -> dict:
    """``loader_throughput`` on the offline corpus for each augmentation preset."""
    from asr_helpers.data.corpora import prepare_corpus
    from asr_helpers.data.manifest import load_splits
    root = prepare_corpus("synthetic", ["train-clean-100"], synth_minutes=synth_minutes)
    utterances = load_splits(root, ["train-clean-100"], max_seconds=batch_seconds)
    result = {"benchmark": "data", "workers": workers, "utterances": len(utterances)}
    for preset in augment:
        result[f"audio_sec_per_sec_{preset}"] = loader_throughput(utterances, workers, seconds, preset, batch_seconds)
    return result
