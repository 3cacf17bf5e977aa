"""Training throughput (``python -m asr_helpers bench train``), through the Trainer's own step.

Audio-seconds trained per wall second on in-memory audio with LibriSpeech-like durations, so only
training is timed. Every batch goes through ``Trainer.train_step`` (forward, loss, backward,
clipping, the AMP scaler, the optimizer and its schedule), so any model of the registry can be
measured (``--arch``). With ``--compare-baseline`` it alternates with the straightforward way
(features per item on the CPU in a default DataLoader, random batches of a fixed size, fp32,
packed RNNs) through the same step, and reports the ratio.
"""
from __future__ import annotations

import itertools
import random
import time
from dataclasses import replace
from typing import Iterator

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from asr_helpers.data.dataset import Batch, LengthBucketSampler
from asr_helpers.data.text import CharTokenizer
from asr_helpers.models.deepspeech2 import ModelConfig, model_config, training_flops_per_audio_second
from asr_helpers.models.recognizer import SpeechModel
from asr_helpers.models.registry import build_model
from asr_helpers.runtime import resolve_device, resolve_precision
from asr_helpers.training.config import TrainConfig
from asr_helpers.training.distributed import Placement
from asr_helpers.training.loaders import TrainData
from asr_helpers.training.trainer import Trainer

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


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so a timer read afterwards includes it (no-op on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_trainer(model: SpeechModel, device: torch.device, precision: str, batches_per_epoch: int = 1) -> Trainer:
    """A Trainer around ``model`` whose ``train_step`` the caller feeds batches (``batches_per_epoch`` sizes the
    learning-rate schedule). Nothing is written: only ``fit`` makes the run folder, logs and saves.
    """
    config = TrainConfig(run_name="bench-train", precision=precision, wandb_mode="disabled", device=device.type)
    data = TrainData(model.tokenizer, train_set=None, sampler=range(batches_per_epoch), dev={})  # no loader
    return Trainer(config, data, model, Placement(device=device))


def bench_model(arch: str, model: str, rnn_mode: str, rnn_type: str | None = None,
                time_stride: int | None = None) -> SpeechModel:
    """Model ``arch`` of the registry at preset ``model`` for characters, its encoder's RNN cell and stride overridden."""
    tokenizer = CharTokenizer()
    encoder = {"rnn_type": rnn_type} if rnn_type else {}
    if time_stride:
        encoder["conv_strides"] = with_time_stride(model_config(model, tokenizer.vocab_size), time_stride).conv_strides
    return build_model(arch, model, tokenizer, rnn_mode=rnn_mode, encoder=encoder)


class _Workload:
    """In-memory waves and targets, so the benchmark times training, not disk or TTS."""

    def __init__(self, n: int, vocab: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.seconds = librispeech_like_durations(n, seed)
        self.waves = [0.1 * torch.randn(int(s * SAMPLE_RATE), generator=generator) for s in self.seconds]
        self.targets = [torch.randint(1, vocab, (max(1, int(s * CHARS_PER_SECOND * 0.8)),), generator=generator)
                        for s in self.seconds]

    def collate(self, indices: list[int]) -> Batch:
        lengths = torch.tensor([len(self.waves[i]) for i in indices])
        waves = torch.zeros(len(indices), int(lengths.max()))
        for row, i in enumerate(indices):
            waves[row, : lengths[row]] = self.waves[i]
        targets = [self.targets[i] for i in indices]
        return Batch(waves, lengths, torch.cat(targets), torch.tensor([len(t) for t in targets]),
                     [""] * len(indices), [str(i) for i in indices])


class _Side:
    """One side of the comparison: a Trainer, a stream of batches, and its timing totals."""

    def __init__(self, trainer: Trainer, stream: Iterator[Batch]):
        self.trainer, self.device, self._stream = trainer, trainer.device, stream
        self.audio, self.steps, self.elapsed = 0.0, 0, 0.0
        self.step(next(self._stream))  # the first step pays one-off allocation costs
        synchronize(self.device)

    def step(self, batch: Batch) -> float:
        """One Trainer step; the audio seconds it trained on."""
        self.trainer.train_step(batch)
        return batch.audio_seconds

    def run(self, seconds: float) -> None:
        """Train for at most ``seconds``: the loop stops before a step that would overrun them
        (judged by the mean step so far), so the command's wall time stays close to the time asked for."""
        audio, steps, started = 0.0, 0, time.perf_counter()
        for batch in self._stream:
            audio += self.step(batch)
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

    def __init__(self, work: _Workload, model: SpeechModel, device: torch.device, precision: str,
                 batch_seconds: float):
        self.model = model
        self.sampler = LengthBucketSampler(work.seconds, batch_seconds, seed=0)
        self.sampler.set_epoch(1)
        self.batches = [work.collate(b) for b in self.sampler]
        self.mean_batch_size = len(work.seconds) / len(self.batches)
        super().__init__(step_trainer(model, device, precision, len(self.batches)), itertools.cycle(self.batches))

    def summary(self) -> dict:
        """Batching figures and the model's size; the FLOPs count the encoder (its RNNs one-way or both ways)
        with its CTC head."""
        net = self.model.net
        flops = training_flops_per_audio_second(net.config, rnn_directions=getattr(net, "rnn_directions", 2))
        return {"padding_fraction": self.sampler.padding_fraction(), "batches_per_epoch": len(self.batches),
                "mean_batch_size": self.mean_batch_size, "parameters": self.model.parameter_count(),
                "flops_per_audio_second": flops}


class _Precomputed(torch.nn.Module):
    """Stands in for a model's log-mel front end when the baseline's Dataset has computed the features."""

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return feats, lengths


class _PerItemFeatures(torch.utils.data.Dataset):
    """The template way: log-mel computed per utterance on the CPU inside the Dataset."""

    def __init__(self, work: _Workload, features: torch.nn.Module):
        self.work, self.features = work, features

    def __len__(self) -> int:
        return len(self.work.waves)

    def __getitem__(self, i: int):
        wave = self.work.waves[i]
        feats, _ = self.features(wave[None], torch.tensor([len(wave)]))
        return feats[0], self.work.targets[i]


def _pad_features(items) -> Batch:
    """Features in ``waves`` and frames in ``wave_lengths``, for a model whose front end is ``_Precomputed``."""
    lengths = torch.tensor([f.shape[-1] for f, _ in items])
    feats = torch.zeros(len(items), items[0][0].shape[0], int(lengths.max()))
    for row, (f, _) in enumerate(items):
        feats[row, :, : f.shape[-1]] = f
    targets = [t for _, t in items]
    return Batch(feats, lengths, torch.cat(targets), torch.tensor([len(t) for t in targets]),
                 [""] * len(items), [""] * len(items))


class _Baseline(_Side):
    """The template loop: per-item CPU features in a default DataLoader, random batches, fp32, packed RNNs."""

    def __init__(self, work: _Workload, model: SpeechModel, device: torch.device, batch_size: int):
        features, model.features = model.features, _Precomputed()  # the model's log-mel moves into the Dataset
        dataset = _PerItemFeatures(work, features)
        sampler = BatchSampler(RandomSampler(dataset, generator=torch.Generator().manual_seed(0)), batch_size, False)
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=_pad_features)
        self.batch_size, self.real, self.padded = batch_size, 0, 0
        super().__init__(step_trainer(model, device, "fp32", len(sampler)),
                         (batch for _ in itertools.count() for batch in loader))

    def step(self, batch: Batch) -> float:
        self.trainer.train_step(batch)
        lengths = batch.wave_lengths  # frames of 10 ms here
        self.real, self.padded = self.real + int(lengths.sum()), self.padded + len(lengths) * int(lengths.max())
        return float(lengths.sum() - len(lengths)) * 0.01  # less the extra edge frame


def _figures(ours: _Ours, dev: torch.device, precision: str) -> dict:
    """Throughput, FLOPs achieved and the model-FLOPs utilisation of our side."""
    result = dict(ours.summary(), audio_sec_per_sec=ours.audio_sec_per_sec, step_time=ours.elapsed / ours.steps,
                  steps=ours.steps)
    result["achieved_tflops"] = result["flops_per_audio_second"] * ours.audio_sec_per_sec / 1e12
    result["gpu"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    peak = peak_tflops(result["gpu"], precision) if result["gpu"] else None
    result["mfu"] = result["achieved_tflops"] / peak if peak else None
    return result


def bench_train(model: str = "small", seconds: float = 20.0, device: str = "auto", precision: str = "auto",
                batch_seconds: float = 160.0, compare_baseline: bool = False, utterances: int = 200,
                rnn_type: str | None = None, time_stride: int | None = None, arch: str = "deepspeech2") -> dict:
    """Training throughput of the workbook pipeline (and of the baseline, alternating) for model ``arch``.

    ``rnn_type`` overrides the preset's recurrent cell and ``time_stride`` its frame rate (output
    frames per second = 100 / stride); the baseline always uses the same model. ``mfu`` is the
    model-FLOPs utilisation against the GPU's data-sheet peak (None on CPU or an unknown GPU); its
    FLOPs are the encoder's, so for ``las`` (whose attention decoder is not counted) it is a lower bound.
    """
    torch.manual_seed(0)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    mode = "packed" if dev.type == "cuda" else "masked"
    ours_model = bench_model(arch, model, mode, rnn_type, time_stride)
    work = _Workload(utterances, ours_model.tokenizer.vocab_size)
    rounds = 2 if compare_baseline else 1
    sides = {"ours": _Ours(work, ours_model, dev, prec, batch_seconds)}
    if compare_baseline:
        baseline_model = bench_model(arch, model, "packed", rnn_type, time_stride)
        sides["baseline"] = _Baseline(work, baseline_model, dev, max(1, round(sides["ours"].mean_batch_size)))
    for _ in range(rounds):  # alternate, so a slow minute on a shared machine hits both sides
        for side in sides.values():
            side.run(seconds / rounds)
    config = ours_model.net.config
    result = dict(_figures(sides["ours"], dev, prec), benchmark="train", arch=arch, model=model,
                  rnn_type=config.rnn_type, device=str(dev), precision=prec, batch_seconds=batch_seconds,
                  time_stride=config.time_stride)
    if compare_baseline:
        base = sides["baseline"]
        result.update(baseline_audio_sec_per_sec=base.audio_sec_per_sec,
                      baseline_padding_fraction=1 - base.real / base.padded, baseline_batch_size=base.batch_size,
                      speedup_vs_baseline=result["audio_sec_per_sec"] / base.audio_sec_per_sec)
    return result
