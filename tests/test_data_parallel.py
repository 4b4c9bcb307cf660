"""Data parallelism: sharded objectives average to the global loss, and FSDP2 on 2 gloo CPU processes
trains exactly like one process on the same global batch (losses, weights, EMA, resume across sizes)."""

import os
import socket
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from conftest import randomize_
from magi.config import DiTConfig, RunConfig, TextConfig, TrainConfig, VAEConfig
from magi.models.dit import DiT
from magi.models.vae import TransformerVAE
from magi.parallel.data import BatchShard, FullyShardedDataParallel
from magi.training.loop import train
from magi.training.objectives import distill_objective, dit_objective, vae_objective

pytestmark = pytest.mark.slow  # FSDP over gloo processes: run by .ci/run; `pytest -m 'not slow'` skips it

CFG = RunConfig(
    name="unit",
    vae=VAEConfig(latent_channels=4, dim=32, num_heads=2, encoder_depth=1, decoder_depth=1),
    dit=DiTConfig(in_channels=4, dim=32, depth=2, num_heads=2, num_kv_heads=1, head_dim=16, ffn_dim=64,
                  context_dim=8, chunk_frames=2),
    text=TextConfig(kind="hash", dim=8),
    train=TrainConfig(steps=4, batch_size=4, lr=1e-3, warmup_steps=1, checkpoint_every=2, log_every=1,
                      sample_every=0, clip_chunks=2, ema_decay=0.9, clip_frames=8),
)


def dit_data(n=6):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, 4, 6, 4, 4, generator=g), torch.randn(n, 3, 8, generator=g),
            torch.ones(n, 3, dtype=torch.bool))


def objectives():
    student_cfg = replace(CFG, dit=replace(CFG.dit, step_conditioning=True),
                          train=replace(CFG.train, shortcut_steps=(8, 4)))
    teacher = randomize_(DiT(CFG.dit), seed=2)
    clips = torch.randint(0, 256, (5, 8, 16, 16, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    return {
        "vae": (lambda shard: vae_objective(clips, CFG, shard), lambda: TransformerVAE(CFG.vae)),
        "dit": (lambda shard: dit_objective(*dit_data(), CFG, shard=shard), lambda: DiT(CFG.dit)),
        "distill": (lambda shard: distill_objective(*dit_data(), teacher, student_cfg, shard=shard),
                    lambda: DiT(student_cfg.dit)),
    }


@pytest.mark.parametrize("name", ["vae", "dit", "distill"])
@pytest.mark.parametrize("step", [0, 1])
def test_rank_losses_and_gradients_average_to_the_global_ones(name, step):
    make_objective, make_model = objectives()[name]
    torch.manual_seed(0)
    model = randomize_(make_model())

    def loss_and_grads(shard):
        model.zero_grad()
        loss = make_objective(shard)(model, step)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    full_loss, full_grads = loss_and_grads(BatchShard())
    ranks = [loss_and_grads(BatchShard(i, 2)) for i in range(2)]
    torch.testing.assert_close((ranks[0][0] + ranks[1][0]) / 2, full_loss, atol=1e-6, rtol=1e-5)
    for full, a, b in zip(full_grads, ranks[0][1], ranks[1][1], strict=True):
        torch.testing.assert_close((a + b) / 2, full, atol=1e-6, rtol=1e-4)
    assert not torch.allclose(ranks[0][0], ranks[1][0])  # the ranks really see different rows


def test_batch_not_divisible_by_ranks_is_an_error():
    with pytest.raises(ValueError, match="not divisible"):
        BatchShard(0, 3).rows(4)


def run_training(run_dir, parallel=None, stop_after=None):
    torch.manual_seed(0)
    ema, state = train(DiT(CFG.dit), dit_objective(*dit_data(), CFG, shard=parallel.shard if parallel else
                                                   BatchShard()),
                       CFG, run_dir, stop_after=stop_after, progress=False, parallel=parallel)
    return state


def worker(rank, world, port, root):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        parallel = FullyShardedDataParallel()
        state = run_training(root / "fsdp", parallel)
        resumed = run_training(root / "resumed", parallel)  # a 1-process run stopped at step 2 resumes here
        if rank == 0:
            save_file({"losses": torch.tensor(state.losses, dtype=torch.float64),
                       "resumed": torch.tensor(resumed.losses, dtype=torch.float64)}, str(root / "losses.safetensors"))
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fsdp_on_two_processes_trains_like_one(tmp_path):
    single = run_training(tmp_path / "single")
    run_training(tmp_path / "resumed", stop_after=2)  # checkpoint at step 2, then "killed"
    mp.spawn(worker, args=(2, free_port(), tmp_path), nprocs=2, join=True)
    losses = load_file(str(tmp_path / "losses.safetensors"))
    expected = torch.tensor(single.losses, dtype=torch.float64)
    assert len(single.losses) == 4
    torch.testing.assert_close(losses["losses"], expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(losses["resumed"], expected, atol=1e-6, rtol=1e-5)
    for run in ("fsdp", "resumed"):  # the checkpoints hold full tensors in the one-process layout
        for name in ("model", "ema", "optimizer"):
            ours = load_file(str(tmp_path / run / "checkpoint" / f"{name}.safetensors"))
            theirs = load_file(str(tmp_path / "single" / "checkpoint" / f"{name}.safetensors"))
            assert ours.keys() == theirs.keys()
            for key in theirs:
                torch.testing.assert_close(ours[key], theirs[key], atol=1e-6, rtol=1e-4, msg=f"{run} {name} {key}")
    assert (tmp_path / "fsdp" / "loss.csv").read_text().count("\n") == 5
