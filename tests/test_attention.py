import torch

from magi.models.attention import attend, block_causal_mask, chunk_index_per_token


def dense_reference(chunk_of_token: list[int], window: int | None) -> torch.Tensor:
    n = len(chunk_of_token)
    mask = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            ci, cj = chunk_of_token[i], chunk_of_token[j]
            mask[i, j] = cj <= ci and (window is None or ci - cj < window)
    return mask


def test_block_causal_mask_matches_loops():
    chunks = chunk_index_per_token(num_frames=7, tokens_per_frame=3, chunk_frames=2)
    assert chunks.tolist() == [f // 2 for f in range(7) for _ in range(3)]
    for window in (None, 1, 2, 3):
        assert torch.equal(block_causal_mask(chunks, chunks, window), dense_reference(chunks.tolist(), window))


def test_mask_with_cached_keys_is_the_bottom_rows():
    chunks = chunk_index_per_token(6, 2, 2)
    full = block_causal_mask(chunks, chunks)
    assert torch.equal(block_causal_mask(chunks[4:], chunks), full[4:])


def test_attend_gqa_matches_repeated_heads():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 5, 8, generator=g)
    k, v = torch.randn(2, 2, 7, 8, generator=g), torch.randn(2, 2, 7, 8, generator=g)
    mask = torch.rand(5, 7, generator=g) > 0.3
    mask[:, 0] = True
    out = attend(q, k, v, mask)
    k_rep, v_rep = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    scores = (q @ k_rep.transpose(-1, -2)) / 8**0.5
    expected = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v_rep
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_rope_rotates_each_pair_by_its_angle(monkeypatch):
    from magi.models.layers import apply_rope, grid_positions, rope_3d

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, 8, generator=g).transpose(1, 2)  # (B, H, N, Dh), a permuted (strided) view
    cos, sin = rope_3d(grid_positions(5, 1, 1), 8, 10000.0)  # (N, Dh / 2)
    out = apply_rope(x, cos, sin)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # pair i is channels (2i, 2i + 1)
    torch.testing.assert_close(out[..., 0::2], x1 * cos - x2 * sin)
    torch.testing.assert_close(out[..., 1::2], x1 * sin + x2 * cos)
    xb = x.bfloat16()  # computed in float32, returned in the input dtype
    assert torch.equal(apply_rope(xb, cos, sin), apply_rope(xb.float(), cos, sin).bfloat16())
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # what a compiled forward runs: the same
    torch.testing.assert_close(apply_rope(x, cos, sin), out)  # rotation in real arithmetic
    assert apply_rope(xb, cos, sin).dtype == torch.bfloat16
    monkeypatch.undo()
    # relative: rotating q and k by the same offset leaves q . k unchanged
    shifted_cos, shifted_sin = rope_3d(grid_positions(5, 1, 1, t_offset=7), 8, 10000.0)
    q, k = apply_rope(x, cos, sin), apply_rope(x.flip(2), cos, sin)
    q2, k2 = apply_rope(x, shifted_cos, shifted_sin), apply_rope(x.flip(2), shifted_cos, shifted_sin)
    torch.testing.assert_close(q @ k.transpose(-1, -2), q2 @ k2.transpose(-1, -2), atol=1e-5, rtol=1e-5)


def test_full_mask_becomes_none_and_attention_is_unchanged():
    from magi.models.attention import full_mask_to_none

    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 4, 8, generator=g) for _ in range(3))
    full = torch.ones(4, 4, dtype=torch.bool)
    assert full_mask_to_none(full) is None
    torch.testing.assert_close(attend(q, k, v, full), attend(q, k, v, None))
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    assert full_mask_to_none(causal) is causal


def test_additive_mask_attends_like_the_bool_mask():
    from magi.models.attention import additive_mask

    g = torch.Generator().manual_seed(2)
    chunks = chunk_index_per_token(6, 2, 2)  # 3 chunks of 4 tokens
    allowed = block_causal_mask(chunks[4:], chunks)  # the last two chunks as queries: (8, 12)
    q = torch.randn(1, 4, 8, 8, generator=g)
    k, v = (torch.randn(1, 2, 12, 8, generator=g) for _ in range(2))
    additive = additive_mask(allowed, q.dtype)
    assert additive.dtype == q.dtype and torch.equal(additive == 0, allowed)
    out = attend(q, k, v, additive)
    torch.testing.assert_close(out, attend(q, k, v, allowed))
    assert not torch.allclose(out, attend(q, k, v, None), atol=1e-3)  # the mask hides something
