"""A training run from a ``TrainConfig``: data, model and loop put together, on one device or with DDP.

``train`` is what notebook 03 and ``python -m asr_helpers train`` call: ``data.build_data`` reads
the corpus, ``registry.build_model`` makes the network for that vocabulary, and
``trainer.Trainer`` runs the loop. ``launch`` relaunches itself under ``torchrun`` when several
GPUs are visible.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from asr_helpers.training.config import TrainConfig
from asr_helpers.training.loaders import build_data, describe
from asr_helpers.training.distributed import placement
from asr_helpers.models.registry import build_model
from asr_helpers.training.rundir import RunDir
from asr_helpers.runtime import seed_everything
from asr_helpers.training.trainer import Trainer


def build_trainer(config: TrainConfig) -> Trainer:
    """Data, model and loop for ``config`` on this process's device, resumed from ``last.pt`` if asked."""
    place = placement(config.device)
    seed_everything(config.seed)
    data = build_data(config, place.rank, place.world, pin_memory=place.device.type == "cuda")
    rnn_mode = config.rnn_mode if config.rnn_mode != "auto" else ("packed" if place.device.type == "cuda" else "masked")
    model = build_model(config.model, config.model_size, data.tokenizer, config.model_settings(), rnn_mode=rnn_mode,
                        augment=config.augment)
    dropped = data.keep_learnable(model.learnable)
    if dropped:
        print(f"dropped {dropped} training utterances whose transcript is too long for CTC")
    trainer = Trainer(config, data, model, place)
    if place.is_main:
        print(f"model {config.model} {config.model_size}: {model.parameter_count() / 1e6:.2f} M parameters, rnn_mode={rnn_mode}; "
              f"{describe(data)}; device {place.device}, precision {trainer.precision}, world size {place.world}")
    if config.resume:
        trainer.resume()
    return trainer


def train(config: TrainConfig | dict) -> dict:
    """Train a model from a config (a ``TrainConfig`` or a dict of its fields); returns the run summary."""
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    try:
        return build_trainer(config).fit()
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
