"""Image-first t2v: the first-frame model's still, and the video that continues it."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import randomize_
from magi.config import DiTConfig, ImageConfig, RunConfig, apply_overrides
from magi.errors import InputError
from magi.io.video import tensor_to_frames
from magi.io.weights import save_weights
from magi.models.dit import DiT
from magi.presets import get_preset
from magi.sampling.first_frame import generate_still
from magi.sampling.pipeline import Request, build_pipeline, decode, generate_batch, generate_frames
from magi.sampling.sampler import Prefix, iter_generate

IMAGE = ImageConfig(dit=DiTConfig(in_channels=4, patch_size=1, dim=32, depth=2, num_heads=2, num_kv_heads=1,
                                  head_dim=16, ffn_dim=48, context_dim=24, context_max_length=6, chunk_frames=1),
                    steps=6, text_scale=2.5)


@pytest.fixture
def image_dit() -> DiT:
    return randomize_(DiT(IMAGE.dit), seed=3).eval()


def text(batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 5, 24, generator=g), torch.ones(batch, 5, dtype=torch.bool)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_a_seed_gives_one_still_at_any_batch_size(image_dit, eta):
    cfg = replace(IMAGE, stochasticity=eta)
    context, mask = text(2)
    pair = generate_still(image_dit, cfg, context, mask, latent_shape=(4, 8, 6), seed=[5, 9])
    assert pair.shape == (2, 4, 1, 8, 6)
    alone = generate_still(image_dit, cfg, context[1:], mask[1:], latent_shape=(4, 8, 6), seed=9)
    torch.testing.assert_close(pair[1:], alone, atol=1e-5, rtol=1e-5)
    assert torch.equal(alone, generate_still(image_dit, cfg, context[1:], mask[1:], latent_shape=(4, 8, 6), seed=9))
    other = generate_still(image_dit, cfg, context[1:], mask[1:], latent_shape=(4, 8, 6), seed=10)
    assert (other - alone).abs().mean() > 0.1


def test_text_guidance_of_the_still(image_dit):
    """Scale 0 is the null text's still; scale 1 is one unguided branch; the text changes the still."""
    context, mask = text()
    null, null_mask = image_dit.unconditional_context(1)
    unguided = replace(IMAGE, text_scale=1.0)
    at_zero = generate_still(image_dit, replace(IMAGE, text_scale=0.0), context, mask, latent_shape=(4, 4, 4), seed=2)
    torch.testing.assert_close(at_zero, generate_still(image_dit, unguided, null, null_mask, latent_shape=(4, 4, 4),
                                                       seed=2), atol=1e-5, rtol=1e-5)
    with_text = generate_still(image_dit, unguided, context, mask, latent_shape=(4, 4, 4), seed=2)
    assert (with_text - at_zero).abs().mean() > 1e-3
    guided = generate_still(image_dit, IMAGE, context, mask, latent_shape=(4, 4, 4), seed=2)
    assert (guided - with_text).abs().mean() > 1e-3


def test_image_config_is_checked_and_round_trips():
    with pytest.raises(ValueError, match="chunk_frames=6 must be 1"):
        ImageConfig(dit=DiTConfig())
    tiny = get_preset("tiny")
    assert RunConfig.from_dict(tiny.to_dict()) == tiny and tiny.image is not None
    assert apply_overrides(tiny, ["image.steps=9"]).image.steps == 9
    assert apply_overrides(tiny, ["image=none"]).image is None
    with pytest.raises(ValueError, match="needs an image model"):
        apply_overrides(tiny, ["image=none", "sampler.t2v_start=image"])
    with pytest.raises(ValueError, match="the config has no image section"):
        apply_overrides(tiny, ["image=none", "image.steps=3"])
    with pytest.raises(ValueError, match="runs in the native procedure"):
        apply_overrides(get_preset("magi-4.5b-distill"), ["sampler.t2v_start=image"])


def image_first_config() -> RunConfig:
    return apply_overrides(replace(get_preset("tiny"), weights=""),
                           ["text.kind=hash", "sampler.t2v_start=image", "device=cpu"])


def test_image_first_t2v_continues_the_image_models_still():
    """The video is the still's last frame, then the chunks that continue the still as an i2v image, decoded
    chunk by chunk: num_frames in all."""
    cfg = image_first_config()
    pipe = build_pipeline(cfg)
    video = np.concatenate(list(generate_frames(pipe, Request(mode="t2v", prompt="a ball", num_frames=30, seed=3))))
    assert video.shape == (30, 64, 64, 3)

    context, mask = pipe.text.encode(["a ball"])
    latent_shape = (cfg.vae.latent_channels, 8, 8)
    still = generate_still(pipe.image, cfg.image, context, mask, latent_shape=latent_shape, seed=[3])
    chunks = iter_generate(pipe.dit, cfg.sampler, context, mask, num_chunks=2, latent_shape=latent_shape,
                           prefix=Prefix(still), seed=[3])  # 1 + ceil(29 / 4) = 9 latent frames: 2 chunks of 6
    frames = np.concatenate([tensor_to_frames(decode(pipe, latents)[0]) for latents in chunks])
    np.testing.assert_array_equal(video, frames[cfg.vae.patch_t - 1:][:30])

    # one seed, one video, alone or beside another; another start (from noise) is another video
    both = [np.concatenate(parts) for parts in zip(*generate_batch(pipe, [
        Request(mode="t2v", prompt="a ball", num_frames=30, seed=3),
        Request(mode="t2v", prompt="two blocks", num_frames=30, seed=4)]))]
    assert np.abs(both[0].astype(int) - video).max() <= 1
    noise = build_pipeline(apply_overrides(cfg, ["sampler.t2v_start=noise"]))
    assert noise.image is None
    from_noise = np.concatenate(list(generate_frames(noise, Request(mode="t2v", prompt="a ball", num_frames=30,
                                                                    seed=3))))
    assert np.abs(from_noise.astype(int) - video).mean() > 1


def test_a_checkpoint_without_the_image_model_is_refused(tmp_path):
    cfg = image_first_config()
    save_weights(tmp_path / "dit.safetensors", DiT(cfg.dit).state_dict())
    from magi.models.vae import TransformerVAE

    save_weights(tmp_path / "vae.safetensors", TransformerVAE(cfg.vae).state_dict())
    with pytest.raises(InputError, match="has no image.safetensors, the image model that sampler.t2v_start=image"):
        build_pipeline(replace(cfg, weights=str(tmp_path)))
    assert build_pipeline(replace(apply_overrides(cfg, ["sampler.t2v_start=noise"]), weights=str(tmp_path))).image \
        is None
