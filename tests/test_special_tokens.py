"""MAGI-1's special tokens and per-chunk texts: conversion from the reference's npz, the order and cap of
the tokens, per-chunk cross-attention in the DiT, the sampler's per-chunk texts, and half_channel_vae."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import randomize_
from magi.cli import main
from magi.config import DiTConfig, SamplerConfig
from magi.io.weights import read_safetensors
from magi.models.dit import DiT
from magi.sampling.sampler import Prefix, generate
from magi.sampling.special_tokens import FILE, chunk_texts, from_reference_npz, negative_text

D = 8


def reference_npz(path):
    rng = np.random.default_rng(0)
    np.savez(path, caption_token=rng.standard_normal((1, D)).astype(np.float16),
             logo_token=rng.standard_normal((1, D)).astype(np.float16),
             other_tokens=rng.standard_normal((17, D)).astype(np.float16))
    return np.load(path)


def test_reference_npz_rows_and_convert_command(tmp_path, capsys):
    arrays = reference_npz(tmp_path / "special_tokens.npz")
    table = from_reference_npz(tmp_path / "special_tokens.npz")
    other = torch.from_numpy(arrays["other_tokens"].astype(np.float32))
    torch.testing.assert_close(table["HQ"], other[1:2])
    torch.testing.assert_close(table["DURATION_1"], other[7:8])  # "1 chunk still to come"
    torch.testing.assert_close(table["DURATION_8"], other[14:15])
    torch.testing.assert_close(table["TWO_D_ANIME"], other[16:17])
    assert table["CAPTION"].shape == (1, D) and len(table) == 2 + 7 + 8
    npz = str(tmp_path / "special_tokens.npz")
    assert main(["convert", "--special_tokens", npz, "--out", str(tmp_path / "o")]) == 0
    assert read_safetensors(tmp_path / "o" / FILE).keys() == table.keys()
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    assert main(["convert", "--special_tokens", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "p")]) == 2
    assert "is not the reference's special_tokens.npz" in capsys.readouterr().err
    assert not (tmp_path / "p" / FILE).exists()


def test_chunk_texts_put_duration_then_hq_in_front_and_cap_at_eight():
    table = {name: torch.full((1, D), float(i + 1)) for i, name in
             enumerate(["HQ", *(f"DURATION_{n}" for n in range(1, 9))])}
    caption, mask = torch.full((1, 5, D), -1.0), torch.tensor([[True, True, True, False, False]])
    texts, masks = chunk_texts(caption, mask, 10, table, ("HQ", "DURATION"), max_length=6)
    assert texts.shape == (1, 10, 6, D) and masks.shape == (1, 10, 6)
    first = [float(v) for v in texts[0, :, 0, 0]]  # DURATION_n value is n + 1
    assert first == [9.0, 9.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0]  # capped at 8 to come, ..., 1 to come
    assert torch.all(texts[0, :, 1] == 1.0) and torch.all(texts[0, :, 2:] == -1.0)  # HQ, then the caption
    assert masks[0, 0].tolist() == [True, True, True, True, True, False]  # cut to max_length
    null, null_mask = torch.zeros(1, 6, D), torch.tensor([[True] * 2 + [False] * 4])
    neg, neg_mask = negative_text(null, null_mask, table, ("HQ",), 6)
    assert torch.all(neg[0, 0] == 1.0) and torch.equal(neg_mask, null_mask)


CFG = DiTConfig(in_channels=4, dim=32, depth=2, num_heads=2, num_kv_heads=1, head_dim=16, ffn_dim=48, context_dim=D,
                context_max_length=4, chunk_frames=2)


def test_dit_per_chunk_texts():
    dit = randomize_(DiT(CFG), seed=1).eval()
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(1, 4, 6, 4, 4, generator=g), torch.tensor([[0.9] * 2 + [0.5] * 2 + [0.2] * 2])
    text, mask = torch.randn(1, 4, D, generator=g), torch.ones(1, 4, dtype=torch.bool)
    same = dit(x, t, text[:, None].expand(1, 3, 4, D), mask[:, None].expand(1, 3, 4))
    torch.testing.assert_close(same, dit(x, t, text, mask))  # one text for all chunks, either way
    other = text[:, None].repeat(1, 3, 1, 1)
    other[:, 1] = torch.randn(1, 4, D, generator=g)
    changed = dit(x, t, other, mask[:, None].expand(1, 3, 4))
    torch.testing.assert_close(changed[:, :, :2], same[:, :, :2])  # chunk 0 sees text 0 only
    assert not torch.allclose(changed[:, :, 2:4], same[:, :, 2:4])  # chunk 1 follows its own text
    with pytest.raises(ValueError, match="per-chunk texts"):
        dit(x, t, other[:, :2], mask[:, None].expand(1, 2, 4))


@pytest.mark.parametrize("guidance", ["none", "text_and_prefix"])
def test_sampler_per_chunk_texts_cached_equals_uncached_and_stay_causal(guidance):
    dit = randomize_(DiT(CFG), seed=2).eval()
    sampler = SamplerConfig(steps=4, window_size=2, context_chunks=2, guidance=guidance)
    g = torch.Generator().manual_seed(0)
    texts, masks = torch.randn(1, 3, 4, D, generator=g), torch.ones(1, 3, 4, dtype=torch.bool)

    def run(texts, cache=True):
        return generate(dit, sampler, texts, masks, num_chunks=3, latent_shape=(4, 4, 4), use_kv_cache=cache)

    a = run(texts)
    torch.testing.assert_close(a, run(texts, cache=False), atol=1e-5, rtol=1e-5)
    every_forward = randomize_(DiT(CFG), seed=2).eval()  # the same weights, projecting the text in every forward
    every_forward.text_kv = lambda text, mask: None
    assert torch.equal(a, generate(every_forward, sampler, texts, masks, num_chunks=3, latent_shape=(4, 4, 4)))
    edited = texts.clone()
    edited[:, 2] = torch.randn(1, 4, D, generator=g)
    b = run(edited)
    torch.testing.assert_close(a[:, :, :2], b[:, :, :2])  # chunk 0 never sees chunk 2's text
    assert not torch.allclose(a[:, :, 4:], b[:, :, 4:])
    negative = (torch.randn(1, 4, D, generator=g), torch.ones(1, 4, dtype=torch.bool))
    c = generate(dit, sampler, texts, masks, num_chunks=3, latent_shape=(4, 4, 4), negative=negative)
    assert torch.allclose(a, c) == (guidance == "none")  # the negative text only enters guided branches


def test_half_channel_vae_feeds_the_latent_twice_and_returns_the_first_half():
    half = replace(CFG, in_channels=8, half_channel_vae=True, x_rescale_factor=0.1)
    assert half.latent_channels == 4
    dit = randomize_(DiT(half), seed=3).eval()
    full = randomize_(DiT(replace(half, half_channel_vae=False)), seed=3).eval()
    g = torch.Generator().manual_seed(0)
    x, t, text = torch.randn(1, 4, 2, 4, 4, generator=g), torch.full((1, 2), 0.5), torch.randn(1, 4, D, generator=g)
    out = dit(x, t, text)
    assert out.shape == x.shape
    torch.testing.assert_close(out, full(torch.cat([x, x], 1), t, text)[:, :4])


def test_preset_with_special_tokens_needs_them_in_the_checkpoint(tmp_path):
    from magi.errors import InputError
    from magi.io.weights import save_weights
    from magi.models.vae import TransformerVAE
    from magi.presets import get_preset
    from magi.sampling.pipeline import build_pipeline

    cfg = get_preset("tiny")
    cfg = replace(cfg, weights=str(tmp_path), sampler=replace(cfg.sampler, special_tokens=("HQ", "DURATION")))
    save_weights(tmp_path / "vae.safetensors", TransformerVAE(cfg.vae).state_dict())
    save_weights(tmp_path / "dit.safetensors", DiT(cfg.dit).state_dict())
    with pytest.raises(InputError, match="special_tokens.safetensors' does not exist"):
        build_pipeline(cfg)
    save_weights(tmp_path / FILE, {"HQ": torch.zeros(1, cfg.dit.context_dim)})
    with pytest.raises(InputError, match="lacks special tokens"):
        build_pipeline(cfg)
    save_weights(tmp_path / FILE, {name: torch.randn(1, cfg.dit.context_dim)
                                   for name in ["HQ", *(f"DURATION_{n}" for n in range(1, 9))]})
    assert set(build_pipeline(cfg).special_tokens) >= {"HQ", "DURATION_8"}


def test_sampler_marks_the_no_text_rows_for_the_adaln_token():
    seen = []

    class Spy(DiT):
        def forward(self, *args, no_text=None, **kwargs):
            seen.append(None if no_text is None else no_text.tolist())
            return super().forward(*args, no_text=no_text, **kwargs)

    cfg = replace(CFG, adaln_text="null_token")
    dit = randomize_(Spy(cfg), seed=4).eval()
    text, mask = torch.randn(1, 4, D), torch.ones(1, 4, dtype=torch.bool)
    prefix = Prefix(torch.randn(1, 4, 2, 4, 4))
    guided = SamplerConfig(steps=4, window_size=2, context_chunks=2, guidance="text_and_prefix")
    generate(dit, guided, text, mask, num_chunks=2, latent_shape=(4, 4, 4), prefix=prefix)
    assert seen and all(rows == [False, True, True] for rows in seen)  # [text ; no text ; no text, no prefix]
    seen.clear()
    generate(dit, guided, text, mask, num_chunks=2, latent_shape=(4, 4, 4), prefix=prefix, use_kv_cache=False)
    assert [False, True] in seen and [True] in seen  # [text ; no text] batches and the unconditional pass
    assert None not in seen
    seen.clear()
    generate(dit, SamplerConfig(steps=4, window_size=2, guidance="none"), text, mask, num_chunks=2,
             latent_shape=(4, 4, 4))
    assert set(map(str, seen)) == {"None"}  # distilled models: every row has text
