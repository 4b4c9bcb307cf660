"""Data parallelism for training: one process, or FSDP2 (``fully_shard``) over a process group.

The training loop takes one of these as an argument and never looks inside the model. The contract:

* Every rank draws the same global batch and noise (a step's generator is seeded by (seed, step) alone)
  and runs the model on its own rows, ``shard.rows(batch_size)``. An objective returns this rank's share
  of the global loss, scaled so that the mean over ranks *is* the global loss; FSDP averages gradients
  over ranks, so the update equals the one-process update on the whole batch.
* Checkpoints hold full (unsharded) tensors in the one-process layout, written by rank 0 and read back
  by rank 0 and broadcast; so a run may resume on a different number of processes.

FSDP2 shards each transformer block (every module of the model's ``nn.ModuleList`` children) and then the
root; the EMA copy is sharded the same way, so its update is a local lerp of matching shards.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn

from magi.io.weights import check_state_dict, load_state

ENTRY_POINTS = ("encode_distribution", "decode")  # the VAE's training entry points (besides forward)


@dataclass(frozen=True)
class BatchShard:
    """Rows ``index * B/count .. (index + 1) * B/count`` of a global batch of B."""

    index: int = 0
    count: int = 1

    def rows(self, batch_size: int) -> slice:
        if batch_size % self.count:
            raise ValueError(f"batch size {batch_size} is not divisible by the {self.count} data-parallel ranks")
        size = batch_size // self.count
        return slice(self.index * size, (self.index + 1) * size)


class DataParallelism(Protocol):
    shard: BatchShard
    is_main: bool

    def prepare(self, model: nn.Module) -> nn.Module: ...
    def mean(self, value: Tensor) -> float: ...
    def barrier(self) -> None: ...
    def model_state(self, module: nn.Module) -> dict[str, Tensor]: ...
    def load_model_state(self, module: nn.Module, state: dict[str, Tensor]) -> None: ...
    def optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]: ...
    def load_optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                             state: dict[str, Any]) -> None: ...


class SingleProcess:
    """Everything local: the plain ``state_dict`` / ``load_state_dict`` of model and optimizer."""

    shard = BatchShard()
    is_main = True

    def prepare(self, model: nn.Module) -> nn.Module:
        return model

    def mean(self, value: Tensor) -> float:
        return value.item()

    def barrier(self) -> None:
        pass

    def model_state(self, module: nn.Module) -> dict[str, Tensor]:
        return module.state_dict()

    def load_model_state(self, module: nn.Module, state: dict[str, Tensor]) -> None:
        load_state(module, state, "checkpoint")

    def optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return optimizer.state_dict()

    def load_optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                             state: dict[str, Any]) -> None:
        optimizer.load_state_dict(state)


class FullyShardedDataParallel:
    """FSDP2 over ``group`` (the default group if None): gloo on CPU, nccl on GPUs."""

    def __init__(self, group: dist.ProcessGroup | None = None):
        self.group = group
        rank, world = dist.get_rank(group), dist.get_world_size(group)
        self.shard = BatchShard(rank, world)
        self.is_main = rank == 0

    def prepare(self, model: nn.Module) -> nn.Module:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

        device = "cuda" if torch.cuda.is_available() else "cpu"
        mesh = init_device_mesh(device, (self.shard.count,))
        for child in model.children():
            if isinstance(child, nn.ModuleList):
                for block in child:
                    fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        for name in ENTRY_POINTS:  # methods called instead of forward must gather the root's weights too
            if hasattr(model, name):
                register_fsdp_forward_method(model, name)
        return model

    def mean(self, value: Tensor) -> float:
        total = value.detach().float().clone()
        dist.all_reduce(total, group=self.group)
        return total.item() / self.shard.count

    def barrier(self) -> None:
        dist.barrier(group=self.group)

    def model_state(self, module: nn.Module) -> dict[str, Tensor]:
        """Full tensors on rank 0 (an empty dict elsewhere). A collective: every rank calls it."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_model_state(self, module: nn.Module, state: dict[str, Tensor]) -> None:
        """``state``: full tensors on rank 0 (others may pass {}); broadcast and sharded."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        if self.is_main:
            check_state_dict(module, state, "checkpoint")  # global shapes: DTensor.shape is the full shape
        set_model_state_dict(module, state,
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=True))

    def optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The one-process ``optimizer.state_dict()`` layout (parameters by index), full, on rank 0."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        full = get_optimizer_state_dict(model, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not self.is_main:
            return {}
        index = {name: i for i, name in enumerate(_parameter_names(model, optimizer))}
        return {"state": {index[name]: values for name, values in full["state"].items()},
                "param_groups": [{**group, "params": [index[name] for name in group["params"]]}
                                 for group in full["param_groups"]]}

    def load_optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                             state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        full: dict[str, Any] = {}
        if self.is_main:
            names = _parameter_names(model, optimizer)
            full = {"state": {names[i]: values for i, values in state["state"].items()},
                    "param_groups": [{**group, "params": [names[i] for i in group["params"]]}
                                     for group in state["param_groups"]]}
        set_optimizer_state_dict(model, optimizer, full,
                                 options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


@contextmanager
def data_parallelism_from_env(env: Mapping[str, str]) -> Iterator[DataParallelism]:
    """FSDP2 over all processes when launched by torchrun with several, else one process; the process
    group is left on exit."""
    from magi.parallel.runtime import init_from_env, shutdown

    world = init_from_env(env)
    try:
        yield FullyShardedDataParallel() if world.world_size > 1 else SingleProcess()
    finally:
        shutdown(world)


def _parameter_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Parameter names in the optimizer's order (the index of each in ``optimizer.state_dict()``)."""
    name_of = {id(p): name for name, p in model.named_parameters()}
    return [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]
