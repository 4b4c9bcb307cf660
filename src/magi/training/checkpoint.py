"""Training checkpoints: model + EMA + optimizer + train state + resolved config, written atomically.

Layout of ``<run>/checkpoint/`` (replaced as a whole: written to a temp dir, then renamed):
``model.safetensors``, ``ema.safetensors``, ``optimizer.safetensors`` (tensors) + ``optimizer.json``
(hyper-parameters), ``state.json`` (step, loss history tail), ``config.json`` (the RunConfig).
Everything needed for an exact resume; nothing is pickled.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from magi.config import RunConfig
from magi.io.weights import load_weights, read_safetensors, save_weights


@dataclass
class TrainState:
    step: int = 0
    losses: list[float] = field(default_factory=list)  # one per step, for the loss log and plots


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(folder: Path, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer,
                    state: TrainState, cfg: RunConfig) -> None:
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(tmp / "model.safetensors", model.state_dict())
    save_weights(tmp / "ema.safetensors", ema.state_dict())
    tensors, meta = _flatten_optimizer(optimizer)
    save_weights(tmp / "optimizer.safetensors", tensors)
    (tmp / "optimizer.json").write_text(json.dumps(meta))
    (tmp / "state.json").write_text(json.dumps(asdict(state)))
    cfg.save(tmp / "config.json")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: Path, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer) -> TrainState:
    folder = Path(folder)
    load_weights(model, folder / "model.safetensors")
    load_weights(ema, folder / "ema.safetensors")
    meta = json.loads((folder / "optimizer.json").read_text())
    optimizer.load_state_dict(_unflatten_optimizer(read_safetensors(folder / "optimizer.safetensors"), meta))
    return TrainState(**json.loads((folder / "state.json").read_text()))
