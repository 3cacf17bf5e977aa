"""The training loop; it knows nothing about CTC, features or corpora.

``Trainer(config, data, model)`` takes a ``data.TrainData`` (batches, dev utterances, tokenizer)
and a ``recognizer.SpeechModel`` (a batch in, its loss out) and runs: accumulation windows
(``no_sync`` on all but the last micro-batch), AMP, clipping, the one-cycle schedule, agreed
skips and stops under DDP, a wall-clock budget (Kaggle sessions end at 12 h), dev evaluations,
media logs, and checkpoints from which a resumed run ends with the same weights as an
uninterrupted one, wherever it stopped.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from asr_helpers.training.checkpoint import load_checkpoint, rng_state, save_atomic, set_rng_state
from asr_helpers.training.config import TrainConfig
from asr_helpers.training.loaders import TrainData
from asr_helpers.data.dataset import Batch
from asr_helpers.training.distributed import Placement
from asr_helpers.training.evaluation import autocast_context, evaluate
from asr_helpers.models.recognizer import SpeechModel
from asr_helpers.training.rundir import RunDir
from asr_helpers.runtime import resolve_precision
from asr_helpers.training.schedule import one_cycle, session_progress
from asr_helpers.training.tracking import Tracker


def optimizer_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices and conv kernels only, never on norms or biases (as nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


@dataclass
class _Window:
    """Micro-batches since the last optimizer step (or the last log): losses, audio, whether DDP reduced."""
    loss_sum: float = 0.0
    micro_batches: int = 0
    seconds: float = 0.0
    synced: bool = False
    started: float = field(default_factory=time.monotonic)

    def add(self, loss: float, seconds: float, synced: bool) -> None:
        self.loss_sum, self.micro_batches = self.loss_sum + loss, self.micro_batches + 1
        self.seconds, self.synced = self.seconds + seconds, synced

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.micro_batches, 1)


class Trainer:
    """Trains ``model`` on ``data`` as ``config`` says; ``fit()`` runs until epochs, steps or budget end."""

    def __init__(self, config: TrainConfig, data: TrainData, model: SpeechModel, place: Placement = Placement()):
        self.config, self.data, self.place = config, data, place
        self.device, self.is_main, self.world = place.device, place.is_main, place.world
        self.precision = resolve_precision(config.precision, self.device)
        self.files = RunDir.named(config.run_name)  # made by fit: a Trainer only stepped (benchmarks) writes nothing
        self.model = model.to(self.device)
        self.total_steps = math.ceil(len(data.sampler) / config.grad_accum) * config.epochs
        self.optimizer = torch.optim.AdamW(optimizer_groups(model, config.weight_decay), lr=self._lr(0.0))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self.net = DistributedDataParallel(model, device_ids=device_ids) if self.world > 1 else model
        self.skips = Counter()
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_wer, self.trained_seconds, self.progress = math.inf, 0.0, 0.0
        self.last_eval_step, self.last_eval = -1, {}
        self._media_batch: Batch | None = None
        self._batches, self._evals_at = len(data.sampler), self._eval_points()  # this epoch's, set per epoch
        self._window, self._log_window = _Window(), _Window()  # fit() sets these again, per session and epoch
        self._started, self._session_start_progress, self._budget = time.monotonic(), self.progress, None

    @property
    def sampler(self):
        return self.data.sampler

    # ---- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            **self.model.checkpoint_entries(), "tokenizer": self.data.tokenizer.to_dict(),
            "train_config": self.config.to_dict(), "optimizer": self.optimizer.state_dict(), "progress": self.progress,
            "scaler": self.scaler.state_dict(), "step": self.step, "epoch": self.epoch,
            "sampler": {"epoch": self.epoch, "position": self.batch_in_epoch}, "rng": rng_state(),
            "best_wer": self.best_wer, "last_eval_step": self.last_eval_step,
            "trained_seconds": self.trained_seconds, "skips": dict(self.skips),
        }

    def save(self, name: str) -> Path:
        path = self.files.checkpoint(name)
        if self.is_main:
            save_atomic(self.state(), path)
        return path

    def resume(self, path: Path | None = None) -> None:
        """Continue from a checkpoint (default ``last.pt``): weights, optimizer, position and RNG states."""
        path = path or self.files.checkpoint("last.pt")
        state = load_checkpoint(path, map_location=self.device)
        self.model.restore(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = state["progress"]
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["sampler"]["position"]
        self.best_wer, self.trained_seconds = state["best_wer"], state["trained_seconds"]
        self.last_eval_step = state["last_eval_step"]
        self.skips.update(state["skips"])
        set_rng_state(state["rng"])
        print(f"resumed from {path}: epoch {self.epoch}, step {self.step}, batch {self.batch_in_epoch}")

    # ---- the loop ----------------------------------------------------------------------------
    def _forward(self, batch: Batch) -> torch.Tensor:
        with autocast_context(self.device, self.precision):
            return self.net(batch).loss

    def _lr(self, progress: float) -> float:
        return one_cycle(progress, self.config.lr, self.config.warmup_fraction)

    def fit(self) -> dict:
        """Train until the epochs, ``max_steps`` or the time budget run out; returns final dev metrics."""
        c = self.config
        self.files.path.mkdir(parents=True, exist_ok=True)
        tracker = Tracker(self.files.path, c.to_dict(), c.wandb_mode, active=self.is_main)
        if self.is_main:
            self.files.config.write_text(json.dumps(c.to_dict(), indent=2))
        self._started = self._last_save = time.monotonic()
        self._session_start_progress = self.progress
        self._budget = c.time_budget_minutes * 60 if c.time_budget_minutes else None
        try:
            stop_reason = None
            while stop_reason is None and self.epoch < c.epochs:
                stop_reason = self._train_epoch(tracker)
            return self._finish(tracker, stop_reason or "epochs done")
        finally:
            tracker.finish()

    def _train_epoch(self, tracker: Tracker) -> str | None:
        """One pass over the epoch's remaining batches; the stop reason, or None to go on."""
        self.sampler.set_epoch(self.epoch)
        self.sampler.load_state_dict({"epoch": self.epoch, "position": self.batch_in_epoch})
        self._batches, self._evals_at = len(self.sampler), self._eval_points()
        bar = tqdm(total=self._batches, initial=self.batch_in_epoch, disable=not self.is_main,
                   desc=f"epoch {self.epoch + 1}/{self.config.epochs}", mininterval=5, leave=False)
        stop_reason, self._window, self._log_window = None, _Window(), _Window()
        for batch in self.data.loader(self.epoch):
            bar.update()
            step = self.train_step(batch)
            if step is None:
                continue
            if step["grad_norm"] is not None:
                self._log_step(tracker, bar, step["grad_norm"])
            stop_reason = self._after_window(tracker)
            if stop_reason:
                break
        bar.close()
        if self.batch_in_epoch >= self._batches:  # also when the stop fell on the last batch
            self._end_epoch(tracker)
        return stop_reason

    def train_step(self, batch: Batch | None) -> dict | None:
        """The loop's step on one batch: forward, loss and backward into the window's gradients and, when the
        batch closes an accumulation window, the optimizer step (unscale, clip, scaler, schedule). None
        mid-window, else the window's mean ``loss`` and ``grad_norm`` (None where every batch was skipped).
        Public so the benchmarks and the GPU check time exactly the step the loop takes."""
        self.batch_in_epoch += 1
        self._micro_batch(batch)
        if not self._window_ends():
            return None
        window, grad_norm = self._window, self._end_window()
        self._window = _Window()
        return {"loss": window.mean_loss if window.micro_batches else None, "grad_norm": grad_norm}

    def _window_ends(self) -> bool:
        """Whether this micro-batch closes an accumulation window (every ``grad_accum``, and the epoch's last)."""
        return self.batch_in_epoch % self.config.grad_accum == 0 or self.batch_in_epoch >= self._batches

    def _micro_batch(self, batch: Batch | None) -> None:
        """Forward and backward one batch into the window's gradients, unless a rank must skip it."""
        if not self.place.all_ranks(batch is not None):
            self.skips["batch with no readable audio" if batch is None else "batch skipped with another rank"] += 1
            return
        if batch.skipped:
            self.skips["unreadable audio"] += batch.skipped
        self._media_batch = batch
        batch = batch.to(self.device)
        sync = self._window_ends()
        with self._gradient_sync(sync):
            loss = self._forward(batch)
            if not self.place.all_ranks(bool(torch.isfinite(loss.detach()))):
                self.skips["non-finite loss"] += 1
                return
            self.scaler.scale(loss / self.config.grad_accum).backward()
        for window in (self._window, self._log_window):
            window.add(float(loss.detach()), batch.audio_seconds, synced=sync)
        self.trained_seconds += batch.audio_seconds * self.world

    def _gradient_sync(self, sync: bool):
        """DDP all-reduces gradients only on the window's last micro-batch (``no_sync`` before it)."""
        return self.net.no_sync() if self.world > 1 and not sync else contextlib.nullcontext()

    def _end_window(self) -> float | None:
        """The optimizer step for the window; None when every micro-batch in it was skipped."""
        if not self._window.micro_batches:
            return None
        if self.world > 1 and not self._window.synced:  # the last micro-batch was skipped: reduce by hand
            self.place.average_gradients(self.model)
        return self._optimizer_step()

    def _optimizer_step(self) -> float:
        self.scaler.unscale_(self.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip))
        if math.isfinite(grad_norm):
            self.scaler.step(self.optimizer)
        else:
            self.skips["non-finite gradient"] += 1
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        elapsed = time.monotonic() - self._started
        self.progress = self.place.agreed_max(
            session_progress(self.step, self.total_steps, self._session_start_progress, elapsed, self._budget))
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.progress)
        return grad_norm

    def _log_step(self, tracker: Tracker, bar, grad_norm: float) -> None:
        """Train scalars every ``log_every`` steps, averaged over the micro-batches since the last log."""
        if self.step % self.config.log_every or not self.is_main:
            return
        window, elapsed = self._log_window, time.monotonic() - self._log_window.started
        values = {"loss": window.mean_loss, "grad_norm": grad_norm, "lr": self.optimizer.param_groups[0]["lr"],
                  "epoch": self.epoch + self.batch_in_epoch / self._batches,
                  "step_time": elapsed / self.config.log_every,
                  "audio_sec_per_sec": window.seconds * self.world / elapsed,
                  "minutes": (time.monotonic() - self._started) / 60, "audio_hours": self.trained_seconds / 3600}
        tracker.scalars("train", values, self.step)
        bar.set_postfix(loss=f"{values['loss']:.3f}", audio_x=f"{values['audio_sec_per_sec']:.0f}")
        self._log_window = _Window()

    def _after_window(self, tracker: Tracker) -> str | None:
        """Evaluation, agreed stop decisions and the periodic ``last.pt`` after each window."""
        if self.batch_in_epoch in self._evals_at:
            self._evaluate(tracker, self._started)
        now = time.monotonic()
        if self._budget and self.place.agreed_max(float(now - self._started > self._budget)):
            return "time budget"
        if self.config.max_steps is not None and self.step >= self.config.max_steps:
            return "max_steps"
        if now - self._last_save > self.config.checkpoint_minutes * 60:
            self.save("last.pt")
            self._last_save = now
        return None

    def _end_epoch(self, tracker: Tracker) -> None:
        every = self.config.media_every_epochs
        if self.is_main and every and self.epoch % every == 0 and self._media_batch is not None:
            cuda = [self.device.index or 0] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):  # media never shifts the training RNG (exact resume)
                self._log_media(tracker, self._media_batch)
        self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def _finish(self, tracker: Tracker, stop_reason: str) -> dict:
        """Save ``last.pt``, evaluate once more unless just done, write the summary."""
        self.save("last.pt")
        evaluated_now = self.last_eval_step == self.step
        final = self._evaluate(tracker, self._started) if stop_reason != "max_steps" and not evaluated_now else {}
        summary = {"stop_reason": stop_reason, "steps": self.step, "epochs": self.epoch,
                   "minutes": (time.monotonic() - self._started) / 60, "audio_hours": self.trained_seconds / 3600,
                   "skips": dict(self.skips), "final": final or self.last_eval, "best_dev_wer": self.best_wer,
                   "parameters": self.model.parameter_count(), "precision": self.precision, "device": str(self.device)}
        if self.is_main:
            self.files.summary.write_text(json.dumps(summary, indent=2))
            print(f"stopped: {stop_reason} after {summary['minutes']:.1f} min, {self.step} steps; "
                  f"skips: {dict(self.skips) or 'none'}")
        return summary

    def _eval_points(self) -> set[int]:
        """Batch positions within an epoch after which the dev splits are evaluated."""
        n = len(self.sampler)
        return {max(1, round(n * k / self.config.evals_per_epoch)) for k in range(1, self.config.evals_per_epoch + 1)}

    def _evaluate(self, tracker: Tracker, started: float) -> dict:
        """Loss, greedy WER/CER and sample rows on each dev split; keeps ``best.pt`` by the first split's WER."""
        self.last_eval_step = self.step
        if not self.is_main:
            return {}
        results = {}
        for split, utterances in self.data.dev.items():
            metrics, rows = evaluate(self.model, utterances, self.data.tokenizer, self.device, self.precision)
            metrics["minutes"] = (time.monotonic() - started) / 60
            metrics["epoch"] = self.epoch + self.batch_in_epoch / self._batches
            tracker.scalars(f"eval/{split}", metrics, self.step)
            sample = random.Random(self.step).sample(rows, min(8, len(rows)))
            tracker.table(f"samples/{split}", ["id", "target", "prediction", "cer", "wer"], sample, self.step)
            self._log_model_media(tracker, f"eval/{split}", self._dev_batch(utterances[:8]))
            results[split] = metrics
            print(f"  step {self.step} {split}: loss {metrics['loss']:.3f}  "
                  f"WER {metrics['wer']:.3f}  CER {metrics['cer']:.3f}")
        self.model.train()
        self.last_eval = results
        first = results[next(iter(results))] if results else None
        if first and first["wer"] < self.best_wer:
            self.best_wer = first["wer"]
            self.save("best.pt")
        return results

    def _dev_batch(self, utterances) -> Batch | None:
        """The utterance with the shortest transcript among ``utterances``, read alone (short figures read best)."""
        from asr_helpers.data.dataset import SpeechDataset, collate
        return collate([SpeechDataset([min(utterances, key=lambda u: len(u.text))], self.data.tokenizer)[0]])

    def _log_model_media(self, tracker: Tracker, prefix: str, batch: Batch | None) -> None:
        """Whatever figures the model offers for ``batch`` (``SpeechModel.media``), as ``<prefix>/<name>``."""
        if batch is None:
            return
        for name, figure in self.model.media(batch.to(self.device), self.step).items():
            tracker.image(f"{prefix}/{name}", figure, self.step)

    def _log_media(self, tracker: Tracker, batch: Batch) -> None:
        """The model's spectrogram views of a train and a dev utterance, and the augmented audio."""
        from asr_helpers.data.audio import SAMPLE_RATE, load_audio
        from asr_helpers.plots import spectrogram_figure
        views = self.model.spectrograms(batch.waves[:1].to(self.device), batch.wave_lengths[:1].to(self.device))
        for name, image in views.items():
            tracker.image(f"train/{name}", spectrogram_figure(image.cpu(), batch.texts[0]), self.step)
        wave = batch.waves[0, : batch.wave_lengths[0]].cpu().numpy()
        tracker.audio("train/augmented_audio", wave, SAMPLE_RATE, self.step, caption=batch.texts[0])
        self._log_model_media(tracker, "train", batch)
        for split, utterances in list(self.data.dev.items())[:1]:
            wave = load_audio(utterances[0].path)
            views = self.model.spectrograms(wave[None].to(self.device), torch.tensor([len(wave)], device=self.device))
            if "spectrogram" in views:
                tracker.image(f"eval/{split}/spectrogram", spectrogram_figure(views["spectrogram"].cpu(),
                                                                              utterances[0].text), self.step)
