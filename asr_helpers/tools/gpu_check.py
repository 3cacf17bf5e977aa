"""The GPU check (``python -m asr_helpers bench gpu-check``): every figure the Kaggle plan rests on, in one run.

Made for the few minutes a GPU is lent, on a machine that may hold only torch, torchaudio,
numpy, pandas, pyyaml and tqdm: each part imports what it needs when it runs, is stopped at
its time box, and records its error in the result instead of stopping the others. ``quick``
shrinks every part so the check runs on a CPU in seconds (the test suite runs it); on a CPU
without ``quick`` the parts scale down so the whole check takes a few minutes.
"""
from __future__ import annotations

import contextlib
import datetime
import importlib.util
import math
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from asr_helpers.data.dataset import Batch
from asr_helpers.runtime import resolve_device
from asr_helpers.tools.bench_data import loader_throughput
from asr_helpers.tools.bench_train import bench_model, bench_train, step_trainer, synchronize
from asr_helpers.tools.gpu_plan import HEADROOM, T4_USABLE_GIB, fit_batch_seconds, student_gpu_estimates

# Optional imports of the package; the check reports which of them this machine lacks.
OPTIONAL_MODULES = ("soundfile", "jiwer", "sentencepiece", "wandb", "pyctcdecode", "kenlm", "matplotlib", "papermill")
WORST_UTTERANCE_SECONDS = 20.0  # the profiles' max_seconds: the longest utterance a batch can hold


class PartTimeout(Exception):
    """A part ran past its time box."""


@dataclass(frozen=True)
class CheckSize:
    """How large each part is on this device (see ``for_device``)."""

    models: tuple[str, ...]
    baseline_models: tuple[str, ...]  # a CPU runs base's baseline (packed GRU) at minutes a step: not there
    precisions: tuple[str, ...]
    bench_seconds: float
    bench_batch_seconds: float
    bench_utterances: int
    memory_batch_seconds: tuple[float, ...]
    trainer_model: str
    trainer_seconds: float
    trainer_batch_seconds: float
    trainer_max_steps: int | None
    train_utterances: int
    copies: int
    utterance_seconds: tuple[float, float]
    loader_workers: int
    loader_seconds: float
    ctc_model: str
    ctc_steps: int
    matmul_size: int
    part_limit: float
    total_limit: float

    @classmethod
    def for_device(cls, device: torch.device, quick: bool) -> "CheckSize":
        gpu = device.type == "cuda"
        precisions = ("fp16", "bf16") if gpu else ("fp32",)  # bf16 RNNs are slower than fp32 on a CPU without AMX
        if quick:
            return cls(models=("tiny",), baseline_models=("tiny",), precisions=precisions, bench_seconds=1.0,
                       bench_batch_seconds=20.0, bench_utterances=4, memory_batch_seconds=(20.0, 40.0) if gpu else (),
                       trainer_model="tiny", trainer_seconds=30.0, trainer_batch_seconds=8.0, trainer_max_steps=2,
                       train_utterances=16, copies=1, utterance_seconds=(1.0, 2.5), loader_workers=2,
                       loader_seconds=1.5, ctc_model="tiny", ctc_steps=3, matmul_size=256, part_limit=60.0,
                       total_limit=240.0)
        if gpu:
            return cls(models=("base", "small"), baseline_models=("base", "small"), precisions=precisions,
                       bench_seconds=15.0, bench_batch_seconds=400.0, bench_utterances=400,
                       memory_batch_seconds=(100.0, 200.0, 400.0, 800.0, 1600.0), trainer_model="base",
                       trainer_seconds=120.0, trainer_batch_seconds=400.0, trainer_max_steps=None,
                       train_utterances=600, copies=5, utterance_seconds=(2.0, 17.0), loader_workers=4,
                       loader_seconds=30.0, ctc_model="base", ctc_steps=30, matmul_size=8192, part_limit=200.0,
                       total_limit=450.0)
        # A CPU trains base at a few audio-s/s: it is benchmarked on short batches, the Trainer runs small.
        return cls(models=("small", "base"), baseline_models=("small",), precisions=precisions, bench_seconds=10.0,
                   bench_batch_seconds=20.0, bench_utterances=24, memory_batch_seconds=(), trainer_model="small",
                   trainer_seconds=60.0, trainer_batch_seconds=30.0, trainer_max_steps=None, train_utterances=40,
                   copies=1, utterance_seconds=(3.0, 8.0), loader_workers=4, loader_seconds=10.0, ctc_model="small",
                   ctc_steps=3, matmul_size=1024, part_limit=180.0, total_limit=900.0)


def missing_modules(names: tuple[str, ...] = OPTIONAL_MODULES) -> list[str]:
    """Which of the package's optional imports this interpreter cannot import."""
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


@contextlib.contextmanager
def time_box(seconds: float):
    """Raise ``PartTimeout`` in the main thread once ``seconds`` have passed (no-op elsewhere)."""
    def expire(signum, frame):
        raise PartTimeout(f"stopped after its time box of {seconds:.0f} s")
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 5) -> float:
    """TFLOP/s of a square matrix product: what this device reaches at best in ``dtype``."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size ** 3 * repeats / (time.perf_counter() - started) / 1e12


def _matmul_part(size: CheckSize, device: torch.device) -> dict:
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device.type == "cuda":
        dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
    return {f"{name}_tflops": matmul_tflops(device, dtype, size.matmul_size) for name, dtype in dtypes.items()}


def _bench_runs(size: CheckSize, device: torch.device) -> dict[str, Callable[[], dict]]:
    """``bench train`` per model and precision (the baseline at the first precision), ``base`` at time stride 3,
    and the joint CTC/attention model (``las``) at the first model and precision."""
    def run(model: str, precision: str, baseline: bool = False, stride: int | None = None,
            arch: str = "deepspeech2") -> Callable[[], dict]:
        return lambda: bench_train(model, size.bench_seconds, device.type, precision, size.bench_batch_seconds,
                                   compare_baseline=baseline, utterances=size.bench_utterances, time_stride=stride,
                                   arch=arch)
    first = size.precisions[0]
    runs = {f"{m}_{p}": run(m, p, baseline=m in size.baseline_models and p == first)
            for m in size.models for p in size.precisions}
    model = "base" if "base" in size.models else size.models[0]
    runs[f"{model}_{first}_stride3"] = run(model, first, stride=3)
    runs[f"{size.models[0]}_{first}_las"] = run(size.models[0], first, arch="las")
    return runs


def _worst_batch(n: int, device: torch.device, vocab: int = 29) -> Batch:
    """``n`` utterances of the longest length a batch can hold, on the device."""
    samples = int(WORST_UTTERANCE_SECONDS * 16000)
    waves = 0.1 * torch.randn(n, samples, device=device)
    lengths = torch.full((n,), samples, device=device)
    target_lengths = torch.full((n,), int(WORST_UTTERANCE_SECONDS * 12), device=device)
    targets = torch.randint(1, vocab, (int(target_lengths.sum()),), device=device)
    return Batch(waves, lengths, targets, target_lengths, [""] * n, [str(i) for i in range(n)])


def _rnn_mode(device: torch.device) -> str:
    return "packed" if device.type == "cuda" else "masked"


def _memory_part(size: CheckSize, device: torch.device) -> dict:
    """Peak GPU memory of ``base`` under fp16 for batches of 20 s utterances, and what fits a T4."""
    if device.type != "cuda":
        return {"skipped": "needs a GPU"}
    trainer = step_trainer(bench_model("deepspeech2", "base", _rnn_mode(device)), device, "fp16")
    peaks, result = {}, {"utterance_seconds": WORST_UTTERANCE_SECONDS, "peak_gib": {}}
    for batch_seconds in size.memory_batch_seconds:
        batch = _worst_batch(max(1, int(batch_seconds // WORST_UTTERANCE_SECONDS)), device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            for _ in range(2):
                trainer.train_step(batch)
            synchronize(device)
        except torch.cuda.OutOfMemoryError:
            result["peak_gib"][str(batch_seconds)] = "out of memory"
            break
        peaks[batch_seconds] = torch.cuda.max_memory_reserved(device) / 2 ** 30
        result["peak_gib"][str(batch_seconds)] = round(peaks[batch_seconds], 3)
    budget = T4_USABLE_GIB * (1 - HEADROOM)
    result.update(t4_budget_gib=budget, t4_max_batch_seconds=fit_batch_seconds(peaks, budget))
    return result


def _tone_batch(size: CheckSize, tokenizer) -> Batch:
    """Tone-coded utterances (one tone per letter) of the check's lengths, as the loader would batch them."""
    from asr_helpers.data.tone_corpus import random_text, tone_wave
    rng = np.random.default_rng(0)
    count = max(2, int(size.trainer_batch_seconds / sum(size.utterance_seconds) * 2))
    texts = [random_text(float(rng.uniform(*size.utterance_seconds)), rng) for _ in range(count)]
    waves = [torch.from_numpy(tone_wave(t)) for t in texts]
    ids = [torch.tensor(tokenizer.encode(t)) for t in texts]
    return Batch(torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), torch.tensor([len(w) for w in waves]),
                 torch.cat(ids), torch.tensor([len(i) for i in ids]), texts, [str(i) for i in range(count)])


def _infinite_ctc_terms(model, batch: Batch, device: torch.device, precision: str) -> int:
    """Utterances of ``batch`` whose CTC term is infinite (targets the frames cannot hold) under ``precision``."""
    from torch.nn import functional as F

    from asr_helpers.training.evaluation import autocast_context
    with torch.no_grad(), autocast_context(device, precision):
        output = model(batch)
    terms = F.ctc_loss(output.log_probs.float().transpose(0, 1), batch.targets, output.lengths, batch.target_lengths,
                       blank=model.tokenizer.blank_id, reduction="none", zero_infinity=False)
    return int((~torch.isfinite(terms)).sum())


def _ctc_part(size: CheckSize, device: torch.device) -> dict:
    """The first Trainer steps from a fresh model in half precision: any infinite or NaN loss, gradient or CTC term."""
    precision = "fp16" if device.type == "cuda" else size.precisions[0]
    model = bench_model("deepspeech2", size.ctc_model, _rnn_mode(device))
    trainer = step_trainer(model, device, precision, size.ctc_steps)
    batch = _tone_batch(size, model.tokenizer).to(device)
    losses, infinite_terms, bad_grads = [], 0, 0
    for _ in range(size.ctc_steps):
        infinite_terms += _infinite_ctc_terms(model, batch, device, precision)
        step = trainer.train_step(batch)  # a non-finite loss is skipped: loss and gradient norm are None
        losses.append(step["loss"])
        bad_grads += step["grad_norm"] is None or not math.isfinite(step["grad_norm"])
    scaler = trainer.scaler
    return {"precision": precision, "steps": len(losses),
            "losses": [None if v is None else round(v, 4) for v in losses],
            "nonfinite_losses": sum(v is None or not math.isfinite(v) for v in losses),
            "infinite_ctc_terms": infinite_terms, "nonfinite_grad_steps": bad_grads, "skips": dict(trainer.skips),
            "final_loss_scale": scaler.get_scale() if scaler.is_enabled() else None}


def _write_corpus(size: CheckSize, root: Path) -> dict:
    from asr_helpers.data.tone_corpus import write_tone_split
    started = time.perf_counter()
    train = write_tone_split(root, "train-clean-100", size.train_utterances, size.utterance_seconds, seed=0,
                             copies=size.copies)
    dev = write_tone_split(root, "dev-clean", max(4, size.train_utterances // 10), size.utterance_seconds, seed=1)
    audio = sorted(p.suffix for p in root.rglob("1-0-0000.*"))
    return {"train_seconds": train, "dev_seconds": dev, "format": audio[0] if audio else None,
            "write_seconds": time.perf_counter() - started}


def _trainer_part(size: CheckSize, device: torch.device, root: Path) -> dict:
    """Two minutes of the real Trainer with the kaggle settings (fp16 on a GPU, full augmentation, 4 workers)."""
    from asr_helpers.training.rundir import RunDir
    from asr_helpers.training.tracking import read_jsonl
    from asr_helpers.training.run import train
    config = dict(run_name="gpu-check", corpus="synthetic", data_root=str(root), train_splits=["train-clean-100"],
                  dev_splits=["dev-clean"], model_size=size.trainer_model, epochs=1000,
                  batch_seconds=size.trainer_batch_seconds, max_seconds=min(20.0, size.trainer_batch_seconds),
                  lr=1e-3, precision="fp16" if device.type == "cuda" else "fp32", augment="full",
                  num_workers=size.loader_workers, time_budget_minutes=size.trainer_seconds / 60,
                  max_steps=size.trainer_max_steps, checkpoint_minutes=60.0, eval_utterances=20, log_every=1,
                  media_every_epochs=10 ** 6,
                  wandb_mode="disabled", device=device.type)
    try:
        summary = train(config)
    except Exception as error:  # e.g. the final evaluation without jiwer: keep the training figures
        summary = {"error": one_line(error)}
    steps = [h for h in read_jsonl(RunDir.named("gpu-check").history) if h["kind"] == "train"]
    losses = [h["loss"] for h in steps]
    quarter = max(1, len(losses) // 4)
    rates = sorted(h["audio_sec_per_sec"] for h in steps[1:]) or [h["audio_sec_per_sec"] for h in steps]
    kept = ("error", "stop_reason", "steps", "epochs", "minutes", "audio_hours", "skips", "precision", "final")
    return {**{k: summary[k] for k in kept if k in summary}, "logged_steps": len(steps),
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "loss_finite": bool(losses) and all(math.isfinite(v) for v in losses),
            "loss_falling": bool(losses) and sum(losses[-quarter:]) / quarter < sum(losses[:quarter]) / quarter,
            "audio_sec_per_sec": rates[len(rates) // 2] if rates else None}


def _loader_part(size: CheckSize, root: Path) -> dict:
    """The training DataLoader (full augmentation) on the written files."""
    from asr_helpers.data.manifest import load_splits
    utterances = load_splits(root, ["train-clean-100"], max_seconds=20.0)
    rate = loader_throughput(utterances, size.loader_workers, size.loader_seconds, "full", size.trainer_batch_seconds)
    return {"workers": size.loader_workers, "cpu_count": os.cpu_count(), "audio_sec_per_sec": rate}


def one_line(error: BaseException) -> str:
    """``Type: message``, first line only and at most 300 characters, for the JSON."""
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


def _run_part(name: str, part: Callable[[], dict], limit: float, result: dict) -> None:
    """Run one part in its time box; its error, not a traceback, goes into the result."""
    started = time.perf_counter()
    try:
        with time_box(limit), contextlib.redirect_stdout(sys.stderr):
            result[name] = part()
    except Exception as error:  # one failing part must not stop the others
        result[name] = {"error": one_line(error)}
    result[name]["part_seconds"] = round(time.perf_counter() - started, 1)
    print(f"[gpu-check] {name}: {result[name]['part_seconds']} s", file=sys.stderr, flush=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def _scratch_artifacts(folder: Path):
    """Point runs, caches and artifacts at ``folder`` meanwhile, then restore the environment."""
    names = ("ASR_ARTIFACTS_DIR", "ASR_CACHE_DIR", "ASR_RUNS_DIR")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: str(folder / name.lower()) for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _torch_threads(count: int | None):
    """Run with ``count`` torch threads (None: unchanged), then restore the count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count or previous)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def summarize(result: dict) -> dict:
    """The figures the week plan needs, pulled from the parts (missing parts give None)."""
    bench = result.get("bench", {})
    main = next((v for k, v in bench.items() if k in ("base_fp16", "base_bf16", "base_fp32") and "error" not in v), {})
    stride3 = next((v for k, v in bench.items() if k.endswith("stride3")), {})
    trainer, loader = result.get("trainer", {}), result.get("loader", {})
    ratio = None
    if loader.get("audio_sec_per_sec") and trainer.get("audio_sec_per_sec"):
        ratio = loader["audio_sec_per_sec"] / trainer["audio_sec_per_sec"]
    stride_gain = None
    if stride3.get("audio_sec_per_sec") and main.get("audio_sec_per_sec"):
        stride_gain = stride3["audio_sec_per_sec"] / main["audio_sec_per_sec"]
    estimates = None
    if main.get("mfu") and main.get("flops_per_audio_second"):
        estimates = student_gpu_estimates(main["flops_per_audio_second"], main["mfu"])
    return {"base_flops_per_audio_second": main.get("flops_per_audio_second"),
            "base_audio_sec_per_sec": main.get("audio_sec_per_sec"), "base_mfu": main.get("mfu"),
            "stride3_speedup": stride_gain, "loader_over_trainer": ratio,
            "t4_max_batch_seconds": result.get("memory", {}).get("t4_max_batch_seconds"),
            "student_gpus_at_this_mfu": estimates}


def gpu_check(quick: bool = False, device: str = "auto") -> dict:
    """Run every part on ``device`` and return one dict (the CLI prints it as one JSON line)."""
    dev = resolve_device(device)
    size = CheckSize.for_device(dev, quick)
    started = time.perf_counter()
    result = {"check": "gpu", "quick": quick, "device": str(dev), "date": datetime.date.today().isoformat(),
              "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None, "torch": torch.__version__,
              "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0], "missing_modules": missing_modules(),
              "size": asdict(size)}
    # One torch thread on a CPU: on a shared, oversubscribed CPU two spinning threads made a step 15x
    # slower than one (27 s against 1.8 s), so CPU figures are per core, a lower bound.
    threads = 1 if dev.type == "cpu" else None
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp, _scratch_artifacts(Path(tmp)), _torch_threads(threads):
        root = Path(tmp) / "LibriSpeech"
        parts = {"corpus": lambda: _write_corpus(size, root), "matmul": lambda: _matmul_part(size, dev),
                 **{f"bench/{name}": run for name, run in _bench_runs(size, dev).items()},
                 "memory": lambda: _memory_part(size, dev), "ctc": lambda: _ctc_part(size, dev),
                 "trainer": lambda: _trainer_part(size, dev, root), "loader": lambda: _loader_part(size, root)}
        for name, part in parts.items():
            group, _, key = name.rpartition("/")  # bench runs are parts of their own, kept under "bench"
            target = result.setdefault(group, {}) if group else result
            left = size.total_limit - (time.perf_counter() - started)
            if left < 5:
                target[key] = {"error": "skipped: the check's total time box is spent"}
                continue
            _run_part(key, part, min(size.part_limit, left), target)
    result["summary"] = summarize(result)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result

