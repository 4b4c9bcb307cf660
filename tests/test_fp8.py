import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import randomize_
from magi.cli import main
from magi.config import DiTConfig, QuantConfig
from magi.io.weights import load_state, read_safetensors, save_weights, state_dict_bytes
from magi.models.dit import DiT
from magi.quant.fp8 import FP8, Float8Linear, dequantize_weight, kept_in_high_precision, quantize_, quantize_weight


def test_round_trip_error_is_bounded_by_e4m3_precision():
    w = torch.randn(64, 128) * torch.logspace(-3, 1, 64)[:, None]  # rows of very different magnitude
    q, scale = quantize_weight(w)
    assert q.dtype == FP8 and scale.shape == (64,)
    back = dequantize_weight(q, scale, torch.float32)
    # e4m3 has 3 mantissa bits: relative error <= 2^-4 for normal values; tiny values sit on the subnormal
    # grid, whose step is 2^-9 of the row's scale unit
    bound = torch.maximum(w.abs() * 2**-4, scale[:, None] * 2**-9)
    assert torch.all((back - w).abs() <= bound + 1e-12)


def test_float8_linear_close_to_linear():
    torch.manual_seed(0)
    linear = nn.Linear(96, 48)
    fp8 = Float8Linear.from_linear(linear)
    x = torch.randn(10, 96)
    ref, out = linear(x), fp8(x)
    assert (out - ref).norm() / ref.norm() < 0.05
    assert fp8.weight.dtype == FP8


def test_edge_layers_stay_high_precision():
    cfg = DiTConfig(in_channels=4, dim=64, depth=3, num_heads=4, num_kv_heads=2, head_dim=16, ffn_dim=96,
                    context_dim=24)
    dit = quantize_(DiT(cfg), QuantConfig(mode="fp8"))
    kinds = {name: type(m) for name, m in dit.named_modules() if isinstance(m, (nn.Linear, Float8Linear))}
    for name, kind in kinds.items():
        edge = name.startswith(("blocks.0.", "blocks.2.", "patch_embed", "final_proj", "time_embed",
                                "context_embed", "context_pool"))
        assert kind is (nn.Linear if edge else Float8Linear), name
    assert any(kind is Float8Linear for kind in kinds.values())
    assert not kept_in_high_precision("blocks.1.qkv", QuantConfig(mode="fp8"), 3)


def test_quantized_dit_output_within_bound_and_weights_halve(tmp_path):
    cfg = DiTConfig(in_channels=4, dim=64, depth=4, num_heads=4, num_kv_heads=2, head_dim=16, ffn_dim=128,
                    context_dim=24, context_max_length=2, chunk_frames=2)
    dit = randomize_(DiT(cfg), std=0.05).eval()
    x, t, ctx = torch.randn(1, 4, 4, 8, 8), torch.rand(1, 4), torch.randn(1, 5, 24)
    ref = dit(x, t, ctx)
    bf16_bytes = state_dict_bytes({k: v.to(torch.bfloat16) for k, v in dit.state_dict().items()})
    quantize_(dit, QuantConfig(mode="fp8"))  # the reference recipe: edge layers stay high precision
    out = dit(x, t, ctx)
    assert (out - ref).norm() / ref.norm() < 0.05
    everything = quantize_(randomize_(DiT(cfg), std=0.05), QuantConfig(mode="fp8", keep_edge_blocks=False,
                                                                       keep_high_precision=()))
    assert state_dict_bytes(everything.state_dict()) < 0.55 * bf16_bytes  # scales and norms cost a little

    save_weights(tmp_path / "dit.safetensors", dit.state_dict())
    fresh = quantize_(DiT(cfg), QuantConfig(mode="fp8"))
    load_state(fresh.eval(), read_safetensors(tmp_path / "dit.safetensors"), "dit")
    torch.testing.assert_close(fresh(x, t, ctx), out, rtol=0, atol=0)


def test_quantize_command_and_generate_with_fp8_checkpoint(tmp_path):
    from dataclasses import replace

    from magi.models.vae import TransformerVAE
    from magi.presets import get_preset

    tiny = get_preset("tiny")
    cfg = replace(tiny, weights="", dit=replace(tiny.dit, depth=4))  # blocks 1 and 2 get quantized
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    cfg.save(ckpt / "config.json")
    save_weights(ckpt / "vae.safetensors", TransformerVAE(cfg.vae).state_dict())
    save_weights(ckpt / "dit.safetensors", randomize_(DiT(cfg.dit), std=0.05).state_dict())
    assert main(["quantize", "--checkpoint", str(ckpt), "--out", str(tmp_path / "fp8")]) == 0
    common = ["--prompt", "a ball", "--num_frames", "8", "--set", "text.kind=hash", "--steps", "4"]
    assert main(["generate", "--checkpoint", str(tmp_path / "fp8"), "--output_path", str(tmp_path / "a.mp4"),
                 *common]) == 0
    # fp8 weights with a config that says otherwise is a clear error
    assert main(["generate", "--checkpoint", str(tmp_path / "fp8"), "--output_path", str(tmp_path / "b.mp4"),
                 "--set", "quant.mode=none", *common]) == 2
    assert main(["quantize", "--checkpoint", str(tmp_path / "fp8"), "--out", str(tmp_path / "again")]) == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fp8_matmul_path_leaves_its_input_alone_and_agrees_with_the_dequantized_one(dtype):
    """The path GPUs with fp8 tensor cores take (torch._scaled_mm, which also runs on this CPU): the
    activations are quantized per row into a copy, never in place, and the product is within fp8 rounding."""
    device = "cuda" if torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9) else "cpu"
    torch.manual_seed(0)
    fp8 = Float8Linear.from_linear(torch.nn.Linear(64, 32)).to(device)
    x = torch.randn(2, 5, 64).to(device, dtype)
    before = x.clone()
    with torch.no_grad():
        try:
            fast = fp8._forward_fp8(x)
        except RuntimeError as error:  # CPU builds before 2.13 scale per tensor only
            pytest.skip(f"torch._scaled_mm with per-row scales does not run on this {device}: {error}")
        reference = F.linear(x, dequantize_weight(fp8.weight, fp8.weight_scale, dtype), fp8.bias.to(dtype))
    assert torch.equal(x, before) and fast.dtype == dtype and fast.shape == (2, 5, 32)
    assert (fast.float() - reference.float()).abs().max() < 0.1 * reference.float().abs().max()
