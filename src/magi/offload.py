"""Block weight offload, applied to a built DiT from outside (``RunConfig.offload = "blocks"``).

The blocks' weights stay in host memory, each block's tensors packed into one buffer (pinned when the device
is a GPU: one pinned allocation per block, since PyTorch rounds every pinned allocation up to a power of
two). Each module of a block that holds tensors of its own (a linear, a norm) copies them to the device just
before its forward and drops the copy after, so the device holds the embedders, one layer's weights and the
activations. Hooking the layers rather than the whole block makes every entry point work, not only
``block(...)``: the sampler computes the text's cross-attention keys and values once per prompt through
``block.text_keys_values``. Slower (every forward copies all block weights once), for GPUs smaller than the
weights.
"""

from __future__ import annotations

import torch
from torch import nn

ALIGN = 64  # bytes: every packed tensor starts on such a boundary


def offload_blocks(dit: nn.Module, device: torch.device) -> nn.Module:
    """Keep ``dit.blocks`` on the host and run each of their layers on ``device``; returns ``dit`` (changed in
    place)."""
    pin = device.type == "cuda"
    for block in dit.blocks:
        layers = [m for m in block.modules() if _own(m)]
        host = _pack([_own(m) for m in layers], pin)
        for module, tensors in zip(layers, host):

            def load(module: nn.Module, args, tensors=tensors) -> None:
                _place(module, {name: t.to(device, non_blocking=True) for name, t in tensors.items()})

            def drop(module: nn.Module, args, output, tensors=tensors) -> None:
                _place(module, tensors)

            drop(module, (), None)
            module.register_forward_pre_hook(load)
            module.register_forward_hook(drop)
    return dit


def _own(module: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters and buffers that ``module`` holds itself (not its children's)."""
    return {name: t for name, t in (*module._parameters.items(), *module._buffers.items()) if t is not None}


def _pack(groups: list[dict[str, torch.Tensor]], pin: bool) -> list[dict[str, torch.Tensor]]:
    """Host copies of every tensor in ``groups``, as views into one (pinned) byte buffer."""
    sizes = [[-(-t.numel() * t.element_size() // ALIGN) * ALIGN for t in group.values()] for group in groups]
    buffer = torch.empty(sum(map(sum, sizes)), dtype=torch.uint8, pin_memory=pin)
    packed, offset = [], 0
    for group, group_sizes in zip(groups, sizes):
        views = {}
        for (name, t), size in zip(group.items(), group_sizes):
            view = buffer[offset:offset + t.numel() * t.element_size()].view(t.dtype).view(t.shape)
            view.copy_(t.detach())
            views[name] = nn.Parameter(view, requires_grad=False) if isinstance(t, nn.Parameter) else view
            offset += size
        packed.append(views)
    return packed


def _place(module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    for name, t in tensors.items():
        if name in module._parameters:
            module._parameters[name] = t if isinstance(t, nn.Parameter) else nn.Parameter(t, requires_grad=False)
        else:
            module._buffers[name] = t
