"""Throughput benchmarks (``python -m asr_helpers bench train|data|decode|gpu-check``).

Each prints one JSON line. ``train`` measures audio-seconds trained per wall second on in-memory
audio with LibriSpeech-like durations, so only the training pipeline is timed; with
``--compare-baseline`` it alternates with the straightforward way (features per item on the
CPU, random batches of a fixed size, fp32, packed RNNs, default DataLoader) and reports the ratio.
"""
from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import replace
from typing import Iterator

import torch
from torch.utils.data import DataLoader

from asr_helpers.data.dataset import LengthBucketSampler
from asr_helpers.training.evaluation import autocast_context
from asr_helpers.data.features import LogMelFeatures
from asr_helpers.models.deepspeech2 import DeepSpeech2, ModelConfig, model_config, training_flops_per_audio_second
from asr_helpers.models.deepspeech2 import ctc_loss
from asr_helpers.runtime import resolve_device, resolve_precision

SAMPLE_RATE = 16000
CHARS_PER_SECOND = 14.0
# Dense tensor-core peak in TFLOP/s (fp16/bf16, vendor data sheets) for the model-FLOPs utilisation.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "T4": 65.0, "P100": 18.7, "V100": 125.0}


def peak_tflops(gpu_name: str, precision: str) -> float | None:
    """The data-sheet half-precision peak of a GPU named like ``NVIDIA H200``; None if unknown or fp32."""
    if precision not in ("fp16", "bf16"):
        return None
    return next((v for k, v in PEAK_TFLOPS.items() if k in gpu_name), None)


def with_time_stride(config: ModelConfig, stride: int) -> ModelConfig:
    """The same model with the first convolution's time stride set so the whole stack strides ``stride``."""
    rest = config.time_stride // config.conv_strides[0][1]
    if stride < 1 or stride % rest:
        raise ValueError(f"time stride {stride} is not a multiple of the later layers' stride {rest}")
    strides = ((config.conv_strides[0][0], stride // rest),) + config.conv_strides[1:]
    return replace(config, conv_strides=strides)


def librispeech_like_durations(n: int, seed: int = 0) -> list[float]:
    """Durations shaped like train-clean-100: most 10-17 s, a tail of short ones."""
    rng = random.Random(seed)
    return [rng.uniform(1.5, 10.0) if rng.random() < 0.2 else min(max(rng.gauss(14.0, 2.2), 1.5), 17.0)
            for _ in range(n)]


class _Workload:
    """In-memory waves and targets, so the benchmark times training, not disk or TTS."""

    def __init__(self, n: int, vocab: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.seconds = librispeech_like_durations(n, seed)
        self.waves = [0.1 * torch.randn(int(s * SAMPLE_RATE), generator=generator) for s in self.seconds]
        self.targets = [torch.randint(1, vocab, (max(1, int(s * CHARS_PER_SECOND * 0.8)),), generator=generator)
                        for s in self.seconds]

    def collate(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(self.waves[i]) for i in indices])
        waves = torch.zeros(len(indices), int(lengths.max()))
        for row, i in enumerate(indices):
            waves[row, : lengths[row]] = self.waves[i]
        targets = [self.targets[i] for i in indices]
        return waves, lengths, torch.cat(targets), torch.tensor([len(t) for t in targets])


def ctc_train_step(model, optimizer, scaler, feats, lengths, targets, target_lengths, device, precision) -> tuple[torch.Tensor, torch.Tensor]:
    """One CTC step with AMP and clipping, as the Trainer takes it; returns (loss, gradient norm)."""
    with autocast_context(device, precision):
        log_probs, out_lengths = model(feats, lengths)
    loss = ctc_loss(log_probs, out_lengths, targets, target_lengths, blank=0)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), grad_norm


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so a timer read afterwards includes it (no-op on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Side:
    """One side of the comparison: a stream of batches, a training step, and its timing totals."""

    def __init__(self, device, stream: Iterator):
        self.device, self._stream = device, stream
        self.audio, self.steps, self.elapsed = 0.0, 0, 0.0
        self.train_step(next(self._stream))  # the first step pays one-off allocation costs
        synchronize(device)

    def train_step(self, batch: tuple) -> float:
        raise NotImplementedError

    def run(self, seconds: float) -> None:
        """Train for at most ``seconds``: the loop stops before a step that would overrun them
        (judged by the mean step so far), so the command's wall time stays close to the time asked for."""
        audio, steps, started = 0.0, 0, time.perf_counter()
        for batch in self._stream:
            audio += self.train_step(batch)
            steps += 1
            elapsed = time.perf_counter() - started
            if elapsed * (steps + 1) / steps > seconds:
                break
        synchronize(self.device)
        self.audio, self.steps = self.audio + audio, self.steps + steps
        self.elapsed += time.perf_counter() - started

    @property
    def audio_sec_per_sec(self) -> float:
        return self.audio / self.elapsed


class _Ours(_Side):
    """The workbook pipeline: length-bucketed batches, features on the device, AMP, masked RNNs on CPU."""

    def __init__(self, work: _Workload, config: ModelConfig, device, precision, batch_seconds: float):
        config = replace(config, rnn_mode="packed" if device.type == "cuda" else "masked")
        self.model, self.features = DeepSpeech2(config).to(device).train(), LogMelFeatures.for_model(config).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.sampler = LengthBucketSampler(work.seconds, batch_seconds, seed=0)
        self.sampler.set_epoch(1)
        self.batches = [work.collate(b) for b in self.sampler]
        self.mean_batch_size = len(work.seconds) / len(self.batches)
        self.precision = precision
        super().__init__(device, itertools.cycle(self.batches))

    def train_step(self, batch: tuple) -> float:
        waves, lengths, targets, target_lengths = batch
        feats, frame_lengths = self.features(waves.to(self.device, non_blocking=True), lengths.to(self.device))
        ctc_train_step(self.model, self.optimizer, self.scaler, feats, frame_lengths, targets.to(self.device),
              target_lengths.to(self.device), self.device, self.precision)
        return float(lengths.sum()) / SAMPLE_RATE

    def summary(self) -> dict:
        return {"padding_fraction": self.sampler.padding_fraction(), "batches_per_epoch": len(self.batches),
                "mean_batch_size": self.mean_batch_size, "parameters": self.model.parameter_count(),
                "flops_per_audio_second": training_flops_per_audio_second(self.model.config)}


class _PerItemFeatures(torch.utils.data.Dataset):
    """The template way: log-mel computed per utterance on the CPU inside the Dataset."""

    def __init__(self, work: _Workload, config):
        self.work, self.features = work, LogMelFeatures.for_model(config)

    def __len__(self) -> int:
        return len(self.work.waves)

    def __getitem__(self, i: int):
        wave = self.work.waves[i]
        feats, _ = self.features(wave[None], torch.tensor([len(wave)]))
        return feats[0], self.work.targets[i]


def _pad_features(items):
    lengths = torch.tensor([f.shape[-1] for f, _ in items])
    feats = torch.zeros(len(items), items[0][0].shape[0], int(lengths.max()))
    for row, (f, _) in enumerate(items):
        feats[row, :, : f.shape[-1]] = f
    targets = [t for _, t in items]
    return feats, lengths, torch.cat(targets), torch.tensor([len(t) for t in targets])


class _Baseline(_Side):
    """The template loop: per-item CPU features in a default DataLoader, random batches, fp32, packed RNNs."""

    def __init__(self, work: _Workload, config: ModelConfig, device, batch_size: int):
        config = replace(config, rnn_mode="packed")
        self.model = DeepSpeech2(config).to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.scaler = torch.amp.GradScaler(device.type, enabled=False)
        loader = DataLoader(_PerItemFeatures(work, config), batch_size=batch_size, shuffle=True,
                            collate_fn=_pad_features, generator=torch.Generator().manual_seed(0))
        self.batch_size, self.real, self.padded = batch_size, 0, 0
        super().__init__(device, (batch for _ in itertools.count() for batch in loader))

    def train_step(self, batch: tuple) -> float:
        feats, lengths, targets, target_lengths = batch
        ctc_train_step(self.model, self.optimizer, self.scaler, feats.to(self.device), lengths.to(self.device),
              targets.to(self.device), target_lengths.to(self.device), self.device, "fp32")
        self.real, self.padded = self.real + int(lengths.sum()), self.padded + len(lengths) * int(lengths.max())
        return float(lengths.sum() - len(lengths)) * 0.01  # frames of 10 ms, less the extra edge frame


def bench_train(model: str = "small", seconds: float = 20.0, device: str = "auto", precision: str = "auto",
                batch_seconds: float = 160.0, compare_baseline: bool = False, utterances: int = 200,
                rnn_type: str | None = None, time_stride: int | None = None) -> dict:
    """Training throughput of the workbook pipeline (and of the baseline, alternating).

    ``rnn_type`` overrides the preset's recurrent cell and ``time_stride`` its frame rate (output
    frames per second = 100 / stride); the baseline always uses the same model. ``mfu`` is the
    model-FLOPs utilisation against the GPU's data-sheet peak (None on CPU or an unknown GPU).
    """
    torch.manual_seed(0)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    config = model_config(model, 29)
    if rnn_type:
        config = replace(config, rnn_type=rnn_type)
    if time_stride:
        config = with_time_stride(config, time_stride)
    work = _Workload(utterances, 29)
    rounds = 2 if compare_baseline else 1
    sides = {"ours": _Ours(work, config, dev, prec, batch_seconds)}
    if compare_baseline:
        sides["baseline"] = _Baseline(work, config, dev, max(1, round(sides["ours"].mean_batch_size)))
    for _ in range(rounds):  # alternate, so a slow minute on a shared machine hits both sides
        for side in sides.values():
            side.run(seconds / rounds)
    ours = sides["ours"]
    result = dict(ours.summary(), benchmark="train", model=model, rnn_type=config.rnn_type, device=str(dev),
                  precision=prec, batch_seconds=batch_seconds, time_stride=config.time_stride,
                  audio_sec_per_sec=ours.audio_sec_per_sec, step_time=ours.elapsed / ours.steps, steps=ours.steps)
    result["achieved_tflops"] = result["flops_per_audio_second"] * ours.audio_sec_per_sec / 1e12
    result["gpu"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    peak = peak_tflops(result["gpu"], prec) if result["gpu"] else None
    result["mfu"] = result["achieved_tflops"] / peak if peak else None
    if compare_baseline:
        base = sides["baseline"]
        result.update(baseline_audio_sec_per_sec=base.audio_sec_per_sec,
                      baseline_padding_fraction=1 - base.real / base.padded, baseline_batch_size=base.batch_size,
                      speedup_vs_baseline=ours.audio_sec_per_sec / base.audio_sec_per_sec)
    return result


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


def run(what: str, args) -> dict:
    """Dispatch for the CLI."""
    if what == "train":
        return bench_train(args.model, args.seconds, args.device, args.precision, args.batch_seconds,
                           args.compare_baseline, rnn_type=args.rnn_type, time_stride=args.time_stride)
    if what == "data":
        return bench_data(args.workers, args.seconds)
    if what == "transcribe":
        return bench_transcribe(args.checkpoint, args.utterances, args.lm, tuple(args.decoders))
    if what == "gpu-check":
        from asr_helpers.tools.gpu_check import gpu_check
        return gpu_check(quick=args.quick, device=args.device)
    from asr_helpers import paths
    from asr_helpers.tools.bench_decode import bench_lm_decoding
    return dict(bench_lm_decoding(paths.cache_dir() / "bench_lm"), benchmark="decode")


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
    from asr_helpers.decoding.ctc import ATTENTION_DECODERS
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
            lm = (lm_path or corpus_language_model("synthetic")) if decoder in ("lm", "joint+lm") else None
            modes = (("batched", 120.0),) if decoder in ATTENTION_DECODERS else (("batched", 120.0), ("one_at_a_time", 0.0))
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
