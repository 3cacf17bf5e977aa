"""The loop with a plug-in model and in-memory data: accumulation, skipped micro-batches, learning."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from asr_helpers import paths
from asr_helpers.training.checkpoint import load_checkpoint
from asr_helpers.training.config import TrainConfig
from asr_helpers.training.loaders import TrainData
from asr_helpers.data.dataset import LengthBucketSampler
from asr_helpers.models.recognizer import ModelOutput, SpeechModel
from asr_helpers.data.text import CharTokenizer
from asr_helpers.training.rundir import RunDir
from asr_helpers.training.tracking import read_jsonl
from asr_helpers.training.trainer import Trainer
from asr_helpers.training.run import train

POISON = 99  # a target that makes the toy model's loss NaN


class Points(Dataset):
    """Fixed vectors with an integer target each, shaped like ``SpeechDataset`` items."""

    def __init__(self, xs: torch.Tensor, ys: list[int]):
        self.xs, self.ys = xs, ys

    def __len__(self) -> int:
        return len(self.ys)

    def set_epoch(self, epoch: int) -> None:
        pass

    def __getitem__(self, index: int) -> dict:
        return {"wave": self.xs[index], "tokens": torch.tensor([self.ys[index]]), "text": "", "id": str(index)}


class Regression(SpeechModel):
    """Least squares on the 'wave' vectors: no CTC, no features, no BatchNorm."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 1, bias=False)

    def forward(self, batch) -> ModelOutput:
        targets = batch.targets.float()
        loss = ((self.linear(batch.waves)[:, 0] - targets) ** 2).mean()
        return ModelOutput(loss * torch.nan if (batch.targets == POISON).any() else loss)

    def transcribe(self, output: ModelOutput) -> list[str]:
        return []


def toy_data(xs: torch.Tensor, ys: list[int], per_batch: int) -> TrainData:
    sampler = LengthBucketSampler([1.0] * len(ys), float(per_batch), shuffle=False)  # batches in index order
    return TrainData(CharTokenizer(), Points(xs, ys), sampler, dev={})


def toy_config(name: str, **overrides) -> TrainConfig:
    settings = dict(run_name=name, epochs=1, batch_seconds=24.0, max_seconds=1.0, lr=0.05, warmup_fraction=0.0,
                    num_workers=0, wandb_mode="disabled", media_every_epochs=0, device="cpu")
    return TrainConfig(**{**settings, **overrides})


def fit(name: str, data: TrainData, grad_accum: int) -> tuple[dict, torch.Tensor]:
    model = Regression()
    summary = Trainer(toy_config(name, grad_accum=grad_accum), data, model).fit()
    return summary, model.linear.weight.detach().clone()


def test_accumulating_k_micro_batches_equals_one_batch_k_times_larger():
    xs, ys = torch.randn(24, 4), [i % 4 for i in range(24)]
    big, big_weights = fit("big", toy_data(xs, ys, per_batch=6), grad_accum=1)
    small, small_weights = fit("small", toy_data(xs, ys, per_batch=2), grad_accum=3)
    assert big["steps"] == small["steps"] == 4
    assert torch.allclose(big_weights, small_weights, atol=1e-6)
    assert not torch.allclose(small_weights, Regression().linear.weight), "no step was applied"


def test_a_non_finite_micro_batch_is_skipped_alone_and_the_window_still_steps():
    xs = torch.randn(4, 4)
    poisoned, poisoned_weights = fit("poisoned", toy_data(xs, [1, 2, POISON, POISON], per_batch=2), grad_accum=2)
    zeroed = xs.clone()
    zeroed[2:] = 0  # a micro-batch with zero gradient: what skipping it must amount to
    _, reference_weights = fit("reference", toy_data(zeroed, [1, 2, 0, 0], per_batch=2), grad_accum=2)
    assert poisoned["skips"] == {"non-finite loss": 1} and poisoned["steps"] == 1
    assert torch.allclose(poisoned_weights, reference_weights, atol=1e-7)
    assert not torch.allclose(poisoned_weights, Regression().linear.weight), "the accumulated window was thrown away"


def test_loss_falls_over_a_few_dozen_steps_on_the_tiny_corpus(tiny_corpus):
    summary = train(dict(corpus="librispeech", data_root=str(tiny_corpus), run_name="learn", dev_splits=[],
                         model_size="tiny", epochs=3, batch_seconds=2.5, max_seconds=2.5, lr=3e-3, augment="none",
                         num_workers=0, wandb_mode="disabled", log_every=1, media_every_epochs=0))
    losses = [r["loss"] for r in read_jsonl(paths.runs_dir() / "learn" / "history.jsonl") if r["kind"] == "train"]
    assert summary["steps"] == len(losses) >= 24
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.6 * first, f"loss went from {first:.3f} to {last:.3f}"


def test_a_time_budget_stop_on_an_epochs_last_batch_resumes_at_the_next_epoch():
    xs, ys = torch.randn(2, 4), [1, 2]
    stopped = Trainer(toy_config("budget", epochs=3, time_budget_minutes=1e-9), toy_data(xs, ys, 2), Regression()).fit()
    assert stopped["stop_reason"] == "time budget" and stopped["steps"] == 1  # one batch per epoch
    state = load_checkpoint(paths.runs_dir() / "budget" / "last.pt")
    assert (state["epoch"], state["sampler"]["position"]) == (1, 0)
    trainer = Trainer(toy_config("budget", epochs=3), toy_data(xs, ys, 2), Regression())
    trainer.resume()
    resumed = trainer.fit()
    assert resumed["stop_reason"] == "epochs done" and resumed["steps"] == 3


def test_a_checkpoint_saved_at_an_epochs_end_by_older_code_still_resumes():
    xs, ys = torch.randn(2, 4), [1, 2]
    Trainer(toy_config("old", epochs=3, max_steps=1), toy_data(xs, ys, 2), Regression()).fit()
    path = paths.runs_dir() / "old" / "last.pt"
    state = load_checkpoint(path)
    state["epoch"], state["sampler"] = 0, {"epoch": 0, "position": 1}  # older code saved the spent epoch
    torch.save(state, path)
    trainer = Trainer(toy_config("old", epochs=3), toy_data(xs, ys, 2), Regression())
    trainer.resume()
    resumed = trainer.fit()
    assert resumed["stop_reason"] == "epochs done" and resumed["steps"] == 3 and resumed["epochs"] == 3


class Plotting(Regression):
    """The toy model with a figure of its own, as the joint model has its attention map."""

    def media(self, batch, step: int) -> dict:
        import matplotlib.pyplot as plt
        figure, ax = plt.subplots()
        ax.set_title(f"step {step}: {len(batch.ids)} points")
        plt.close(figure)
        return {"fit": figure}


def test_the_loop_logs_whatever_figures_the_model_offers_under_their_names():
    xs, ys = torch.randn(4, 4), [1, 2, 3, 0]
    Trainer(toy_config("plots", media_every_epochs=1), toy_data(xs, ys, 2), Plotting()).fit()
    files = RunDir.named("plots")
    assert [p.name for p in files.media_files("train/fit", "png")] == ["train_fit-0000002.png"]
    assert not files.media_files("*attention*", "png"), "the loop adds no figure of its own"
