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
