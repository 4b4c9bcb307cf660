"""Every tensor of a generation is made on the model's device: the samplers run with the DiT on the meta
device, where mixing in a CPU tensor fails, so a GPU run cannot silently break in a CPU-only CI."""

from __future__ import annotations

import dataclasses

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
    sampler = dataclasses.replace(get_preset(preset).sampler, steps=8, special_tokens=())
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
