"""The benchmark command (``python -m asr_helpers bench train|data|decode|transcribe|gpu-check``) and the
augmentation throughput that notebook 01 reports.

Each command prints one JSON line: ``train`` is ``bench_train``, ``data`` is ``bench_data``,
``decode`` is ``bench_decode``, ``gpu-check`` is ``gpu_check``; ``transcribe`` (``bench_transcribe``)
prints its table first.
"""
from __future__ import annotations

import math
import time

import torch

SAMPLE_RATE = 16000


def run(what: str, args) -> dict:
    """Dispatch for the CLI; each benchmark's module is imported when it runs."""
    if what == "train":
        from asr_helpers.tools.bench_train import bench_train
        return bench_train(args.model, args.seconds, args.device, args.precision, args.batch_seconds,
                           args.compare_baseline, rnn_type=args.rnn_type, time_stride=args.time_stride,
                           arch=args.arch)
    if what == "data":
        from asr_helpers.tools.bench_data import bench_data
        return bench_data(args.workers, args.seconds)
    if what == "transcribe":
        from asr_helpers.tools.bench_transcribe import bench_transcribe
        return bench_transcribe(args.checkpoint, args.utterances, args.lm, tuple(args.decoders), input_dir=args.input,
                                compare=args.compare, lm_engines=tuple(args.lm_engines),
                                librispeech_lengths=args.librispeech_lengths)
    if what == "stream":
        from asr_helpers.tools.bench_stream import bench_stream
        return bench_stream(args.checkpoint, args.seconds)
    if what == "gpu-check":
        from asr_helpers.tools.gpu_check import gpu_check
        return gpu_check(quick=args.quick, device=args.device)
    if args.checkpoint is not None:
        from asr_helpers.tools.bench_decode import bench_lm_engines
        if args.lm is None:
            raise ValueError("bench decode --checkpoint compares the LM engines: it needs --lm PATH")
        return bench_lm_engines(args.checkpoint, args.lm, args.lm_engines, args.splits, tune_on=args.tune_on)
    from asr_helpers import paths
    from asr_helpers.tools.bench_decode import bench_lm_decoding
    return dict(bench_lm_decoding(paths.cache_dir() / "bench_lm"), benchmark="decode")


def time_augment_throughput(seconds_of_audio: float, config: str | list[dict] = "full",
                            sample_rate: int = SAMPLE_RATE, utterance_seconds: float = 12.0) -> float:
    """Audio seconds augmented per wall second on one thread, as in one DataLoader worker.

    Uses random 12 s waves (LibriSpeech's mean utterance); the cost does not depend on content.
    Sets torch to one thread while it runs and restores the count afterwards.
    """
    from asr_helpers.data.augment import WaveAugment
    if seconds_of_audio <= 0 or utterance_seconds <= 0:
        raise ValueError("seconds_of_audio and utterance_seconds must be positive")
    augment = WaveAugment.from_config(config, sample_rate)
    generator = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(int(utterance_seconds * sample_rate), generator=generator)
    count = max(1, math.ceil(seconds_of_audio / utterance_seconds))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        for _ in range(count):
            augment(wave, generator)
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    return count * utterance_seconds / elapsed
