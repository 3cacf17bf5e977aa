"""Where this process trains (rank, world size, device) and the decisions all ranks must share.

Under DDP every rank must take the same branch at every collective: skip the same batches, stop
at the same step. Each such decision goes through ``all_ranks`` or ``agreed_max`` before it is
acted on, so one rank's unreadable batch or slow clock cannot leave the others waiting forever.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from asr_helpers.runtime import resolve_device


@dataclass(frozen=True)
class Placement:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_ranks(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank."""
        if self.world == 1:
            return flag
        tensor = torch.tensor(float(flag), device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return bool(tensor)

    def agreed_max(self, value: float) -> float:
        """The largest ``value`` over all ranks (time-based decisions then match)."""
        if self.world == 1:
            return value
        tensor = torch.tensor(value, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor)

    def average_gradients(self, model: torch.nn.Module) -> None:
        """Average every gradient over the ranks (what DDP's backward does), for a window DDP did not reduce."""
        for param in model.parameters():
            if param.grad is not None:
                dist.all_reduce(param.grad)
                param.grad /= self.world


def placement(device: str = "auto") -> Placement:
    """This process's rank and device; joins the process group when started by ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if world > 1 and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return Placement(rank, world, torch.device("cuda", local_rank))
    return Placement(rank, world, resolve_device(device))
