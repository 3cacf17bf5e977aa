"""Trainer behaviour on a tiny tone corpus: resume exactness, DDP equivalence, budget, bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from asr_helpers import paths
from asr_helpers.training.checkpoint import load_checkpoint, load_model
from asr_helpers.training.config import TrainConfig
from asr_helpers.models.deepspeech2 import DeepSpeech2, model_config
from asr_helpers.training.tracking import read_jsonl
from asr_helpers.training.trainer import optimizer_groups
from asr_helpers.training.run import train

BASE = dict(corpus="librispeech", dev_splits=["dev-clean"], model_size="tiny", epochs=2, batch_seconds=6.0, max_seconds=6.0, lr=3e-3,
            augment="full", num_workers=0, wandb_mode="disabled", eval_utterances=3, log_every=1)


def _weights(run: str) -> dict:
    return load_checkpoint(paths.runs_dir() / run / "last.pt")["model"]


def _stop_and_resume(corpus, run: str, max_steps: int) -> tuple[dict, dict]:
    """Train until ``max_steps``, then resume to the end; returns the stopped checkpoint and the final summary."""
    stopped = train(dict(BASE, run_name=run, data_root=str(corpus), max_steps=max_steps))
    assert stopped["stop_reason"] == "max_steps"
    state = load_checkpoint(paths.runs_dir() / run / "last.pt")
    return state, train(dict(BASE, run_name=run, data_root=str(corpus), resume=True))


def test_resume_mid_epoch_or_after_an_epochs_last_batch_ends_with_identical_weights(tiny_corpus):
    full = train(dict(BASE, run_name="full", data_root=str(tiny_corpus)))
    assert full["steps"] > 4 and full["stop_reason"] == "epochs done"
    history = read_jsonl(paths.runs_dir() / "full" / "history.jsonl")
    first_epoch_steps = next(r["step"] for r in history if r["kind"] == "train" and r["epoch"] == 1.0)
    state, resumed = _stop_and_resume(tiny_corpus, "split", full["steps"] // 2 + 1)
    assert state["sampler"]["position"] > 0, "the interruption must fall mid-epoch"
    assert resumed["steps"] == full["steps"]
    state, resumed = _stop_and_resume(tiny_corpus, "edge", first_epoch_steps)
    assert (state["epoch"], state["sampler"]["position"]) == (1, 0), "the finished epoch is closed before saving"
    assert resumed["stop_reason"] == "epochs done" and resumed["steps"] == full["steps"]
    for run in ("split", "edge"):
        a, b = _weights("full"), _weights(run)
        assert all(torch.equal(a[k], b[k]) for k in a), run


def test_checkpoint_is_self_describing(tiny_corpus):
    train(dict(BASE, run_name="desc", data_root=str(tiny_corpus), epochs=1))
    model, tokenizer, config = load_model(paths.runs_dir() / "desc" / "best.pt")
    assert tokenizer.vocab_size == model.config.vocab_size == 29
    assert config["model_size"] == "tiny"
    history = (paths.runs_dir() / "desc" / "history.jsonl").read_text()
    for key in ('"loss"', '"grad_norm"', '"lr"', '"audio_sec_per_sec"', '"eval/dev-clean"', '"cer"'):
        assert key in history


def test_time_budget_stops_cleanly_and_saves(tiny_corpus):
    summary = train(dict(BASE, run_name="budget", data_root=str(tiny_corpus), epochs=50, time_budget_minutes=0.001))
    assert summary["stop_reason"] == "time budget" and summary["steps"] <= 2
    assert (paths.runs_dir() / "budget" / "last.pt").exists()


def test_unreadable_audio_is_skipped_and_counted(tiny_corpus):
    victim = next((tiny_corpus / "train-clean-100").rglob("*.flac"))
    summary_before = train(dict(BASE, run_name="ok", data_root=str(tiny_corpus), epochs=1))
    assert summary_before["skips"] == {}
    victim.write_bytes(b"\x00" * 10)  # corrupted after indexing: the header check cannot see it
    summary = train(dict(BASE, run_name="bad", data_root=str(tiny_corpus), epochs=1))
    assert summary["skips"].get("unreadable audio") == 1


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="max_seconds"):
        TrainConfig(batch_seconds=10, max_seconds=20)


def test_ddp_two_processes_end_with_identical_weights(tiny_corpus, tmp_path):
    script = tmp_path / "ddp_check.py"
    script.write_text(
        "import sys, torch, torch.distributed as dist\n"
        "from asr_helpers.training.run import build_trainer\n"
        "from asr_helpers.training.config import TrainConfig\n"
        "config = TrainConfig(corpus='librispeech', data_root=sys.argv[1], run_name='ddp', dev_splits=['dev-clean'], model_size='tiny',\n"
        "    epochs=1, batch_seconds=6.0, max_seconds=6.0, num_workers=0, wandb_mode='disabled', max_steps=3)\n"
        "trainer = build_trainer(config)\n"
        "trainer.fit()\n"
        "flat = torch.cat([p.detach().flatten() for p in trainer.model.net.parameters()])\n"
        "torch.save(flat, sys.argv[2] + f'/rank{dist.get_rank()}.pt')\n"
        "dist.destroy_process_group()\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(script), str(tiny_corpus), str(tmp_path)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    torch.manual_seed(0)
    initial = torch.cat([p.detach().flatten() for p in DeepSpeech2(model_config("tiny", 29)).parameters()])
    assert torch.equal(rank0, rank1), "DDP ranks diverged"
    assert not torch.equal(rank0, initial), "no training step was applied"


def test_media_every_zero_epochs_logs_no_media(tiny_corpus):
    summary = train(dict(BASE, run_name="quiet", data_root=str(tiny_corpus), epochs=1, media_every_epochs=0))
    assert summary["stop_reason"] == "epochs done"
    assert not list((paths.runs_dir() / "quiet" / "media").glob("*"))


def test_weight_decay_only_on_matrices_and_kernels():
    model = DeepSpeech2(model_config("tiny", 29))
    decay, no_decay = optimizer_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} | {id(p) for p in no_decay["params"]} == {id(p) for p in model.parameters()}
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert any(p is model.convs[0][1].weight for p in no_decay["params"])  # BatchNorm scale
    assert any(p is model.head.bias for p in no_decay["params"])
    assert any(p is model.head.weight for p in decay["params"])


DDP_SKIP_SCRIPT = """
import dataclasses, json, sys, torch, torch.distributed as dist
from asr_helpers.training.run import build_trainer
from asr_helpers.training.config import TrainConfig
config = TrainConfig(corpus='librispeech', data_root=sys.argv[1], run_name='ddp-skip', dev_splits=['dev-clean'],
    model_size='tiny', epochs=1, batch_seconds=4.0, max_seconds=4.0, num_workers=0, wandb_mode='disabled', grad_accum=2)
trainer = build_trainer(config)
assert len(trainer.sampler) >= 2
if dist.get_rank() == 1:  # every file of this rank's second batch, the window's last, becomes unreadable
    bad = sys.argv[2] + '/bad.flac'
    open(bad, 'wb').write(b'not audio')
    trainer.sampler.set_epoch(0)
    for index in trainer.sampler._my_batches()[1]:
        utterances = trainer.data.train_set.utterances
        utterances[index] = dataclasses.replace(utterances[index], path=bad)
summary = trainer.fit()
flat = torch.cat([p.detach().flatten() for p in trainer.model.net.parameters()])
torch.save(flat, sys.argv[2] + f'/rank{dist.get_rank()}.pt')
json.dump(summary['skips'], open(sys.argv[2] + f'/skips{dist.get_rank()}.json', 'w'))
dist.destroy_process_group()
"""


def test_ddp_rank_with_an_unreadable_batch_skips_it_with_the_other_rank_and_still_steps(tiny_corpus, tmp_path):
    script = tmp_path / "ddp_skip.py"
    script.write_text(DDP_SKIP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(script), str(tiny_corpus), str(tmp_path)], env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    skips = [json.loads((tmp_path / f"skips{rank}.json").read_text()) for rank in (0, 1)]
    assert skips[1]["batch with no readable audio"] == 1 and skips[0]["batch skipped with another rank"] == 1
    # the skipped micro-batch closed an accumulation window: its gradients were averaged by hand
    assert torch.equal(torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")), "DDP ranks diverged"
