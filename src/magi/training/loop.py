"""The training loop: one explicit function shared by the VAE and the DiT; the objective is an argument.

Every step is a pure function of (weights, optimizer state, step): batches and noise come from
generators seeded with (seed, step), so a run killed at any point resumes from its last checkpoint to
exactly the same weights as an uninterrupted run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

from magi.config import RunConfig
from magi.devices import resolve_device
from magi.io.atomic import atomic_write_text
from magi.parallel.data import DataParallelism, SingleProcess
from magi.training.checkpoint import Checkpoint, TrainState, load_checkpoint, load_checkpoint_state, save_checkpoint
from magi.training.ema import ema_copy, ema_update
from magi.training.optim import build_optimizer, freeze, learning_rate

Objective = Callable[[nn.Module, int], Tensor]  # (model, step) -> scalar loss


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """The random stream of one step (independent of how the run was interrupted)."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 7 + stream) % (2**63))


def find_checkpoint(run_dir: Path) -> Path | None:
    for name in ("checkpoint", "checkpoint.old"):  # .old survives a kill in the middle of a swap
        if (run_dir / name / "state.json").is_file():
            return run_dir / name
    return None


def write_loss_log(path: Path, losses: list[float]) -> None:
    atomic_write_text(path, "step,loss\n" + "".join(f"{i + 1},{loss:.6f}\n" for i, loss in enumerate(losses)))


def train(model: nn.Module, objective: Objective, cfg: RunConfig, run_dir: Path, *,
          on_sample: Callable[[nn.Module, int], None] | None = None, stop_after: int | None = None,
          progress: bool = True, parallel: DataParallelism | None = None) -> tuple[nn.Module, TrainState]:
    """Train ``model`` for cfg.train.steps (resuming from run_dir); return the EMA model and the state.

    ``parallel`` spreads each step's batch over processes (``magi.parallel.data``); the objective must
    evaluate the rows of ``parallel.shard``. Only the main process writes. ``stop_after`` ends the
    process-local run early (used by tests to simulate a kill).
    """
    tc = cfg.train
    parallel = parallel or SingleProcess()
    if parallel.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "config.json")
    freeze(model, tc.frozen)
    device = resolve_device(cfg.device)
    model.to(device)
    # cfg.dtype other than float32: mixed precision (autocast); the weights and optimizer state stay float32
    precision = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.dtype]
    ema = ema_copy(model)  # before sharding: FSDP modules cannot be copied; the copy is sharded alike
    # samples come from a plain copy of the EMA weights, gathered onto the main process when sharded
    plain_ema = ema_copy(model) if on_sample is not None and parallel.shard.count > 1 and parallel.is_main else None
    model, ema = parallel.prepare(model), parallel.prepare(ema)
    optimizer = build_optimizer(model, tc)
    state = TrainState()
    found = find_checkpoint(run_dir)
    if found is not None:
        saved = load_checkpoint(found) if parallel.is_main else Checkpoint({}, {}, {}, TrainState())
        parallel.load_model_state(model, saved.model)
        parallel.load_model_state(ema, saved.ema)
        parallel.load_optimizer_state(model, optimizer, saved.optimizer)
        state = load_checkpoint_state(found)
    model.train()
    bar = tqdm(total=tc.steps, initial=state.step, desc=f"train {cfg.name}",
               disable=not (progress and parallel.is_main))
    steps_this_run = 0
    while state.step < tc.steps and (stop_after is None or steps_this_run < stop_after):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(state.step, tc)
        with torch.autocast(device.type, dtype=precision or torch.float32, enabled=precision is not None):
            loss = objective(model, state.step)
        value = parallel.mean(loss)  # the global batch's loss
        if not math.isfinite(value):
            raise RuntimeError(f"loss is {value} at step {state.step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        ema_update(ema, model, tc.ema_decay if state.step >= tc.warmup_steps else 0.0)
        state.step += 1
        steps_this_run += 1
        state.losses.append(value)
        bar.update(1)
        if state.step % tc.log_every == 0:
            recent = state.losses[-tc.log_every:]
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
        if state.step % tc.checkpoint_every == 0 or state.step == tc.steps:
            weights = (parallel.model_state(model), parallel.model_state(ema),
                       parallel.optimizer_state(model, optimizer))  # collectives: every rank takes part
            if parallel.is_main:
                save_checkpoint(run_dir / "checkpoint", *weights, state, cfg)
                write_loss_log(run_dir / "loss.csv", state.losses)
            parallel.barrier()
        if on_sample is not None and tc.sample_every and state.step % tc.sample_every == 0:
            if parallel.shard.count == 1:
                on_sample(ema, state.step)
            else:
                weights = parallel.model_state(ema)  # a collective; full tensors on the main process
                if plain_ema is not None:
                    plain_ema.load_state_dict(weights, strict=True)
                    on_sample(plain_ema, state.step)
                parallel.barrier()
    bar.close()
    return ema, state
