"""Throughput benchmarks (``python -m asr_helpers bench train|data|decode``).

Each prints one JSON line. ``train`` measures audio-seconds trained per wall second on in-memory
audio with LibriSpeech-like durations, so only the training pipeline is timed; with
``--compare-baseline`` it alternates with the straightforward way (features per item on the
CPU, random batches of a fixed size, fp32, packed RNNs, default DataLoader) and reports the ratio.
"""
from __future__ import annotations

import math
import random
import time

import torch
from torch.utils.data import DataLoader

from asr_helpers.evaluation import autocast_context, ctc_loss
from asr_helpers.features import LogMelFeatures
from asr_helpers.model import DeepSpeech2, model_config
from asr_helpers.dataset import LengthBucketSampler
from asr_helpers.training import resolve_device, resolve_precision

SAMPLE_RATE = 16000
CHARS_PER_SECOND = 14.0
# Dense tensor-core peak in TFLOP/s (fp16/bf16) for the achieved-fraction figure.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "T4": 65.0, "P100": 18.7, "V100": 125.0}


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


def _step(model, optimizer, scaler, feats, lengths, targets, target_lengths, device, precision) -> None:
    with autocast_context(device, precision):
        log_probs, out_lengths = model(feats, lengths)
    loss = ctc_loss(log_probs, out_lengths, targets, target_lengths, blank=0)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    scaler.step(optimizer)
    scaler.update()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ours(work: _Workload, model_name: str, device, precision, batch_seconds: float, seconds: float) -> dict:
    config = model_config(model_name, 29, rnn_mode="packed" if device.type == "cuda" else "masked")
    model, features = DeepSpeech2(config).to(device).train(), LogMelFeatures(config.n_mels).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    sampler = LengthBucketSampler(work.seconds, batch_seconds, seed=0)
    sampler.set_epoch(1)
    batches = [work.collate(b) for b in sampler]
    audio, steps, started, flops = 0.0, 0, None, None
    for i, (waves, lengths, targets, target_lengths) in enumerate(batches * 1000):
        waves, lengths = waves.to(device, non_blocking=True), lengths.to(device)
        feats, frame_lengths = features(waves, lengths)
        _step(model, optimizer, scaler, feats, frame_lengths, targets.to(device), target_lengths.to(device), device, precision)
        if i == 0:  # the first step pays one-off allocation costs
            _sync(device)
            started = time.perf_counter()
        else:
            audio += float(lengths.sum()) / SAMPLE_RATE
            steps += 1
            if time.perf_counter() - started > seconds:
                break
    _sync(device)
    elapsed = time.perf_counter() - started
    if device.type == "cuda":
        flops = _flops_per_audio_second(model, features, batches[0], device, precision)
    return {"audio_sec_per_sec": audio / elapsed, "step_time": elapsed / max(steps, 1), "steps": steps,
            "padding_fraction": sampler.padding_fraction(), "batches_per_epoch": len(batches),
            "mean_batch_size": len(work.seconds) / len(batches), "parameters": model.parameter_count(),
            "flops_per_audio_second": flops}


def _flops_per_audio_second(model, features, batch, device, precision) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    waves, lengths, targets, target_lengths = batch
    feats, frame_lengths = features(waves.to(device), lengths.to(device))
    with FlopCounterMode(display=False) as counter:
        with autocast_context(device, precision):
            log_probs, out_lengths = model(feats, frame_lengths)
        ctc_loss(log_probs, out_lengths, targets.to(device), target_lengths.to(device), 0).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / (float(lengths.sum()) / SAMPLE_RATE)


class _PerItemFeatures(torch.utils.data.Dataset):
    """The template way: log-mel computed per utterance on the CPU inside the Dataset."""

    def __init__(self, work: _Workload, n_mels: int):
        self.work, self.features = work, LogMelFeatures(n_mels)

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


def _baseline(work: _Workload, model_name: str, device, batch_size: int, seconds: float) -> dict:
    config = model_config(model_name, 29, rnn_mode="packed")
    model = DeepSpeech2(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    loader = DataLoader(_PerItemFeatures(work, config.n_mels), batch_size=batch_size, shuffle=True,
                        collate_fn=_pad_features, generator=torch.Generator().manual_seed(0))
    audio, steps, started, real, padded = 0.0, 0, None, 0, 0
    for i, (feats, lengths, targets, target_lengths) in enumerate(x for _ in range(1000) for x in loader):
        _step(model, optimizer, scaler, feats.to(device), lengths.to(device), targets.to(device),
              target_lengths.to(device), device, "fp32")
        real, padded = real + int(lengths.sum()), padded + len(lengths) * int(lengths.max())
        if i == 0:
            _sync(device)
            started = time.perf_counter()
        else:
            audio += float(lengths.sum() - len(lengths)) * 0.01
            steps += 1
            if time.perf_counter() - started > seconds:
                break
    _sync(device)
    elapsed = time.perf_counter() - started
    return {"audio_sec_per_sec": audio / elapsed, "step_time": elapsed / max(steps, 1), "steps": steps,
            "padding_fraction": 1 - real / padded, "batch_size": batch_size}


def bench_train(model: str = "small", seconds: float = 20.0, device: str = "auto", precision: str = "auto",
                batch_seconds: float = 160.0, compare_baseline: bool = False, utterances: int = 200) -> dict:
    """Training throughput of the workbook pipeline (and of the baseline, alternating)."""
    torch.manual_seed(0)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    work = _Workload(utterances, 29)
    rounds = 2 if compare_baseline else 1
    ours, base = [], []
    for _ in range(rounds):
        ours.append(_ours(work, model, dev, prec, batch_seconds, seconds / rounds))
        if compare_baseline:
            batch_size = max(1, round(ours[-1]["mean_batch_size"]))
            base.append(_baseline(work, model, dev, batch_size, seconds / rounds))
    result = dict(ours[-1], benchmark="train", model=model, device=str(dev), precision=prec,
                  batch_seconds=batch_seconds, audio_sec_per_sec=sum(r["audio_sec_per_sec"] for r in ours) / rounds)
    if dev.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(dev)
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in result["gpu"]), None)
        if peak and result["flops_per_audio_second"]:
            result["fraction_of_peak"] = result["flops_per_audio_second"] * result["audio_sec_per_sec"] / (peak * 1e12)
    if compare_baseline:
        baseline = sum(r["audio_sec_per_sec"] for r in base) / rounds
        result.update(baseline_audio_sec_per_sec=baseline, baseline_padding_fraction=base[-1]["padding_fraction"],
                      baseline_batch_size=base[-1]["batch_size"], speedup_vs_baseline=result["audio_sec_per_sec"] / baseline)
    return result


def bench_data(workers: int = 2, seconds: float = 20.0, augment: tuple[str, ...] = ("none", "light", "full"),
               synth_minutes: float = 20.0, batch_seconds: float = 160.0) -> dict:
    """Audio-seconds per second the DataLoader delivers (read FLAC, resample, augment, collate)."""
    from asr_helpers.augment import WaveAugment
    from asr_helpers.corpora import prepare_corpus
    from asr_helpers.dataset import SpeechDataset, collate
    from asr_helpers.manifest import load_splits
    from asr_helpers.text import CharTokenizer
    root = prepare_corpus("synthetic", ["train-clean-100"], synth_minutes=synth_minutes)
    utterances = load_splits(root, ["train-clean-100"], max_seconds=batch_seconds)
    result = {"benchmark": "data", "workers": workers, "utterances": len(utterances)}
    for preset in augment:
        dataset = SpeechDataset(utterances, CharTokenizer(), WaveAugment.from_config(preset))
        sampler = LengthBucketSampler([u.seconds for u in utterances], batch_seconds, seed=0)
        sampler.set_epoch(1)
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                            prefetch_factor=4 if workers else None, persistent_workers=workers > 0)
        audio, epoch, started = 0.0, 1, time.perf_counter()
        while time.perf_counter() - started < seconds:
            epoch += 1
            sampler.set_epoch(epoch)  # a new epoch: the sampler resumes from its position otherwise
            for batch in loader:
                audio += batch.audio_seconds
                if time.perf_counter() - started > seconds:
                    break
        result[f"audio_sec_per_sec_{preset}"] = audio / (time.perf_counter() - started)
    return result


def run(what: str, args) -> dict:
    """Dispatch for the CLI."""
    if what == "train":
        return bench_train(args.model, args.seconds, args.device, args.precision, args.batch_seconds,
                           args.compare_baseline)
    if what == "data":
        return bench_data(args.workers, args.seconds)
    from asr_helpers import paths
    from asr_helpers.lm import bench_lm_decoding
    return dict(bench_lm_decoding(paths.cache_dir() / "bench_lm"), benchmark="decode")
