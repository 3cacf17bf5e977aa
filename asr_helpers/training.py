"""The training loop: CTC, AdamW + OneCycle, AMP, clipping, accumulation, checkpoints, DDP.

One ``Trainer`` per run. It stops cleanly at a wall-clock budget (Kaggle sessions end at 12 h),
writes ``last.pt`` every few minutes and ``best.pt`` by dev WER, and resumes mid-epoch with the
same batches, RNG states and scheduler position, so a resumed run ends with the same weights as
an uninterrupted one. Launched by ``torchrun`` it trains on every visible GPU with DDP.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections import Counter
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from asr_helpers.augment import WaveAugment, spec_augment_from_preset
from asr_helpers.checkpoint import load_checkpoint, rng_state, save_atomic, set_rng_state
from asr_helpers.config import TrainConfig
from asr_helpers.corpora import prepare_corpus
from asr_helpers.dataset import Batch, LengthBucketSampler, SpeechDataset, collate
from asr_helpers.evaluation import autocast_context, ctc_loss, evaluate
from asr_helpers.features import LogMelFeatures
from asr_helpers.manifest import Utterance, load_splits
from asr_helpers.model import DeepSpeech2, config_to_dict, model_config
from asr_helpers.rundir import RunDir
from asr_helpers.runtime import resolve_device, resolve_precision, seed_everything
from asr_helpers.schedule import one_cycle, session_progress
from asr_helpers.text import CharTokenizer
from asr_helpers.tracking import Tracker

log = logging.getLogger(__name__)


def build_tokenizer(config: TrainConfig, texts: list[str]):
    if config.tokenizer == "char":
        return CharTokenizer()
    if config.tokenizer == "bpe":
        from asr_helpers.text import train_bpe
        return train_bpe(texts, config.bpe_vocab_size)
    raise ValueError(f"tokenizer must be 'char' or 'bpe', not {config.tokenizer!r}")


def ctc_feasible(utterances: list[Utterance], tokenizer, model: DeepSpeech2, features: LogMelFeatures,
                 max_speed_factor: float = 1.0) -> tuple[list[Utterance], int]:
    """Drop utterances whose transcript needs more CTC frames than the audio yields.

    CTC needs one frame per token plus a blank between repeated tokens; speed perturbation can
    make the audio up to ``max_speed_factor`` times shorter.
    """
    samples = torch.tensor([int(u.seconds * features.sample_rate / max_speed_factor) for u in utterances])
    frames = model.output_lengths(features.frame_lengths(samples)).tolist()
    kept = []
    for utt, available in zip(utterances, frames):
        ids = tokenizer.encode(utt.text)
        needed = len(ids) + sum(a == b for a, b in zip(ids, ids[1:]))
        if needed <= available:
            kept.append(utt)
    return kept, len(utterances) - len(kept)


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", 1))
    return int(os.environ.get("RANK", 0)), world, int(os.environ.get("LOCAL_RANK", 0))


class Trainer:
    """Builds data, model and optimizer from a ``TrainConfig`` and trains with ``fit()``."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.rank, self.world, local_rank = _distributed()
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if self.world > 1 and torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            self.device = torch.device("cuda", local_rank)
        else:
            self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.files = RunDir.named(config.run_name)
        self.run_dir = self.files.path
        self.run_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(config.seed)
        self._build_data_and_model()
        self.skips = Counter()
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_wer = math.inf
        self.trained_seconds = 0.0
        self.last_eval_step, self.last_eval = -1, {}
        self.progress = 0.0
        if config.resume:
            self._resume(self.files.checkpoint("last.pt"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _build_data_and_model(self) -> None:
        c = self.config
        roots = prepare_corpus(c.corpus, c.train_splits + c.dev_splits, c.data_root, c.synth_minutes, c.seed)
        train = load_splits(roots, c.train_splits, max_seconds=c.max_seconds)
        if not train:
            raise RuntimeError(f"no usable training utterances in {c.train_splits} ({roots})")
        self.tokenizer = build_tokenizer(c, [u.text for u in train])
        rnn_mode = c.rnn_mode if c.rnn_mode != "auto" else ("packed" if self.device.type == "cuda" else "masked")
        self.model_config = model_config(c.model_size, self.tokenizer.vocab_size, rnn_mode=rnn_mode)
        self.features = LogMelFeatures.for_model(self.model_config).to(self.device)
        self.model = DeepSpeech2(self.model_config).to(self.device)
        self.wave_augment = WaveAugment.from_config(c.augment)
        self.spec_augment = spec_augment_from_preset(c.augment, self.model_config.n_mels).to(self.device)
        train, infeasible = ctc_feasible(train, self.tokenizer, self.model, self.features,
                                         self.wave_augment.max_speed_factor)
        if infeasible:
            print(f"dropped {infeasible} training utterances whose transcript is too long for CTC")
        self.dev = {split: self._dev_subset(load_splits(roots, [split])) for split in c.dev_splits}
        self.train_set = SpeechDataset(train, self.tokenizer, self.wave_augment, seed=c.seed)
        self.sampler = LengthBucketSampler([u.seconds for u in train], c.batch_seconds, c.max_batch_size,
                                           seed=c.seed, num_replicas=self.world, rank=self.rank)
        steps_per_epoch = math.ceil(len(self.sampler) / c.grad_accum)
        self.total_steps = steps_per_epoch * c.epochs
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self._lr(0.0), weight_decay=c.weight_decay)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.net = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
                    if self.world > 1 else self.model)
        if self.is_main:
            print(f"model {c.model_size}: {self.model.parameter_count() / 1e6:.2f} M parameters, rnn_mode={rnn_mode}; "
                  f"{len(train)} training utterances ({sum(u.seconds for u in train) / 3600:.2f} h), "
                  f"{len(self.sampler)} batches/epoch, padding {self.sampler.padding_fraction():.1%}; "
                  f"device {self.device}, precision {self.precision}, world size {self.world}")

    def _dev_subset(self, utterances: list[Utterance]) -> list[Utterance]:
        """A fixed random subset (same every evaluation) to keep evaluation cheap."""
        limit = self.config.eval_utterances
        if not limit or len(utterances) <= limit:
            return utterances
        return sorted(random.Random(self.config.seed).sample(utterances, limit), key=lambda u: u.id)

    def _loader(self) -> DataLoader:
        workers = self.config.num_workers
        # Its own generator, so creating the loader does not consume the global RNG (exact resume).
        generator = torch.Generator().manual_seed(self.config.seed * 1000 + self.epoch)
        return DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=collate, num_workers=workers,
                          pin_memory=self.device.type == "cuda", prefetch_factor=4 if workers else None,
                          generator=generator)

    # ---- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(), "model_config": config_to_dict(self.model_config),
            "tokenizer": self.tokenizer.to_dict(), "train_config": self.config.to_dict(),
            "optimizer": self.optimizer.state_dict(), "progress": self.progress,
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

    def _resume(self, path: Path) -> None:
        state = load_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(state["model"])
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
    def _train_batch(self, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            feats, lengths = self.features(batch.waves, batch.wave_lengths)
            feats = self.spec_augment(feats, lengths)
        with autocast_context(self.device, self.precision):
            log_probs, out_lengths = self.net(feats, lengths)
        return ctc_loss(log_probs, out_lengths, batch.targets, batch.target_lengths, self.tokenizer.blank_id)

    def _lr(self, progress: float) -> float:
        return one_cycle(progress, self.config.lr, self.config.warmup_fraction)

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
        self.progress = self._agreed(session_progress(self.step, self.total_steps, self._session_start_progress,
                                                      time.monotonic() - self._session_start, self._budget))
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.progress)
        return grad_norm

    def fit(self) -> dict:
        """Train until the epochs, ``max_steps`` or the time budget run out; returns final dev metrics."""
        c = self.config
        tracker = Tracker(self.run_dir, c.to_dict(), c.wandb_mode, active=self.is_main)
        if self.is_main:
            self.files.config.write_text(json.dumps(c.to_dict(), indent=2))
        started = time.monotonic()
        last_save = started
        self._session_start, self._session_start_progress = started, self.progress
        self._budget = c.time_budget_minutes * 60 if c.time_budget_minutes else None
        stop_reason = "epochs done"
        evals_at = self._eval_points()
        try:
            while self.epoch < c.epochs and stop_reason == "epochs done":
                self.sampler.set_epoch(self.epoch)
                self.sampler.load_state_dict({"epoch": self.epoch, "position": self.batch_in_epoch})
                self.train_set.set_epoch(self.epoch)
                bar = tqdm(total=len(self.sampler), initial=self.batch_in_epoch, disable=not self.is_main,
                           desc=f"epoch {self.epoch + 1}/{c.epochs}", mininterval=5, leave=False)
                window_seconds, window_start, loss_sum, loss_count = 0.0, time.monotonic(), 0.0, 0
                for batch in self._loader():
                    self.batch_in_epoch += 1
                    bar.update()
                    if batch is None:
                        self.skips["batch with no readable audio"] += 1
                        continue
                    if batch.skipped:
                        self.skips["unreadable audio"] += batch.skipped
                    batch = batch.to(self.device)
                    loss = self._train_batch(batch)
                    if not self._all_finite(loss):
                        self.skips["non-finite loss"] += 1
                        self.optimizer.zero_grad(set_to_none=True)
                        continue
                    self.scaler.scale(loss / c.grad_accum).backward()
                    loss_sum, loss_count = loss_sum + float(loss.detach()), loss_count + 1
                    window_seconds += batch.audio_seconds
                    self.trained_seconds += batch.audio_seconds * self.world
                    if self.batch_in_epoch % c.grad_accum and self.batch_in_epoch < len(self.sampler):
                        continue
                    grad_norm = self._optimizer_step()
                    if self.step % c.log_every == 0 and self.is_main:
                        elapsed = time.monotonic() - window_start
                        values = {"loss": loss_sum / max(loss_count, 1), "grad_norm": grad_norm,
                                  "lr": self.optimizer.param_groups[0]["lr"], "epoch": self.epoch + self.batch_in_epoch / len(self.sampler),
                                  "step_time": elapsed / c.log_every, "audio_sec_per_sec": window_seconds * self.world / elapsed,
                                  "minutes": (time.monotonic() - started) / 60, "audio_hours": self.trained_seconds / 3600}
                        tracker.scalars("train", values, self.step)
                        bar.set_postfix(loss=f"{values['loss']:.3f}", audio_x=f"{values['audio_sec_per_sec']:.0f}")
                        window_seconds, window_start, loss_sum, loss_count = 0.0, time.monotonic(), 0.0, 0
                    if self.batch_in_epoch in evals_at:
                        self._evaluate(tracker, started)
                    now = time.monotonic()
                    if self._budget and self._agreed(float(now - started > self._budget)):
                        stop_reason = "time budget"
                        break
                    if c.max_steps is not None and self.step >= c.max_steps:
                        stop_reason = "max_steps"
                        break
                    if now - last_save > c.checkpoint_minutes * 60:
                        self.save("last.pt")
                        last_save = now
                bar.close()
                if stop_reason == "epochs done":
                    if self.is_main and self.epoch % c.media_every_epochs == 0:
                        self._log_media(tracker, batch)
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            self.save("last.pt")
            evaluated_now = self.last_eval_step == self.step
            final = self._evaluate(tracker, started) if stop_reason != "max_steps" and not evaluated_now else {}
            final = final or self.last_eval
            summary = {"stop_reason": stop_reason, "steps": self.step, "epochs": self.epoch,
                       "minutes": (time.monotonic() - started) / 60, "audio_hours": self.trained_seconds / 3600,
                       "skips": dict(self.skips), "final": final, "best_dev_wer": self.best_wer,
                       "parameters": self.model.parameter_count(), "precision": self.precision, "device": str(self.device)}
            if self.is_main:
                self.files.summary.write_text(json.dumps(summary, indent=2))
                print(f"stopped: {stop_reason} after {summary['minutes']:.1f} min, {self.step} steps; "
                      f"skips: {dict(self.skips) or 'none'}")
            return summary
        finally:
            tracker.finish()

    def _eval_points(self) -> set[int]:
        """Batch positions within an epoch after which the dev splits are evaluated."""
        n = len(self.sampler)
        return {max(1, round(n * k / self.config.evals_per_epoch)) for k in range(1, self.config.evals_per_epoch + 1)}

    def _agreed(self, value: float) -> float:
        """The largest value over all ranks, so time-based decisions are identical under DDP."""
        if self.world == 1:
            return value
        tensor = torch.tensor(value, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor)

    def _all_finite(self, loss: torch.Tensor) -> bool:
        """Whether every rank's loss is finite (all ranks must skip together under DDP)."""
        finite = torch.isfinite(loss.detach()).float()
        if self.world > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite)

    def _evaluate(self, tracker: Tracker, started: float) -> dict:
        """Greedy WER/CER and loss on each dev split; keeps ``best.pt`` by the first split's WER."""
        self.last_eval_step = self.step
        if not self.is_main:
            return {}
        results = {}
        for split, utterances in self.dev.items():
            metrics, rows = evaluate(self.model, self.features, utterances, self.tokenizer, self.device, self.precision)
            metrics["minutes"] = (time.monotonic() - started) / 60
            metrics["epoch"] = self.epoch + self.batch_in_epoch / len(self.sampler)
            tracker.scalars(f"eval/{split}", metrics, self.step)
            sample = random.Random(self.step).sample(rows, min(8, len(rows)))
            tracker.table(f"samples/{split}", ["id", "target", "prediction", "cer", "wer"], sample, self.step)
            results[split] = metrics
            print(f"  step {self.step} {split}: loss {metrics['loss']:.3f}  WER {metrics['wer']:.3f}  CER {metrics['cer']:.3f}")
        self.model.train()
        self.last_eval = results
        first = results[next(iter(results))] if results else None
        if first and first["wer"] < self.best_wer:
            self.best_wer = first["wer"]
            self.save("best.pt")
        return results

    def _log_media(self, tracker: Tracker, batch: Batch | None) -> None:
        """Spectrograms of a train and a dev utterance, and augmented audio, once per epoch."""
        from asr_helpers.plots import spectrogram_figure
        if batch is None:
            return
        with torch.no_grad():
            feats, lengths = self.features(batch.waves[:1], batch.wave_lengths[:1])
            augmented = self.spec_augment(feats, lengths)
        tracker.image("train/spectrogram", spectrogram_figure(feats[0].cpu(), batch.texts[0]), self.step)
        tracker.image("train/spectrogram_augmented", spectrogram_figure(augmented[0].cpu(), batch.texts[0]), self.step)
        wave = batch.waves[0, : batch.wave_lengths[0]].cpu().numpy()
        tracker.audio("train/augmented_audio", wave, self.features.sample_rate, self.step, caption=batch.texts[0])
        for split, utterances in list(self.dev.items())[:1]:
            from asr_helpers.audio import load_audio
            wave = load_audio(utterances[0].path)
            feats, lengths = self.features(wave[None].to(self.device), torch.tensor([len(wave)], device=self.device))
            tracker.image(f"eval/{split}/spectrogram", spectrogram_figure(feats[0].cpu(), utterances[0].text), self.step)


def train(config: TrainConfig | dict) -> dict:
    """Train a model from a config (a ``TrainConfig`` or a dict of its fields)."""
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    trainer = Trainer(config)
    try:
        return trainer.fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(config: TrainConfig | dict, gpus: int | None = None) -> dict:
    """Train in this process, or with ``torchrun`` on every visible GPU when there are several."""
    import subprocess
    import sys

    import yaml
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    gpus = torch.cuda.device_count() if gpus is None else gpus
    if gpus <= 1:
        return train(config)
    files = RunDir.named(config.run_name)
    files.path.mkdir(parents=True, exist_ok=True)
    config_path = files.launch_config
    config_path.write_text(yaml.safe_dump(config.to_dict()))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
               "-m", "asr_helpers", "train", "--config", str(config_path)]
    print("launching:", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return files.read_summary()
