import dataclasses

import pytest
import torch

from conftest import randomize_
from magi.models.dit import DiT, UncachedRows
from magi.models.kv_cache import ChunkKVCache
from magi.models.layers import RMSNorm


@pytest.fixture
def model(dit_cfg):
    return randomize_(DiT(dit_cfg)).eval()


def inputs(cfg, frames=6, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, cfg.in_channels, frames, 8, 8, generator=g)
    t = torch.rand(batch, frames // cfg.chunk_frames, generator=g).repeat_interleave(cfg.chunk_frames, 1)
    context = torch.randn(batch, 5, cfg.context_dim, generator=g)
    return latents, t, context


def test_shapes_and_zero_init(dit_cfg):
    latents, t, context = inputs(dit_cfg)
    assert DiT(dit_cfg)(latents, t, context).abs().max() == 0  # adaLN-Zero output layer
    model = randomize_(DiT(dit_cfg))
    v = model(latents, t, context)
    assert v.shape == latents.shape and v.abs().max() > 0


@torch.no_grad()
@pytest.mark.parametrize("k", [1, 2])
def test_perturbing_chunk_k_leaves_earlier_chunks_bit_identical(model, dit_cfg, k):
    latents, t, context = inputs(dit_cfg)
    F = dit_cfg.chunk_frames
    v = model(latents, t, context)
    changed = latents.clone()
    changed[:, :, k * F:] += torch.randn_like(changed[:, :, k * F:])
    t_changed = t.clone()
    t_changed[:, k * F:] = 0.9
    v2 = model(changed, t_changed, context)
    assert torch.equal(v[:, :, : k * F], v2[:, :, : k * F])
    assert not torch.allclose(v[:, :, k * F:], v2[:, :, k * F:])


@torch.no_grad()
def test_kv_cache_equals_full_recompute(model, dit_cfg):
    latents, t, context = inputs(dit_cfg, frames=8)
    F = dit_cfg.chunk_frames
    t[:, : 2 * F] = 1.0  # two clean chunks, then two noisy ones
    full = model(latents, t, context)
    cache = ChunkKVCache(num_layers=dit_cfg.depth, max_chunks=8)
    cache.admit(1)
    model(latents[:, :, :F], t[:, :F], context, kv_cache=cache)
    cache.commit()
    cache.admit(1)  # second clean chunk admitted while the noisy ones are denoised (fused pass)
    fused = model(latents[:, :, F:], t[:, F:], context, kv_cache=cache)
    cache.commit()
    assert cache.num_chunks == 2
    cached = model(latents[:, :, 2 * F:], t[:, 2 * F:], context, kv_cache=cache)
    torch.testing.assert_close(fused, full[:, :, F:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached, full[:, :, 2 * F:], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_uncached_rows_attend_to_no_clean_chunk(model, dit_cfg):
    latents, t, context = inputs(dit_cfg, frames=8)
    F = dit_cfg.chunk_frames
    t[:, : 2 * F] = 1.0  # two clean chunks, then two noisy ones
    # chunk 1 admitted (block-causal); chunks 2 and 3 in flight among themselves only
    free = UncachedRows(1, ((0, 1), (1, 2), (1, 3)))

    def cached(**kw):
        cache = ChunkKVCache(num_layers=dit_cfg.depth, max_chunks=8)
        cache.admit(1)
        model(latents[:, :, :F], t[:, :F], context, kv_cache=cache,
              **({"uncached_rows": UncachedRows(1, ((0, 1),))} if kw else {}))
        cache.commit()
        cache.admit(1)  # chunk 1 admitted while chunks 2 and 3 are in flight
        out = model(latents[:, :, F:], t[:, F:], context, kv_cache=cache, **kw)
        cache.commit()
        return out, cache

    (out, cache), (usual, usual_cache) = cached(uncached_rows=free), cached()
    torch.testing.assert_close(out[:1], usual[:1], atol=1e-5, rtol=1e-5)  # the other rows see their context
    alone = model(latents[1:, :, 2 * F:], t[1:, 2 * F:], context[1:])  # chunks 2, 3 with no earlier chunk
    torch.testing.assert_close(out[1:, :, F:], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(usual[1:, :, F:], alone, atol=1e-3)
    # the cache holds the other rows
    assert cache.layers[0].keys.shape[0] == 1 and usual_cache.layers[0].keys.shape[0] == 2
    torch.testing.assert_close(cache.layers[-1].keys, usual_cache.layers[-1].keys[:1], atol=1e-5, rtol=1e-5)
    # without a cache too: the given ranges are all the uncached rows see
    plain = model(latents[:, :, 2 * F:], t[:, 2 * F:], context, uncached_rows=UncachedRows(1, ((0, 1), (1, 2))))
    torch.testing.assert_close(plain[1:, :, :F], model(latents[1:, :, 2 * F:3 * F], t[1:, 2 * F:3 * F],
                                                       context[1:]), atol=1e-5, rtol=1e-5)
    for bad in (UncachedRows(2, ((0, 1), (1, 2))), UncachedRows(1, ((0, 1),)), UncachedRows(1, ((0, 1), (1, 3)))):
        with pytest.raises(ValueError, match="uncached_rows"):
            model(latents[:, :, 2 * F:], t[:, 2 * F:], context, uncached_rows=bad)
    with pytest.raises(ValueError, match="uncached_rows"):  # a partial chunk has no whole-chunk ranges
        model(latents[:, :, :F + 1], t[:, :F + 1], context, uncached_rows=UncachedRows(1, ((0, 1),)))


@torch.no_grad()
@pytest.mark.parametrize("rope", ["interleaved", "magi"])
def test_shape_tables_are_kept_per_shape_and_never_stale(dit_cfg, rope):
    cfg = dataclasses.replace(dit_cfg, rope=rope)
    model = randomize_(DiT(cfg)).eval()
    F = cfg.chunk_frames
    latents, t, context = inputs(cfg, frames=2 * F)
    first = model(latents, t, context)
    model(latents[:, :, :F], t[:, :F], context)  # another shape in between
    assert len(model._shape_tables) == 2
    assert torch.equal(model(latents, t, context), first)
    fresh = DiT(cfg).eval()
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh(latents, t, context), first)  # kept tables == tables built for this shape alone
    if rope == "magi":  # learnable frequencies: new values take effect although the positions are kept
        model.rope["bands"].mul_(2)
        fresh.load_state_dict(model.state_dict())
        changed = model(latents, t, context)
        assert torch.equal(changed, fresh(latents, t, context))
        assert not torch.allclose(changed, first)


def test_the_kept_mask_is_the_block_causal_mask_and_none_only_when_it_hides_nothing(model, dit_cfg):
    from magi.models.attention import block_causal_mask, chunk_index_per_token

    F, h, w = dit_cfg.chunk_frames, 2, 3
    for frames in range(1, 3 * F + 1):  # every split of cached and query frames, across chunk boundaries
        chunks = chunk_index_per_token(frames, h * w, F)
        for query_frames in range(1, frames + 1):
            _, mask = model.positions(frames, query_frames, h, w, torch.device("cpu"), torch.float32)
            allowed = block_causal_mask(chunks[-query_frames * h * w:], chunks)
            if mask is None:
                assert allowed.all()
            else:
                assert not allowed.all() and torch.equal(mask == 0, allowed)


@torch.no_grad()
def test_kv_cache_window_drops_oldest(model, dit_cfg):
    latents, t, context = inputs(dit_cfg, frames=8)
    F = dit_cfg.chunk_frames
    t[:, : 3 * F] = 1.0
    cache = ChunkKVCache(num_layers=dit_cfg.depth, max_chunks=2)
    cache.admit(3)
    model(latents[:, :, : 3 * F], t[:, : 3 * F], context, kv_cache=cache)
    cache.commit()
    assert cache.num_chunks == 2
    windowed = model(latents[:, :, 3 * F:], t[:, 3 * F:], context, kv_cache=cache)
    # chunk 1's keys were computed while it saw chunk 0, so compare with the full model on chunks 1..3
    reference = model(latents, t, context)[:, :, 3 * F:]
    assert not torch.allclose(windowed, reference, atol=1e-4)  # the window really hides chunk 0


@torch.no_grad()
def test_kv_cache_stores_each_chunk_once_and_drops_without_copying(model, dit_cfg):
    """A store copies only the newly clean chunks, a drop copies nothing: memory is the kept chunks."""
    latents, t, context = inputs(dit_cfg, frames=8)
    F, tokens = dit_cfg.chunk_frames, None
    t[:] = 1.0
    cache = ChunkKVCache(num_layers=dit_cfg.depth, max_chunks=2)
    kept = []
    for chunk in range(4):
        cache.admit(1)
        model(latents[:, :, chunk * F:(chunk + 1) * F], t[:, chunk * F:(chunk + 1) * F], context, kv_cache=cache)
        cache.commit()
        layer = cache.layers[0]
        tokens = tokens or layer.chunks[0][0].shape[2]
        assert [len(layer.chunks), cache.num_chunks] == [min(chunk + 1, 2)] * 2
        assert all(pair[0].shape[2] == tokens and pair[0].is_contiguous() for pair in layer.chunks)
        assert all(a is b for a, b in zip(layer.chunks, kept[-1:]))  # the kept chunk is the same tensor
        kept.append(layer.chunks[-1])
    per_chunk = sum(k.numel() * k.element_size() * 2 for k, _ in (layer.chunks[0] for layer in cache.layers))
    assert cache.nbytes() == 2 * per_chunk


def test_text_changes_output(model, dit_cfg):
    latents, t, context = inputs(dit_cfg)
    null, mask = model.unconditional_context(2)
    assert mask.all() and null.shape == (2, dit_cfg.context_max_length, dit_cfg.context_dim)
    assert not torch.allclose(model(latents, t, context), model(latents, t, null, mask))


def test_context_padding_is_ignored(model, dit_cfg):
    latents, t, context = inputs(dit_cfg)
    padded = torch.cat([context, torch.randn(2, 3, dit_cfg.context_dim)], 1)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[:, 5:] = False
    torch.testing.assert_close(model(latents, t, context), model(latents, t, padded, mask), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_text_kv_computed_beforehand_gives_the_same_velocity(model, dit_cfg):
    latents, t, context = inputs(dit_cfg)
    padded = torch.cat([context, torch.randn(2, 3, dit_cfg.context_dim)], 1)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 5:] = False
    for ctx, m in ((context, None), (padded, mask)):
        assert torch.equal(model(latents, t, ctx, m, text_kv=model.text_kv(ctx, m)), model(latents, t, ctx, m))
    assert model.text_kv(context, torch.ones(2, 5, dtype=torch.bool)).mask is None  # unpadded: SDPA's fast path
    # the padding the keys were computed with is what the cross-attention hides
    assert not torch.allclose(model(latents, t, padded, mask, text_kv=model.text_kv(padded)),
                              model(latents, t, padded, mask))
    other = torch.randn_like(context)  # the blocks read the keys and values given, not the text again
    assert torch.equal(model(latents, t, other, text_kv=model.text_kv(context)), model(latents, t, other,
                       text_kv=model.text_kv(context)))
    assert not torch.allclose(model(latents, t, other, text_kv=model.text_kv(context)), model(latents, t, other))
    with pytest.raises(ValueError, match="text_kv of 1 texts of 5 tokens given for 2 of 5"):
        model(latents, t, context, text_kv=model.text_kv(context[:1]))
    with pytest.raises(ValueError, match="with caption dropout"):
        model.train()(latents, t, context, text_kv=model.text_kv(context), no_text=torch.tensor([True, False]))
    model.eval()


def test_no_text_rows_read_the_null_text_in_training_only(dit_cfg):
    """MAGI-1's caption_dropout_mask: in training mode the flagged rows' text is the learned null text."""
    model = randomize_(DiT(dit_cfg), seed=3).eval()
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 2, 4, 4, generator=g), torch.full((2, 2), 0.5)
    context = torch.randn(2, dit_cfg.context_max_length, dit_cfg.context_dim, generator=g)
    null, null_mask = model.unconditional_context(2)
    drop = torch.tensor([True, False])
    with torch.no_grad():
        out = model.train()(x, t, context, no_text=drop)
        model.eval()
        torch.testing.assert_close(out[:1], model(x[:1], t[:1], null[:1], null_mask[:1]))
        torch.testing.assert_close(out[1:], model(x[1:], t[1:], context[1:]))
        # outside training the rows keep the text they are given (a negative prompt, say)
        torch.testing.assert_close(model(x, t, context, no_text=drop), model(x, t, context))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_formula(dtype):
    norm = RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 16))
    x = (torch.randn(3, 5, 16) * 4).to(dtype)
    xf = x.float()
    expected = xf / torch.sqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    out = norm(x)
    assert out.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-2  # bf16: one rounding of the float32 result
    torch.testing.assert_close(out.float(), expected.to(dtype).float(), rtol=tol, atol=tol)


@torch.no_grad()
@pytest.mark.parametrize("norm", ["rms", "layernorm"])
def test_a_grown_dit_computes_exactly_what_the_shallower_one_did(dit_cfg, norm):
    from magi.training.growth import grown_state

    cfg = dataclasses.replace(dit_cfg, norm=norm)
    small = randomize_(DiT(cfg)).eval()  # nonzero post-norm gains everywhere: every block does something
    deep = DiT(dataclasses.replace(cfg, depth=3 * cfg.depth)).eval()
    deep.load_state_dict(grown_state(small.state_dict(), 3 * cfg.depth), strict=True)
    latents, t, context = inputs(cfg)
    assert torch.equal(deep(latents, t, context), small(latents, t, context))
    for index in (3, 4, 5):  # block 1 -> block 3, and its two copies after it
        assert torch.equal(deep.blocks[index].qkv.weight, small.blocks[1].qkv.weight)
    assert deep.blocks[4].attn_post_norm.weight.abs().max() == 0 < small.blocks[1].attn_post_norm.weight.abs().max()


def test_growing_refuses_a_depth_that_is_not_a_whole_multiple(model, dit_cfg):
    from magi.training.growth import grown_state

    with pytest.raises(ValueError, match="whole multiple"):
        grown_state(model.state_dict(), 3)
