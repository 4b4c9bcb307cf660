import torch

from conftest import randomize_
from magi.config import VAEConfig
from magi.models.vae import TransformerVAE

CFG = VAEConfig(latent_channels=4, patch_t=2, patch_hw=4, dim=32, encoder_depth=1, decoder_depth=1,
                num_heads=2, segment_frames=2, scale_factor=0.5)


def vae() -> TransformerVAE:
    torch.manual_seed(0)
    return randomize_(TransformerVAE(CFG).eval(), std=0.1)


def test_compression_factors():
    video = torch.randn(2, 3, 8, 16, 24)
    model = vae()
    latents = model.encode(video)
    assert latents.shape == (2, 4, 4, 4, 6)  # T/2, H/4, W/4
    assert model.decode(latents).shape == video.shape


def test_scale_factor_applies_to_latents_only():
    model = vae()
    video = torch.randn(1, 3, 4, 8, 8)
    mean, logvar = model.encode_distribution(video)
    torch.testing.assert_close(model.encode(video), mean * 0.5)
    assert logvar.shape == mean.shape


def test_segmented_decode_equals_full_decode():
    model = vae()
    latents = torch.randn(1, 4, 5, 4, 4)  # 5 latent frames: segments of 2, 2, 1
    full = model.decode(latents)
    pieces = torch.cat(list(model.iter_decode(latents)), dim=2)
    torch.testing.assert_close(pieces, full, rtol=0, atol=1e-6)
    # and a later segment does not depend on an earlier one
    changed = latents.clone()
    changed[:, :, :2] += 1.0
    torch.testing.assert_close(model.decode(changed)[:, :, 4:], full[:, :, 4:], rtol=0, atol=1e-6)


def test_rejects_undivisible_video():
    import pytest

    with pytest.raises(ValueError, match="patches"):
        vae().encode(torch.randn(1, 3, 3, 8, 8))


def test_autoencoder_overfits_one_clip():
    torch.manual_seed(0)
    model = TransformerVAE(CFG)
    video = torch.rand(1, 3, 4, 8, 8) * 2 - 1
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = (model.decode(model.encode(video)) - video).pow(2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
