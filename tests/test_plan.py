import pytest

from magi.cli import main
from magi.plan import plan
from magi.presets import get_preset


def test_context_parallelism_splits_tokens_and_cache_not_weights():
    cfg = get_preset("magi-24b")
    one, eight = plan(cfg, 1), plan(cfg, 8)
    assert one.weight_bytes == eight.weight_bytes
    assert eight.kv_cache_bytes * 8 == pytest.approx(one.kv_cache_bytes, rel=1e-6)
    assert eight.tokens_per_device * 8 == one.tokens_per_device
    assert one.tokens_per_chunk == 6 * (720 // 16) * (1280 // 16)


def test_fp8_halves_weights_and_distilled_needs_one_branch():
    base, fp8 = plan(get_preset("magi-4.5b"), 1), plan(get_preset("magi-4.5b-distill-fp8"), 1)
    assert fp8.weight_bytes * 2 == base.weight_bytes
    assert fp8.tokens_per_device * 3 == base.tokens_per_device  # no guidance branches


def test_plan_command(capsys):
    assert main(["plan", "--preset", "magi-24b", "--gpus", "8"]) == 0
    assert "KV cache per device" in capsys.readouterr().out
    assert main(["plan", "--preset", "magi-24b", "--gpus", "5"]) == 2
