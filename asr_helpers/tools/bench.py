"""The benchmark command (``python -m asr_helpers bench train|data|decode|transcribe|gpu-check``), the
transcribe benchmark and the augmentation throughput that notebook 01 reports.

Each command prints one JSON line: ``train`` is ``bench_train``, ``data`` is ``bench_data``,
``decode`` is ``bench_decode`` and ``gpu-check`` is ``gpu_check``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

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
        return bench_transcribe(args.checkpoint, args.utterances, args.lm, tuple(args.decoders))
    if what == "stream":
        from asr_helpers.tools.bench_stream import bench_stream
        return bench_stream(args.checkpoint, args.seconds)
    if what == "gpu-check":
        from asr_helpers.tools.gpu_check import gpu_check
        return gpu_check(quick=args.quick, device=args.device)
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


def bench_transcribe(checkpoint: Path, utterances: int = 500, lm_path: Path | None = None,
                     decoders: tuple[str, ...] = ("greedy", "beam", "lm"), synth_minutes: float = 20.0,
                     pool_size: int = 2, beam_width: int = 32) -> dict:
    """Files per second of ``transcribe``, batched (its default) and one file at a time, per decoder.

    The attention decoders (a ``model: las`` checkpoint) search one utterance at a time anyway,
    so they are timed batched only. The files are ``utterances`` copies of the offline corpus's test-clean and test-other
    utterances (a small corpus repeats them), so lengths are those of real test audio. Each
    timing covers the whole command: model (and LM) loading, reading, features, model, decoding.
    """
    import shutil
    import tempfile
    from pathlib import Path

    from asr_helpers.data.corpora import prepare_corpus
    from asr_helpers.decoding.decoders import spec
    from asr_helpers.inference.transcribe import transcribe
    from asr_helpers.decoding.lm import corpus_language_model
    from asr_helpers.data.manifest import load_splits
    if checkpoint is None:
        raise ValueError("bench transcribe needs --checkpoint PATH (a model to time)")
    splits = ["test-clean", "test-other"]
    pool = load_splits(prepare_corpus("synthetic", splits, synth_minutes=synth_minutes), splits)
    picked = [pool[i % len(pool)] for i in range(utterances)]
    result = {"benchmark": "transcribe", "utterances": utterances, "distinct": min(len(pool), utterances),
              "audio_seconds": round(sum(u.seconds for u in picked), 1), "pool_size": pool_size}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for i, utterance in enumerate(picked):
            shutil.copy(utterance.path, folder / f"{i:04d}-{utterance.id}.flac")
        for decoder in decoders:
            lm = (lm_path or corpus_language_model("synthetic")) if spec(decoder).needs_lm else None
            modes = (("batched", 120.0),) if spec(decoder).head == "attention" else (("batched", 120.0), ("one_at_a_time", 0.0))
            for mode, batch_seconds in modes:
                started = time.perf_counter()
                report = transcribe(checkpoint, [folder], Path(tmp) / f"{decoder}-{mode}", decoder=decoder,
                                    lm_path=lm, beam_width=beam_width, batch_seconds=batch_seconds,
                                    pool_size=pool_size)
                result[f"{decoder}_{mode}_utt_per_sec"] = len(report.written) / (time.perf_counter() - started)
            if len(modes) == 2:
                result[f"{decoder}_batching_speedup"] = (result[f"{decoder}_batched_utt_per_sec"]
                                                         / result[f"{decoder}_one_at_a_time_utt_per_sec"])
    return result
