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

from magi.config import RunConfig
from magi.io.weights import read_safetensors, save_weights


@dataclass
class TrainState:
    step: int = 0
    losses: list[float] = field(default_factory=list)  # one per step, for the loss log and plots


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
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


def save_checkpoint(folder: Path, model_state: dict[str, torch.Tensor], ema_state: dict[str, torch.Tensor],
                    optimizer_state: dict[str, Any], state: TrainState, cfg: RunConfig) -> None:
    """Write full (unsharded) state dicts; ``optimizer_state`` in the ``optimizer.state_dict()`` layout."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(tmp / "model.safetensors", model_state)
    save_weights(tmp / "ema.safetensors", ema_state)
    tensors, meta = _flatten_optimizer(optimizer_state)
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


@dataclass
class Checkpoint:
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    state: TrainState


def load_checkpoint(folder: Path) -> Checkpoint:
    folder = Path(folder)
    meta = json.loads((folder / "optimizer.json").read_text())
    return Checkpoint(model=read_safetensors(folder / "model.safetensors"),
                      ema=read_safetensors(folder / "ema.safetensors"),
                      optimizer=_unflatten_optimizer(read_safetensors(folder / "optimizer.safetensors"), meta),
                      state=load_checkpoint_state(folder))


def load_checkpoint_state(folder: Path) -> TrainState:
    """The step and loss history alone (every process needs them; the tensors only the main one)."""
    return TrainState(**json.loads((Path(folder) / "state.json").read_text()))
