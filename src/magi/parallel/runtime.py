"""Process-group setup from a torchrun-style environment, returned as a value (no module state)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(env: Mapping[str, str]) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, MASTER_ADDR/PORT); single process if
    WORLD_SIZE is unset or 1. gloo on CPU, nccl when CUDA is available."""
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size())


def shutdown(info: DistInfo) -> None:
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
