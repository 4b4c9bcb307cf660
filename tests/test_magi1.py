"""The official MAGI-1 procedure (sampler.procedure = "magi1"): each rule pinned with numbers worked out
from the official definitions (SandAI-org/MAGI-1 6ff822e, inference/pipeline/video_generate.py = VG,
inference/model/dit/dit_model.py = DM)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from magi.config import DiTConfig
from magi.flow.schedule import magi1_step_intervals, magi1_time_grid, shift_time
from magi.models.dit import DiT
from magi.models.kv_cache import ChunkKVCache
from magi.presets import get_preset
from magi.sampling import magi1

CFG = DiTConfig(in_channels=4, dim=32, depth=2, num_heads=4, num_kv_heads=2, head_dim=8, ffn_dim=64,
                context_dim=24, context_max_length=8, chunk_frames=2, norm="layernorm", rope="magi",
                gated_ffn=False, gelu_approximate="none", adaln_text="null_token", null_text_tokens=4)
LATENT = (4, 4, 4)


def random_dit(cfg: DiTConfig = CFG, seed: int = 0) -> DiT:
    torch.manual_seed(seed)
    dit = DiT(cfg).eval()
    with torch.no_grad():
        for p in dit.parameters():
            p.normal_(0, 0.2)
    return dit


def sampler(preset: str = "magi-4.5b", **kw):
    return dataclasses.replace(get_preset(preset).sampler, special_tokens=(), **({"steps": 16} | kw))


def text(B: int = 1, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 8, 24, generator=g), torch.ones(B, 8, dtype=torch.bool)


# -- the time grid -------------------------------------------------------------------------------------

def test_time_grid_squares_before_the_shift():
    grid = magi1_time_grid(64, 3.0)
    u = torch.linspace(0, 1, 65, dtype=torch.float64) ** 2
    assert grid.dtype == torch.float32
    torch.testing.assert_close(grid.double(), u / (3 - 2 * u), atol=2e-7, rtol=0)  # t / (s - (s - 1) t) of u^2
    assert grid[1].item() == pytest.approx((1 / 64) ** 2 / (3 - 2 / 64**2), rel=1e-6)
    assert (grid - shift_time(torch.linspace(0, 1, 65), 3.0).float()).abs().max() > 0.15  # not the native grid
    # 16 steps: the stage boundaries are the published guidance bounds 0.0217, 0.1, 0.3
    assert magi1_time_grid(16)[[4, 8, 12]].tolist() == pytest.approx([0.0217, 0.1, 0.3], abs=2e-4)


def test_twelve_step_distill_grid_and_intervals():
    base = torch.tensor([0, 2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15, 16], dtype=torch.float64) / 16  # "8,16,16"
    torch.testing.assert_close(magi1_time_grid(12).double(), base**2 / (3 - 2 * base**2), atol=2e-7, rtol=0)
    assert magi1_step_intervals(12) == [2, 1, 1] * 4
    assert magi1_step_intervals(12, "16,16,8") == [1, 1, 2] * 4
    assert magi1_step_intervals(16) == [1] * 16
    s12 = sampler("magi-4.5b-distill", steps=12)
    assert [magi1.distill_step(s12, j) for j in range(3)] == [4.0, 8.0, 8.0]  # 4 / interval * 2
    assert magi1.distill_step(sampler("magi-4.5b-distill", steps=64), 0) == 32.0  # steps / 4 * 2


# -- which chunks a chunk sees ----------------------------------------------------------------------------

def test_kv_range_per_stage():
    s = sampler(steps=64)
    assert [magi1.kv_range_of(level, s) for level in (0, 15, 16, 31, 32, 47, 48, 63)] == [5, 5, 4, 4, 3, 3, 2, 2]
    assert magi1.kv_range_of(None, s) == 1  # a clean chunk fed to the cache sees itself


def test_key_ranges_with_four_in_flight_see_exactly_one_clean_chunk():
    s = sampler(steps=16)
    # chunk 4 just finished and is fed again (clean), chunks 5..8 in flight at stages 3, 2, 1, 0; the cache
    # holds chunks 1..3 (key chunk 0 is absolute chunk 1)
    ranges = magi1.key_ranges([4, 5, 6, 7, 8], [None, 12, 8, 4, 0], first_key=1, cfg=s)
    assert ranges == [(3, 4), (3, 5), (3, 6), (3, 7), (3, 8)]  # absolute [4,5) [4,6) [4,7) [4,8) [4,9)
    # one step later chunk 4 is in the cache; every chunk in flight still starts at it
    assert magi1.key_ranges([5, 6, 7, 8], [13, 9, 5, 1], first_key=1, cfg=s) == [(3, 5), (3, 6), (3, 7), (3, 8)]
    with pytest.raises(ValueError, match="no longer cached"):
        magi1.key_ranges([8], [0], first_key=5, cfg=s)


def test_guidance_scales_as_the_official_looks_them_up():
    s = sampler()
    t = torch.tensor([0.0, 0.0216, 0.0217, 0.09999995, 0.1, 0.2999, 0.3, 0.9, 0.9999])
    bounds = torch.tensor(s.cfg_t_range) - 1e-7
    index = torch.searchsorted(bounds, t) - 1
    p, txt = magi1.guidance_scales(t, s)
    assert index.tolist() == [0, 0, 1, 2, 2, 2, 3, 3, 4]
    assert p.tolist() == [1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.0, 1.0, 1.0]
    assert txt.tolist() == [7.5, 7.5, 7.5, 7.5, 7.5, 7.5, 0.0, 0.0, 0.0]


def test_output_chunks_per_mode():
    assert magi1.chunk_counts(96, 4, 0, 6) == (4, 0)  # t2v: 96 frames
    assert magi1.chunk_counts(96, 4, 1, 6) == (5, 0)  # i2v: 5 chunks = 120 frames
    assert magi1.chunk_counts(96, 4, 8, 6) == (5, 1)  # v2v, 32-frame prefix: 1 prefix chunk + 5
    assert magi1.chunk_counts(100, 4, 0, 6) == (5, 0)  # whole chunks: 25 latents -> 5 chunks


# -- the DiT under ranges --------------------------------------------------------------------------------

def test_ranges_equal_the_block_causal_mask_and_hide_what_is_outside():
    dit = random_dit()
    x, t = torch.randn(1, 4, 6, 4, 4), torch.rand(1, 6)
    ctx, mask = text()
    causal = dit(x, t, ctx, mask)
    # a partial last chunk takes the dense block-causal mask; the whole chunks before it are unchanged
    dense = dit(torch.cat([x, torch.randn(1, 4, 1, 4, 4)], 2), torch.cat([t, torch.rand(1, 1)], 1), ctx, mask)
    torch.testing.assert_close(dense[:, :, :6], causal, atol=1e-5, rtol=1e-5)
    ranged = dit(x, t, ctx, mask, key_ranges=[(0, 1), (0, 2), (0, 3)])
    torch.testing.assert_close(ranged, causal, atol=1e-5, rtol=1e-5)
    windowed = dit(x, t, ctx, mask, key_ranges=[(0, 1), (1, 2), (1, 3)])  # chunks 1, 2 do not see chunk 0
    x2 = x.clone()
    x2[:, :, :2] += 1.0
    moved = dit(x2, t, ctx, mask, key_ranges=[(0, 1), (1, 2), (1, 3)])
    torch.testing.assert_close(moved[:, :, 2:], windowed[:, :, 2:], atol=1e-6, rtol=0)
    assert (moved[:, :, :2] - windowed[:, :, :2]).abs().max() > 1e-3
    assert (dit(x2, t, ctx, mask)[:, :, 2:] - causal[:, :, 2:]).abs().max() > 1e-3  # block-causal does see it


def test_cached_ranges_equal_recomputed_ranges():
    dit = random_dit()
    x, t = torch.randn(1, 4, 6, 4, 4), torch.rand(1, 6)
    ctx, mask = text()
    full = dit(x, t, ctx, mask, key_ranges=[(0, 1), (0, 2), (1, 3)])
    cache = ChunkKVCache(CFG.depth, 4)
    cache.admit(1)
    first = dit(x[:, :, :2], t[:, :2], ctx, mask, cache, key_ranges=[(0, 1)])
    cache.commit()
    rest = dit(x[:, :, 2:], t[:, 2:], ctx, mask, cache, key_ranges=[(0, 2), (1, 3)])
    torch.testing.assert_close(torch.cat([first, rest], 2), full, atol=1e-5, rtol=1e-5)


def test_one_cache_written_by_the_null_branch_is_read_by_both():
    dit = random_dit()
    x, t = torch.randn(1, 4, 2, 4, 4), torch.full((1, 2), 0.9999)
    ctx, mask = text()
    null, null_mask = dit.unconditional_context(1, 8)
    cache = ChunkKVCache(CFG.depth, 4, writer_rows=(1, 2))
    cache.admit(1)
    dit(torch.cat([x, x]), torch.cat([t, t]), torch.cat([ctx, null]), torch.cat([mask, null_mask]), cache,
        key_ranges=[(0, 1)], no_text=torch.tensor([False, True]))
    cache.commit()
    alone = ChunkKVCache(CFG.depth, 4)  # the null-text row by itself
    alone.admit(1)
    dit(x, t, null, null_mask, alone, key_ranges=[(0, 1)], no_text=torch.tensor([True]))
    alone.commit()
    assert cache.layers[0].keys.shape[0] == 1
    for shared, own in zip(cache.layers, alone.layers):
        torch.testing.assert_close(shared.keys, own.keys, atol=1e-6, rtol=0)
    # the text row of the next forward reads the null row's keys: same as the null-only cache
    y, u = torch.randn(1, 4, 2, 4, 4), torch.rand(1, 2)
    both = dit(torch.cat([y, y]), torch.cat([u, u]), torch.cat([ctx, null]), torch.cat([mask, null_mask]), cache,
               key_ranges=[(0, 2)], no_text=torch.tensor([False, True]))
    text_only = dit(y, u, ctx, mask, alone, key_ranges=[(0, 2)], no_text=torch.tensor([False]))
    torch.testing.assert_close(both[:1], text_only, atol=1e-5, rtol=1e-5)


def test_distilled_dit_embeds_the_step_with_the_timestep_embedder():
    base = random_dit()
    dit = DiT(dataclasses.replace(CFG, step_conditioning=True, step_embedder="time")).eval()
    dit.load_state_dict(base.state_dict(), strict=True)  # no weights of its own: the published layout
    x, t = torch.randn(1, 4, 2, 4, 4), torch.rand(1, 2)
    ctx, mask = text()
    assert set(dit.state_dict()) == set(base.state_dict())
    with_step = dit(x, t, ctx, mask, step_size=torch.full((1, 2), 32.0))
    assert (with_step - base(x, t, ctx, mask)).abs().max() > 1e-3


# -- the sampler, step by step ------------------------------------------------------------------------------

class Recorder:
    """Wraps a DiT's forward and records, per call, rows, input chunks, ranges, cache use and branch flags."""

    def __init__(self, dit: DiT):
        self.calls: list[dict] = []
        inner = dit.forward

        def forward(latents, t, context, context_mask=None, kv_cache=None, **kw):
            ranges = kw.get("key_ranges")
            self.calls.append(dict(rows=latents.shape[0], chunks=latents.shape[2] // CFG.chunk_frames,
                                   ranges=None if ranges is None else list(ranges), cached=kv_cache is not None,
                                   cache_chunks=kv_cache.num_chunks if kv_cache is not None else 0,
                                   writer=kv_cache.writer_rows if kv_cache is not None else None,
                                   no_text=kw["no_text"].tolist(), t=t[:, ::CFG.chunk_frames].tolist(),
                                   step=None if kw.get("step_size") is None else kw["step_size"][0, 0].item()))
            return inner(latents, t, context, context_mask, kv_cache, **kw)

        dit.forward = forward


def test_base_procedure_runs_three_branches_at_every_step():
    dit = random_dit()
    rec = Recorder(dit)
    s = sampler(steps=8)  # 4 stages of 2 steps
    ctx, mask = text()
    out = list(magi1.iter_generate(dit, s, ctx, mask, num_chunks=6, latent_shape=LATENT, seed=0))
    assert [o.shape[2] for o in out] == [2] * 6
    pairs = list(zip(rec.calls[::2], rec.calls[1::2]))
    assert len(pairs) == (6 + 3) * 2  # every step: text+null in one forward, then the chunks alone
    for guided, alone in pairs:
        assert guided["rows"] == 2 and guided["no_text"] == [False, True] and guided["cached"]
        assert guided["writer"] == (1, 2)  # one cache: the null-text rows write it, both branches read it
        k = alone["rows"]  # every chunk in flight, alone, null text, no cache, no ranges
        assert alone["chunks"] == 1 and not alone["cached"] and alone["ranges"] is None and all(alone["no_text"])
        assert k == guided["chunks"] - (1 if guided["t"][0][0] == pytest.approx(0.9999) else 0)
    # step 8 (the first of group 4): chunk 0 fed again at clean_t, chunks 1..4 in flight, nothing cached yet
    g = pairs[8][0]
    assert g["t"][0][0] == pytest.approx(0.9999) and g["cache_chunks"] == 0
    assert g["ranges"] == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5)]  # chunk 4 (stage 0, range 5) sees chunk 0
    g = pairs[10][0]  # chunk 1 fed again; chunk 0 cached; chunk 5 in flight at stage 0 sees chunks 1..5
    assert g["cache_chunks"] == 1 and g["ranges"] == [(1, 2), (1, 3), (1, 4), (1, 5), (1, 6)]
    g = pairs[11][0]  # no admission: cache 0..1 (kept: 4 chunks); chunk 2 at stage 3 sees 1..2
    assert g["cache_chunks"] == 2 and g["ranges"] == [(1, 3), (1, 4), (1, 5), (1, 6)]


def test_guidance_combines_the_three_branches_per_chunk():
    """One forward's guided velocity, rebuilt from the three branches with the published formula."""
    dit = random_dit()
    s = sampler(steps=4, window_size=1)  # one chunk in flight, one step per stage
    ctx, mask = text()
    chunk = next(magi1.iter_generate(dit, s, ctx, mask, num_chunks=1, latent_shape=LATENT, seed=3))
    grid = magi1.magi1_time_grid(4)
    x = torch.randn((1, 4, 2, 4, 4), generator=torch.Generator().manual_seed(3))
    null, null_mask = dit.unconditional_context(1, 8)
    torch.set_grad_enabled(False)
    for k in range(4):
        tk = grid[k].expand(1, 2)
        c_text = dit(x, tk, ctx, mask, key_ranges=[(0, 1)], no_text=torch.tensor([False]))
        c_pre = dit(x, tk, null, null_mask, key_ranges=[(0, 1)], no_text=torch.tensor([True]))
        u = dit(x, tk, null, null_mask, no_text=torch.tensor([True]))
        p, st = (float(v) for v in magi1.guidance_scales(grid[k:k + 1], s))
        x = x + ((1 - p) * u + (p - st) * c_pre + st * c_text) * (grid[k + 1] - grid[k])
    torch.set_grad_enabled(True)
    torch.testing.assert_close(chunk, x, atol=1e-5, rtol=1e-5)


def test_prefix_frames_keep_the_noisy_t_and_the_output_follows_the_mode():
    dit = random_dit()
    rec = Recorder(dit)
    s = sampler(steps=8)
    ctx, mask = text()
    image = torch.randn(1, 4, 1, 4, 4)
    out = list(magi1.iter_generate(dit, s, ctx, mask, num_chunks=3, latent_shape=LATENT, prefix=image, seed=0))
    assert [o.shape[2] for o in out] == [2, 2, 2]  # i2v: the first chunk whole, image latent included
    assert not torch.equal(out[0][:, :, :1], image)  # the image latent with the last step's drift
    first = rec.calls[0]
    assert first["t"][0] == [0.0] and first["cache_chunks"] == 0  # the image frame is at the chunk's noisy t
    video = torch.randn(1, 4, 5, 4, 4)  # v2v: 2 whole prefix chunks and one frame
    rec.calls.clear()
    out = list(magi1.iter_generate(dit, s, ctx, mask, num_chunks=3, latent_shape=LATENT, prefix=video, seed=0))
    assert [o.shape[2] for o in out] == [1, 2, 2]  # the prefix frame is dropped from the output
    admit = rec.calls[0]  # the prefix chunks enter the cache first, each seeing itself, at clean_t
    assert admit["ranges"] == [(0, 1), (1, 2)] and admit["t"][0] == pytest.approx([0.9999, 0.9999])
    assert admit["no_text"] == [False, True]
    assert rec.calls[1]["cache_chunks"] == 2 and rec.calls[1]["ranges"] == [(0, 3)]  # stage 0 sees 5 chunks


def test_distilled_procedure_cached_equals_recomputed_and_mixes_the_nearly_clean_chunk():
    dit = random_dit(dataclasses.replace(CFG, step_conditioning=True, step_embedder="time"))
    rec = Recorder(dit)
    s = sampler("magi-4.5b-distill", steps=8)
    ctx, mask = text()
    video = torch.randn(1, 4, 3, 4, 4)
    cached = torch.cat(list(magi1.iter_generate(dit, s, ctx, mask, num_chunks=5, latent_shape=LATENT,
                                                prefix=video, seed=0)), 2)
    assert all(c["step"] == 4.0 for c in rec.calls)  # steps / 4 * 2, in every forward
    assert all(not any(c["no_text"]) for c in rec.calls)  # one branch, with text
    alone = [c for c in rec.calls if not c["cached"]]
    assert alone and all(c["chunks"] == 1 and c["t"][0][0] > 0.3 for c in alone)  # the nearly clean chunk
    def first_in_flight(call: dict) -> float:
        ts = call["t"][0]
        return ts[1] if ts[0] == pytest.approx(0.9999) else ts[0]

    guided = [c for c in rec.calls[1:] if c["cached"]]  # after the prefix chunks' admission
    assert len(alone) == sum(first_in_flight(c) > 0.3 for c in guided) > 0
    recomputed = torch.cat(list(magi1.iter_generate(dit, s, ctx, mask, num_chunks=5, latent_shape=LATENT,
                                                    prefix=video, seed=0, use_kv_cache=False)), 2)
    torch.testing.assert_close(recomputed, cached, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="needs the KV cache"):
        next(magi1.iter_generate(random_dit(), sampler(), ctx, mask, num_chunks=1, latent_shape=LATENT,
                                 use_kv_cache=False))


def test_one_seed_one_video_and_the_native_sampler_refuses_magi1():
    from magi.sampling.sampler import iter_generate

    dit = random_dit()
    s = sampler(steps=8)
    ctx, mask = text()
    a = torch.cat(list(magi1.iter_generate(dit, s, ctx, mask, num_chunks=2, latent_shape=LATENT, seed=5)), 2)
    b = torch.cat(list(magi1.iter_generate(dit, s, ctx, mask, num_chunks=2, latent_shape=LATENT, seed=5)), 2)
    assert torch.equal(a, b)
    noise = torch.randn((1, 4, 4, 4, 4), generator=torch.Generator().manual_seed(5))  # one draw, whole video
    assert (a - noise).abs().max() < (a - torch.randn_like(noise)).abs().max()
    with pytest.raises(ValueError, match="magi1"):
        next(iter_generate(dit, s, ctx, mask, num_chunks=1, latent_shape=LATENT))


@pytest.mark.parametrize("name", ["magi-4.5b-distill", "magi-24b-distill-fp8"])
def test_distill_presets_follow_the_official_configs(name):
    cfg = get_preset(name)
    assert cfg.sampler.procedure == "magi1" and cfg.sampler.distilled and cfg.sampler.guidance == "none"
    assert cfg.sampler.steps == (64 if "4.5b" in name else 16)
    assert cfg.dit.step_conditioning and cfg.dit.step_embedder == "time"


def test_pipeline_outputs_the_official_frames_per_mode():
    """Every generated chunk decoded whole: t2v 24 frames -> 1 chunk; i2v -> 2 chunks, the image's chunk whole;
    v2v conditions on the first 32 frames (8 latents: 1 whole chunk + 2 frames) and drops those 2 frames."""
    import numpy as np

    from magi.sampling.pipeline import Request, build_pipeline, conditioning_length, generate_frames

    run = get_preset("tiny")
    run = dataclasses.replace(run, sampler=dataclasses.replace(run.sampler, procedure="magi1"))
    pipe = build_pipeline(run)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)  # another aspect: stretched, not cropped
    video = rng.integers(0, 255, (40, 64, 64, 3), dtype=np.uint8)
    counts = {}
    for mode, extra in (("t2v", {}), ("i2v", {"image": image}), ("v2v", {"prefix_video": video})):
        request = Request(mode=mode, prompt="a ball", num_frames=24, seed=0, **extra)
        counts[mode] = [frames.shape[0] for frames in generate_frames(pipe, request)]
    assert counts == {"t2v": [24], "i2v": [24, 24], "v2v": [16, 24]}
    assert conditioning_length(Request(mode="v2v", prompt="a", prefix_video=video), run) == 32



def test_special_tokens_are_held_in_float16():
    from magi.sampling.special_tokens import prepend

    token = torch.full((1, 4), 1.0 + 2.0**-12)  # not a float16 number: rounds to 1.0
    context, mask = prepend(token, torch.zeros(1, 2, 4), torch.ones(1, 2, dtype=torch.bool), max_length=3)
    assert context[0, 0].tolist() == [1.0] * 4 and mask.tolist() == [[True, True, True]]


@pytest.mark.parametrize("prompt, cleaned", [
    ("  Good Boy  ", "good boy"),  # lower-cased and stripped
    ("The dog@home visits www.example.com today", "the dog visits today"),  # @names and URLs
    ("a cat \u2014 running", "a cat - running"),  # every dash becomes "-"
    ("\u201cquoted\u201d", "quoted"),  # quotes unified, then the enclosing pair dropped
    ("file photo.jpg of a-b-c-d-e", "file of a b c d e"),  # file names; more than 3 dashes become spaces
    ("Sizes 1920x1080 and jc6640 here", "sizes and here"),  # sizes and ids
    ("A &amp; B <b>bold</b>", "a b bold"),  # HTML stripped, then its punctuation
    ("free shipping on 1234567 items, click for details", "on items"),  # shop phrases; the 2nd pass's strip
])
def test_prompts_are_cleaned_twice_as_the_published_models_were_trained(prompt, cleaned):
    from magi.models.caption_cleaning import clean_caption, clean_once

    assert clean_caption(prompt) == cleaned
    assert clean_once(clean_once(prompt)) == cleaned
    assert get_preset("magi-4.5b").text.clean_captions and not get_preset("physics-64").text.clean_captions
