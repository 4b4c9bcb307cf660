"""Block-by-block weight offload, applied to a built DiT from outside (``RunConfig.offload = "blocks"``).

The blocks' weights stay in host memory (pinned when the device is a GPU); a forward pre-hook copies a
block's weights to the device just before it runs and a forward hook drops the device copy after, so the
device holds the embedders, one block and the activations. Slower (every forward copies all weights once),
for GPUs smaller than the weights.
"""

from __future__ import annotations

import torch
from torch import nn


def offload_blocks(dit: nn.Module, device: torch.device) -> nn.Module:
    """Keep ``dit.blocks`` on the host and run each on ``device``; returns ``dit`` (changed in place)."""
    pin = device.type == "cuda"
    for block in dit.blocks:
        host = {name: _to_host(t, pin) for name, t in _tensors(block)}

        def load(module: nn.Module, args, host=host) -> None:
            for name, t in _tensors(module):
                t.data = host[name].to(device, non_blocking=True)

        def drop(module: nn.Module, args, output, host=host) -> None:
            for name, t in _tensors(module):
                t.data = host[name]

        drop(block, (), None)
        block.register_forward_pre_hook(load)
        block.register_forward_hook(drop)
    return dit


def _tensors(module: nn.Module):
    yield from module.named_parameters()
    yield from module.named_buffers()


def _to_host(t: torch.Tensor, pin: bool) -> torch.Tensor:
    host = t.detach().to("cpu")
    return host.pin_memory() if pin else host
