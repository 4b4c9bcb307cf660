import dataclasses

import pytest

from magi.cli import main
from magi.config import apply_overrides
from magi.plan import GIB, envelope_lines, plan
from magi.presets import get_preset


def weights(p) -> int:
    return next(v for k, v in p.device.items() if k.startswith("DiT weights"))


def host_kv(p) -> int:
    return next(v for k, v in p.host.items() if k.startswith("KV cache"))


def test_context_parallelism_splits_tokens_and_cache_not_weights():
    cfg = get_preset("magi-24b")
    one, eight = plan(cfg, 1), plan(cfg, 8)
    assert weights(one) == weights(eight)
    assert host_kv(eight) == host_kv(one)  # the whole cache, on the host
    activations = "activations (largest forward, one block)"
    assert eight.device[activations] * 8 == pytest.approx(one.device[activations], rel=1e-4)
    assert one.tokens_per_chunk == 6 * (720 // 16) * (1280 // 16)


def test_fp8_halves_weights_and_distilled_needs_one_row():
    base, fp8 = plan(get_preset("magi-4.5b"), 1), plan(get_preset("magi-4.5b-distill-fp8"), 1)
    assert weights(fp8) < 0.56 * weights(base)  # fp8 linears; edge blocks and embedders stay high precision
    assert (base.forward_rows, fp8.forward_rows) == (2, 1)  # the two guidance branches in one forward


def test_every_term_is_linear_in_tokens():
    """Attention per chunk over its key slice: 4x the tokens, 4x every token-dependent term (no masks)."""
    cfg = get_preset("magi-4.5b")
    small = plan(apply_overrides(cfg, ["video.height=352", "video.width=352"]), 1)
    large = plan(apply_overrides(cfg, ["video.height=704", "video.width=704"]), 1)
    for name in ("activations (largest forward, one block)", "attention (keys of one layer, widest range)"):
        assert large.device[name] == pytest.approx(4 * small.device[name], rel=0.01)
    assert host_kv(large) == pytest.approx(4 * host_kv(small), rel=0.01)


def test_block_offload_and_kv_offload_move_memory_to_the_host():
    cfg = apply_overrides(get_preset("magi-4.5b"), ["video.height=720", "video.width=720"])
    on_device = plan(dataclasses.replace(cfg, sampler=dataclasses.replace(cfg.sampler, kv_offload=False)), 1)
    offloaded = plan(dataclasses.replace(cfg, offload="blocks"), 1)
    assert not any(name.startswith("KV cache") for name in on_device.host) and offloaded.host["DiT blocks"] > 7 * GIB
    assert offloaded.device_bytes < on_device.device_bytes - 12 * GIB


def test_published_envelopes_are_met():
    lines = envelope_lines()
    assert len(lines) == 2 and all(line.endswith("(met)") for line in lines), lines


def test_plan_command(capsys):
    assert main(["plan", "--preset", "magi-24b", "--gpus", "8", "--envelopes"]) == 0
    out = capsys.readouterr().out
    assert "VRAM per device" in out and "host RAM" in out and "(met)" in out
    assert main(["plan", "--preset", "magi-24b", "--gpus", "5"]) == 2


def test_the_published_vae_is_recognised_by_its_config_wherever_it_runs():
    vae = "VAE weights and one decode tile"
    published = plan(get_preset("magi-4.5b"), 1).device[vae]
    assert plan(apply_overrides(get_preset("magi-4.5b"), ["vae.device=cpu"]), 1).device[vae] == published
    ours = apply_overrides(get_preset("magi-4.5b"), ["vae.encoder_depth=2", "vae.decoder_depth=2"])
    assert plan(ours, 1).device[vae] != published  # a 1024-wide VAE of ours, counted as ours
