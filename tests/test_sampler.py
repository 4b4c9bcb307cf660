from dataclasses import replace

import pytest
import torch
from torch import nn

from conftest import randomize_
from magi.models.dit import DiT
from magi.sampling.sampler import Prefix, generate
from magi.sampling.solvers import euler_step, stochastic_step


@pytest.fixture
def model(dit_cfg):
    return randomize_(DiT(dit_cfg), std=0.05).eval()


def context(cfg, batch=2):
    g = torch.Generator().manual_seed(7)
    return torch.randn(batch, 5, cfg.context_dim, generator=g), torch.ones(batch, 5, dtype=torch.bool)


@pytest.mark.parametrize("guidance", ["none", "text", "text_and_prefix"])
@pytest.mark.parametrize("prefix_frames", [0, 1, 5])
@pytest.mark.parametrize("stochasticity", [0.0, 0.8])
def test_cached_equals_recompute(model, dit_cfg, sampler_cfg, guidance, prefix_frames, stochasticity):
    cfg = replace(sampler_cfg, guidance=guidance, stochasticity=stochasticity)
    ctx, mask = context(dit_cfg)
    prefix = None
    if prefix_frames:
        g = torch.Generator().manual_seed(3)
        prefix = Prefix(torch.randn(2, dit_cfg.in_channels, prefix_frames, 8, 8, generator=g))
    kw = dict(num_chunks=4, latent_shape=(dit_cfg.in_channels, 8, 8), prefix=prefix, seed=5)
    cached = generate(model, cfg, ctx, mask, **kw)
    recomputed = generate(model, cfg, ctx, mask, use_kv_cache=False, **kw)
    assert cached.shape == (2, dit_cfg.in_channels, 4 * dit_cfg.chunk_frames, 8, 8)
    torch.testing.assert_close(cached, recomputed, atol=1e-5, rtol=1e-5)
    if prefix_frames % dit_cfg.chunk_frames:  # the opening prefix frames stay exactly clean
        opening = prefix.latents[:, :, -(prefix_frames % dit_cfg.chunk_frames):]
        assert torch.equal(cached[:, :, : opening.shape[2]], opening)


@pytest.mark.parametrize(("guidance", "image", "texts"), [
    ("none", True, [2]),
    ("text_and_prefix", True, [6]),  # [text ; null ; null]: the third branch rides in the same forward
    ("text_and_prefix", False, [4, 6]),  # t2v: [text ; null] until the first chunk is clean
])
def test_text_is_projected_once_per_generation(model, dit_cfg, sampler_cfg, guidance, image, texts):
    cfg = replace(sampler_cfg, guidance=guidance)
    ctx, mask = context(dit_cfg)
    kw = dict(num_chunks=3, latent_shape=(dit_cfg.in_channels, 8, 8), seed=2,
              prefix=Prefix(torch.randn(2, dit_cfg.in_channels, 1, 8, 8)) if image else None)
    every_forward = randomize_(DiT(dit_cfg), std=0.05).eval()  # the same weights, projecting the text in every
    every_forward.text_kv = lambda text, mask: None  # forward (the sampler then passes text_kv=None)
    calls = []

    def counted_text_kv(text, mask):
        calls.append(text.shape[0])
        return DiT.text_kv(model, text, mask)

    model.text_kv = counted_text_kv
    out = generate(model, cfg, ctx, mask, **kw)
    assert calls == texts  # rows of each distinct text
    assert torch.equal(out, generate(every_forward, cfg, ctx, mask, **kw))


def test_context_window_limits_what_is_seen(model, dit_cfg, sampler_cfg):
    ctx, mask = context(dit_cfg)
    kw = dict(num_chunks=5, latent_shape=(dit_cfg.in_channels, 8, 8), seed=1)
    wide = generate(model, sampler_cfg, ctx, mask, **kw)
    narrow = generate(model, replace(sampler_cfg, context_chunks=1), ctx, mask, **kw)
    F = dit_cfg.chunk_frames
    torch.testing.assert_close(wide[:, :, : 2 * F], narrow[:, :, : 2 * F])  # chunk 1 sees only chunk 0 anyway
    assert not torch.allclose(wide[:, :, 2 * F:], narrow[:, :, 2 * F:])


@pytest.mark.parametrize("stochasticity", [0.0, 1.0])
def test_seed_determinism_and_batch_independence(model, dit_cfg, sampler_cfg, stochasticity):
    sampler_cfg = replace(sampler_cfg, stochasticity=stochasticity)
    ctx, mask = context(dit_cfg)
    kw = dict(num_chunks=2, latent_shape=(dit_cfg.in_channels, 8, 8))
    a = generate(model, sampler_cfg, ctx, mask, seed=11, **kw)
    b = generate(model, sampler_cfg, ctx, mask, seed=11, **kw)
    c = generate(model, sampler_cfg, ctx, mask, seed=12, **kw)
    single = generate(model, sampler_cfg, ctx[:1], mask[:1], seed=11, **kw)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    torch.testing.assert_close(single, a[:1], atol=1e-5, rtol=1e-5)


class GaussianOracle(nn.Module):
    """Exact velocity E[x1 - x0 | x_t] for data ~ N(mean, std^2) per element: a model-free check."""

    def __init__(self, cfg, mean: float, std: float):
        super().__init__()
        self.cfg, self.mean, self.std = cfg, mean, std
        self.dummy = nn.Parameter(torch.zeros(1))

    def unconditional_context(self, batch, length=1):
        return torch.zeros(batch, length, self.cfg.context_dim), torch.ones(batch, length, dtype=torch.bool)

    def text_kv(self, context, context_mask):
        return None  # it reads no text

    def forward(self, latents, t, context, context_mask=None, kv_cache=None, no_text=None, text_kv=None):
        t = t[:, None, :, None, None].double()
        m, s2 = self.mean, self.std**2
        denom = t**2 * s2 + (1 - t) ** 2
        centred = latents.double() - t * m
        x1 = m + t * s2 / denom * centred
        x0 = (1 - t) / denom * centred
        return (x1 - x0).float()


@pytest.mark.parametrize("stochasticity", [0.0, 0.5, 1.0])
def test_gaussian_oracle_reproduces_data_moments(dit_cfg, sampler_cfg, stochasticity):
    oracle = GaussianOracle(dit_cfg, mean=1.5, std=0.5)
    cfg = replace(sampler_cfg, steps=256, guidance="none", shift=1.0, stochasticity=stochasticity)
    ctx, mask = context(dit_cfg, batch=4)
    out = generate(oracle, cfg, ctx, mask, num_chunks=3, latent_shape=(4, 16, 16), seed=0)
    assert abs(out.mean().item() - 1.5) < 0.01
    assert abs(out.std().item() - 0.5) < 0.01  # the steps' own error is 0.003 (eta 0) to 0.007 (eta 1)


def test_stochastic_step_is_euler_at_zero_and_keeps_clean_frames():
    g = torch.Generator().manual_seed(0)
    x, v, noise = (torch.randn(2, 4, 6, 3, 3, generator=g) for _ in range(3))
    t = torch.tensor([1.0, 1.0, 0.2, 0.2, 0.7, 0.7])[None, None, :, None, None]  # two clean frames (i2v opening)
    dt = torch.tensor([0.0, 0.0, 0.1, 0.1, 0.3, 0.3])[None, None, :, None, None]
    torch.testing.assert_close(stochastic_step(x, v, t, dt, 0.0, noise), euler_step(x, v, dt), atol=1e-6, rtol=1e-6)
    for eta in (0.5, 1.0):
        out = stochastic_step(x, v, t, dt, eta, noise)
        assert torch.equal(out[:, :, :2], x[:, :, :2])
        assert not torch.allclose(out, euler_step(x, v, dt))
    # from pure noise, ancestral sampling (eta = 1) keeps nothing of the noise estimate: t' x_1 + (1 - t') noise
    zero = torch.zeros_like(t)
    torch.testing.assert_close(stochastic_step(x, v, zero, dt + 0.1, 1.0, noise),
                               (dt + 0.1) * (x + v) + (0.9 - dt) * noise)


def correlation(a, b):
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


def test_a_sequence_of_seeds_gives_each_video_its_own(model, dit_cfg, sampler_cfg):
    ctx, mask = context(dit_cfg)
    kw = dict(num_chunks=2, latent_shape=(dit_cfg.in_channels, 8, 8))
    both = generate(model, sampler_cfg, ctx, mask, seed=[5, 11], **kw)
    for i, seed in enumerate((5, 11)):
        alone = generate(model, sampler_cfg, ctx[i:i + 1], mask[i:i + 1], seed=seed, **kw)
        torch.testing.assert_close(both[i:i + 1], alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="1 seeds for 2 videos"):
        generate(model, sampler_cfg, ctx, mask, seed=[5], **kw)
