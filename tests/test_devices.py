"""Every tensor of a generation is made on the model's device: the samplers run with the DiT on the meta
device, where mixing in a CPU tensor fails, so a GPU run cannot silently break in a CPU-only CI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from magi.devices import resolve_device
from magi.errors import InputError
from magi.models.dit import DiT
from magi.presets import get_preset
from magi.sampling import magi1
from magi.sampling.sampler import Prefix, iter_generate

META = torch.device("meta")


@pytest.fixture(autouse=True)
def no_padding_check(monkeypatch):
    """The one data-dependent step (is any text token padding?) cannot run on meta: assume some is."""
    monkeypatch.setattr("magi.models.dit.full_mask_to_none", lambda mask: mask)


def meta_dit(**kw) -> DiT:
    cfg = get_preset("tiny").dit
    with META:
        return DiT(dataclasses.replace(cfg, **kw)).eval()


def test_mixing_devices_fails_on_meta():
    with pytest.raises((RuntimeError, NotImplementedError)):
        torch.zeros(2, device=META) + torch.zeros(2)


@pytest.mark.parametrize("guidance", ["none", "text", "text_and_prefix"])
@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_native_sampler_makes_every_tensor_on_the_model_device(guidance, use_kv_cache):
    dit = meta_dit()
    sampler = dataclasses.replace(get_preset("tiny").sampler, guidance=guidance)
    context, mask = torch.zeros(2, 5, 384, device=META), torch.ones(2, 5, dtype=torch.bool, device=META)
    prefix = Prefix(torch.zeros(2, 8, 7, 8, 8, device=META))  # a whole chunk and one frame
    chunks = list(iter_generate(dit, sampler, context, mask, num_chunks=3, latent_shape=(8, 8, 8), prefix=prefix,
                                use_kv_cache=use_kv_cache))
    assert len(chunks) == 3 and all(chunk.device == META for chunk in chunks)


@pytest.mark.parametrize("distilled", [False, True])
def test_magi1_sampler_makes_every_tensor_on_the_model_device(distilled):
    dit = meta_dit(norm="layernorm", rope="magi", adaln_text="null_token", null_text_tokens=4,
                   step_conditioning=distilled, step_embedder="time")
    preset = "magi-4.5b-distill" if distilled else "magi-4.5b"
    # (kv_offload copies to the host, which a meta tensor cannot: test_block_offload_* runs it)
    sampler = dataclasses.replace(get_preset(preset).sampler, steps=8, special_tokens=(), kv_offload=False)
    context, mask = torch.zeros(1, 3, 5, 384, device=META), torch.ones(1, 3, 5, dtype=torch.bool, device=META)
    chunks = list(magi1.iter_generate(dit, sampler, context, mask, num_chunks=3, latent_shape=(8, 8, 8),
                                      prefix=torch.zeros(1, 8, 7, 8, 8, device=META)))
    assert len(chunks) == 3 and all(chunk.device == META for chunk in chunks)


def test_device_names_are_checked():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    for bad in ("gpu0", "cuda:99" if torch.cuda.is_available() else "cuda", "tpu"):
        with pytest.raises(InputError, match="device"):
            resolve_device(bad)


def test_block_offload_and_kv_offload_give_the_same_video():
    import numpy as np

    from magi.sampling.pipeline import Request, build_pipeline, generate_frames

    run = dataclasses.replace(get_preset("tiny"), device="cpu")
    request = Request(mode="t2v", prompt="a ball", num_frames=24, seed=0)
    plain = np.concatenate(list(generate_frames(build_pipeline(run), request)))
    offloaded_run = dataclasses.replace(run, offload="blocks",
                                        sampler=dataclasses.replace(run.sampler, kv_offload=True))
    pipe = build_pipeline(offloaded_run)
    layers = [m for m in pipe.dit.blocks.modules() if m._parameters]
    assert layers and all(len(m._forward_pre_hooks) == 1 and m.weight.device.type == "cpu" for m in layers)
    offloaded = np.concatenate(list(generate_frames(pipe, request)))
    assert np.array_equal(offloaded, plain)


@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_offloaded_blocks_run_every_entry_point_on_the_model_device(use_kv_cache):
    """Blocks kept on the host and run on the meta device: a weight used outside the block's forward (the
    text keys and values that the sampler computes once) would still be on the host, and fail here."""
    from magi.offload import offload_blocks

    dit = DiT(get_preset("tiny").dit).eval()
    blocks, dit.blocks = dit.blocks, torch.nn.ModuleList()
    dit = dit.to(META)  # all but the blocks
    dit.blocks = blocks
    offload_blocks(dit, META)
    sampler = dataclasses.replace(get_preset("tiny").sampler, guidance="text_and_prefix")
    context, mask = torch.zeros(2, 5, 384, device=META), torch.ones(2, 5, dtype=torch.bool, device=META)
    prefix = Prefix(torch.zeros(2, 8, 7, 8, 8, device=META))
    chunks = list(iter_generate(dit, sampler, context, mask, num_chunks=3, latent_shape=(8, 8, 8), prefix=prefix,
                                use_kv_cache=use_kv_cache))
    assert len(chunks) == 3 and all(chunk.device == META for chunk in chunks)
    assert all(p.device.type == "cpu" for p in dit.blocks.parameters())  # the host copies, between forwards


def test_offloaded_block_holds_only_its_host_copy_between_forwards():
    from magi.offload import offload_blocks

    torch.manual_seed(0)
    dit = DiT(get_preset("tiny").dit).eval()
    x, t, ctx = torch.randn(1, 8, 6, 8, 8), torch.rand(1, 6), torch.randn(1, 4, 384)
    with torch.no_grad():
        before = dit(x, t, ctx)
        offload_blocks(dit, torch.device("cpu"))
        host = {name: p.data_ptr() for name, p in dit.blocks[0].named_parameters()}
        after = dit(x, t, ctx)
    assert torch.equal(before, after)
    assert all(p.data_ptr() == host[name] for name, p in dit.blocks[0].named_parameters())
    # each block's host copies are views into one buffer (one pinned allocation per block on a GPU)
    assert all(len({p.untyped_storage().data_ptr() for p in block.parameters()}) == 1 for block in dit.blocks)
    assert len({block.qkv.weight.untyped_storage().data_ptr() for block in dit.blocks}) == len(dit.blocks)


def test_streamed_load_places_and_casts_each_tensor(tmp_path):
    from magi.io.weights import LazyState, save_weights
    from magi.sampling.pipeline import load_streaming

    torch.manual_seed(0)
    source = DiT(get_preset("tiny").dit)
    save_weights(tmp_path / "dit.safetensors", source.state_dict())
    state = LazyState.open(tmp_path / "dit.safetensors")
    assert set(state) == set(source.state_dict()) and state.shape("blocks.0.qkv.weight") == (128, 64)
    with META:
        target = DiT(get_preset("tiny").dit).to(torch.bfloat16)
    target.blocks[0].q_norm.float()  # a module kept in float32 keeps its dtype
    load_streaming(target, ((name, state[name]) for name in state), torch.device("cpu"), "test")
    assert target.blocks[0].qkv.weight.dtype == torch.bfloat16 and target.blocks[0].q_norm.weight.dtype == torch.float32
    assert torch.equal(target.blocks[0].qkv.weight, source.blocks[0].qkv.weight.to(torch.bfloat16))
    with META:
        short = DiT(get_preset("tiny").dit)
    with pytest.raises(InputError, match="missing"):
        load_streaming(short, ((name, state[name]) for name in list(state)[1:]), torch.device("cpu"), "test")


def test_training_objectives_make_every_tensor_on_the_model_device():
    """magi train / distill --device: the batches, noise and targets follow the model (here onto meta)."""
    from magi.models.vae import TransformerVAE
    from magi.training.objectives import distill_objective, dit_objective, vae_objective

    cfg = get_preset("tiny")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=2, clip_chunks=2))
    latents, context, mask = torch.randn(3, 8, 18, 8, 8), torch.randn(3, 5, 384), torch.ones(3, 5, dtype=torch.bool)
    dit = meta_dit()
    loss = dit_objective(latents, context, mask, cfg)(dit, 0)
    loss.backward()
    assert loss.device == META
    with META:
        vae = TransformerVAE(cfg.vae)
    clips = torch.randint(0, 255, (3, 24, 64, 64, 3), dtype=torch.uint8)
    assert vae_objective(clips, cfg)(vae, 0).device == META
    student = meta_dit(step_conditioning=True)
    for step in range(2):  # the guided teacher target, then the two-step self-consistency target
        assert distill_objective(latents, context, mask, dit, cfg)(student, step).device == META


def test_training_in_bfloat16_is_mixed_precision(tmp_path):
    """--dtype bfloat16 in training: the forward runs under autocast, the weights stay float32."""
    from magi.training.loop import train
    from magi.training.objectives import dit_objective

    cfg = get_preset("tiny")
    cfg = dataclasses.replace(cfg, device="cpu", dtype="bfloat16", train=dataclasses.replace(
        cfg.train, batch_size=2, clip_chunks=2, steps=2, checkpoint_every=2, sample_every=0, warmup_steps=1))
    latents, context, mask = torch.randn(3, 8, 18, 8, 8), torch.randn(3, 5, 384), torch.ones(3, 5, dtype=torch.bool)
    seen = []
    objective = dit_objective(latents, context, mask, cfg)

    def watched(model, step):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return objective(model, step)

    torch.manual_seed(0)
    ema, state = train(DiT(cfg.dit), watched, cfg, tmp_path, progress=False)
    assert seen == [torch.bfloat16] * 2 and all(np.isfinite(state.losses))
    assert all(p.dtype == torch.float32 for p in ema.parameters())
