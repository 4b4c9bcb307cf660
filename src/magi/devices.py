"""Where a run's networks live: ``RunConfig.device`` (the DiT), ``vae.device`` and ``text.device``."""

from __future__ import annotations

import os

import torch

from magi.errors import InputError

DEVICE_HELP = "auto (cuda, else mps, else cpu), cpu, cuda, cuda:N or mps"


def resolve_device(name: str) -> torch.device:
    """A device name -> the torch device, checked to exist here (one clear line if not)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", _local_rank())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"unknown device {name!r}: use {DEVICE_HELP}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r}: this machine (or this torch build) has no CUDA device")
        index = _local_rank() if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise InputError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device("cuda", index)
    if device.type == "mps" and not _mps_available():
        raise InputError(f"device {name!r}: MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps", "meta"):
        raise InputError(f"unknown device {name!r}: use {DEVICE_HELP}")
    return device


def _local_rank() -> int:
    """The GPU of this process: its LOCAL_RANK under torchrun (one GPU per process), else 0."""
    return int(os.environ.get("LOCAL_RANK", 0))


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def module_device(module: torch.nn.Module) -> torch.device:
    """The device a network's parameters live on."""
    return next(module.parameters()).device


def generator_device(device: torch.device) -> torch.device:
    """Where a random generator for ``device`` lives: itself, or the CPU for devices without generators
    (the meta device of the device tests)."""
    return device if device.type in ("cpu", "cuda", "mps") else torch.device("cpu")
