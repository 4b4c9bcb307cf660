"""Weights on disk: safetensors only (never pickle), strict loads, atomic saves.

Our checkpoint layout is a directory holding ``config.json`` (the resolved RunConfig) and one
``<component>.safetensors`` per network (``vae``, ``dit``). ``builtin:<name>`` names a checkpoint
shipped inside the package (``magi/weights/<name>/``).
"""

from __future__ import annotations

import os
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from magi.errors import InputError

BUILTIN_PREFIX = "builtin:"


def resolve_checkpoint_dir(location: str) -> Path:
    """``builtin:<name>`` -> the packaged directory; anything else is a path that must exist."""
    if location.startswith(BUILTIN_PREFIX):
        path = Path(__file__).resolve().parent.parent / "weights" / location[len(BUILTIN_PREFIX):]
    else:
        path = Path(location).expanduser()
    if not path.is_dir():
        raise InputError(f"checkpoint directory '{location}' does not exist")
    return path


def builtin_available(location: str) -> bool:
    """Whether ``builtin:<name>`` weights ship with this installation."""
    if not location.startswith(BUILTIN_PREFIX):
        return False
    folder = Path(__file__).resolve().parent.parent / "weights" / location[len(BUILTIN_PREFIX):]
    return (folder / "dit.safetensors").is_file()


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file '{path}' does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"cannot read weights '{path}': {error}") from None


def check_state_dict(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Raise one clear line if ``state`` does not match ``module`` exactly (names and shapes)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with wrong shape (e.g. {k}: checkpoint {tuple(state[k].shape)} "
                         f"vs model {tuple(expected[k].shape)})")
        raise InputError(f"checkpoint '{source}' does not match the config: " + "; ".join(parts))


def load_state(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Strictly load ``state`` into ``module`` after checking every name and shape."""
    check_state_dict(module, state, source)
    module.load_state_dict(state, strict=True)


def load_weights(module: nn.Module, path: str | Path) -> None:
    """Strictly load a safetensors file into ``module``."""
    load_state(module, read_safetensors(path), str(path))


def save_weights(path: str | Path, state: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomic safetensors write: temp file in the same directory, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def state_dict_bytes(state: dict[str, Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())

