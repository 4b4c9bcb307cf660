"""The MAGI-1 reference checkpoint layout: manifest, strict key map, fp8 variant, sharded files, CLI."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from conftest import randomize_
from magi.config import DiTConfig
from magi.errors import InputError
from magi.io.reference import (
    PER_TENSOR,
    dequantize_reference,
    find_reference_weights,
    from_reference,
    key_map,
    reference_manifest,
    to_reference,
)
from magi.io.weights import load_state, read_sharded_safetensors, save_weights, write_sharded_safetensors
from magi.models.dit import DiT
from magi.models.layers import timestep_embedding
from magi.presets import get_preset


def ref_cfg(**kw) -> DiTConfig:
    base = dict(in_channels=4, dim=64, depth=3, num_heads=4, num_kv_heads=2, head_dim=16, ffn_dim=96,
                context_dim=24, context_max_length=8, chunk_frames=2, norm="layernorm", rope="magi",
                gelu_approximate="none", gated_ffn=False, adaln_text="null_token", null_text_tokens=3)
    return DiTConfig(**(base | kw))


def random_dit(cfg: DiTConfig, seed: int = 0) -> DiT:
    return randomize_(DiT(cfg), seed=seed).eval()


@pytest.mark.parametrize("name", ["magi-4.5b", "magi-24b"])
@pytest.mark.parametrize("quantized", [False, True])
def test_published_manifest_is_covered_exactly_once(name, quantized):
    cfg = get_preset(name).dit
    manifest = reference_manifest(cfg, quantized=quantized)
    consumed = [k for rule in key_map(cfg) for k in rule.ref]
    assert len(consumed) == len(set(consumed))
    assert set(consumed) == set(reference_manifest(cfg))
    with torch.device("meta"):
        ours = DiT(cfg).state_dict()
        state = {k: torch.empty(shape, dtype=torch.float8_e4m3fn if k.endswith(".weight") and len(shape) == 3
                                else torch.bfloat16) for k, shape in manifest.items()}
        mapped = from_reference(state, cfg)
    assert set(mapped) == set(ours)
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in ours.items()}


@pytest.mark.parametrize("gated", [False, True])
def test_round_trip_is_bit_identical(gated):
    cfg = ref_cfg(gated_ffn=gated)
    ours = random_dit(cfg).state_dict()
    ref = to_reference(ours, cfg)
    assert {k: tuple(v.shape) for k, v in ref.items()} == reference_manifest(cfg)
    back = from_reference(ref, cfg)
    assert set(back) == set(ours)
    assert all(torch.equal(back[k], ours[k]) for k in ours)


def reference_forward(ref: dict, cfg: DiTConfig, latents, t, context, unconditional=False):
    """The reference VideoDiTModel's forward for one chunk and batch 1, written from its formulas on
    reference-named weights (flash attention -> SDPA, fused kernels -> torch). The adaLN text term is
    the null caption's second-to-last token (``unconditional``: its last), as the reference's
    ``CaptionEmbedder.caption_drop_single_token`` does."""
    p, H, hd, Hkv = cfg.patch_size, cfg.num_heads, cfg.head_dim, cfg.num_kv_heads
    def ln(x, name, one_p):
        return F.layer_norm(x, x.shape[-1:], ref[f"{name}.weight"] + (1 if one_p else 0), ref[f"{name}.bias"],
                            cfg.norm_eps)

    def lin(x, name):
        return x @ ref[f"{name}.weight"].t() + (ref[f"{name}.bias"] if f"{name}.bias" in ref else 0)

    x = F.conv3d(latents * cfg.x_rescale_factor, ref["x_embedder.weight"], stride=(1, p, p))
    _, _, T, h, w = x.shape
    x = rearrange(x, "n c t h w -> (t h w) n c")[:, 0]  # (S, D)
    # rope: build_fourier_pos_embed(in_pixels=False) with ref_feat_shape = [T, h / r, w / r]
    r = math.sqrt(h * w / 256)
    axes = [torch.arange(T).float(), torch.arange(h).float() - (h - 1) / 2, torch.arange(w).float() - (w - 1) / 2]
    axes = [a if f == 1 else a / (f - 1) * (s - 1) for a, f, s in zip(axes, (T, h, w), (T, h / r, w / r))]
    pos = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)[..., None] * ref["rope.bands"]
    sin, cos = pos.sin().reshape(T * h * w, -1), pos.cos().reshape(T * h * w, -1)

    def rotary(v):  # flash_attn apply_rotary_emb, interleaved=False
        n = cos.shape[-1]
        x1, x2 = v[..., :n], v[..., n:2 * n]
        c, s = cos[:, None], sin[:, None]
        return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c, v[..., 2 * n:]], -1)

    t_emb = lin(F.silu(lin(timestep_embedding(t, 256), "t_embedder.mlp.0")), "t_embedder.mlp.2")
    y_xattn = F.silu(lin(context, "y_embedder.y_proj_xattn.0"))  # (L, D)
    token = ref["y_embedder.null_caption_embedding"][-1 if unconditional else -2]
    cond = t_emb + lin(token, "y_embedder.y_proj_adaln.0")
    for i in range(cfg.depth):
        L, a = f"videodit_blocks.layers.{i}.", f"videodit_blocks.layers.{i}.self_attention."
        res, hs = x, ln(x, f"{a}linear_qkv.layer_norm", False)
        q = rotary(ln(lin(hs, f"{a}linear_qkv.q").unflatten(-1, (H, hd)), f"{a}q_layernorm", True))
        k = rotary(ln(lin(hs, f"{a}linear_qkv.k").unflatten(-1, (Hkv, hd)), f"{a}k_layernorm", True))
        v = lin(hs, f"{a}linear_qkv.v").unflatten(-1, (Hkv, hd))
        def rep(z):
            return z.repeat_interleave(H // Hkv, 1).transpose(0, 1)  # (H, S, hd)

        core = F.scaled_dot_product_attention(q.transpose(0, 1), rep(k), rep(v)).transpose(0, 1).flatten(1)
        qx = ln(lin(hs, f"{a}linear_qkv.qx").unflatten(-1, (H, hd)), f"{a}q_layernorm_xattn", True)
        kvx = torch.cat([y_xattn @ wc.t() for wc in ref[f"{a}linear_kv_xattn.weight"].chunk(8, 0)], 1)
        kx, vx = kvx.view(y_xattn.shape[0], -1, 2 * hd).split(hd, -1)
        kx = ln(kx, f"{a}k_layernorm_xattn", True)
        cross = F.scaled_dot_product_attention(qx.transpose(0, 1), rep(kx), rep(vx)).transpose(0, 1).flatten(1)
        out = rearrange(torch.cat([core, cross], -1), "s (n hn hd) -> s (hn n hd)", n=2, hn=8)
        out = lin(out, f"{a}linear_proj")
        gate_msa, gate_mlp = torch.tanh(lin(F.silu(cond), f"{L}ada_modulate_layer.proj.0")).chunk(2, -1)
        x = ln(out * gate_msa, f"{L}self_attn_post_norm", True) + res
        m = lin(ln(x, f"{L}mlp.layer_norm", False), f"{L}mlp.linear_fc1")
        m = F.silu(m.chunk(2, -1)[0]) * m.chunk(2, -1)[1] if cfg.gated_ffn else F.gelu(m)
        x = ln(lin(m, f"{L}mlp.linear_fc2") * gate_mlp, f"{L}mlp_post_norm", True) + x
    x = lin(ln(x, "videodit_blocks.final_layernorm", True), "final_linear.linear")
    x = rearrange(x[:, None], "(T H W) N (pT pH pW C) -> N C (T pT) (H pH) (W pW)", H=h, W=w, pT=1, pH=p, pW=p)
    return x / cfg.x_rescale_factor


@pytest.mark.parametrize("gated", [False, True])
def test_our_dit_computes_the_reference_forward(gated):
    cfg = ref_cfg(gated_ffn=gated, x_rescale_factor=0.5, num_heads=8, num_kv_heads=4, head_dim=8, dim=48)
    dit = random_dit(cfg, seed=1)
    ref = to_reference(dit.state_dict(), cfg)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, cfg.in_channels, cfg.chunk_frames, 6, 10, generator=g)
    context = torch.randn(1, 5, cfg.context_dim, generator=g)
    t = torch.full((1, cfg.chunk_frames), 0.3)
    with torch.no_grad():
        for unconditional in (False, True):
            ours = dit(latents, t, context, no_text=torch.tensor([unconditional]))
            expected = reference_forward(ref, cfg, latents, t[:, 0], context[0], unconditional)
            torch.testing.assert_close(ours, expected, atol=2e-4, rtol=2e-4)
        assert not torch.allclose(ours, dit(latents, t, context))  # the flag matters


def quantize_like_reference(ref: dict, cfg: DiTConfig) -> dict:
    """High-precision reference state -> the ``*_distill_quant`` layout (what its calibration produces)."""
    out = dict(ref)
    g = torch.Generator().manual_seed(3)
    for i in range(1, cfg.depth - 1):
        a, m = f"videodit_blocks.layers.{i}.self_attention.", f"videodit_blocks.layers.{i}.mlp."
        names = {"q": f"{a}linear_qkv.q", "qx": f"{a}linear_qkv.qx", "k": f"{a}linear_qkv.k",
                 "v": f"{a}linear_qkv.v", "proj": f"{a}linear_proj", "fc1": f"{m}linear_fc1", "fc2": f"{m}linear_fc2"}
        for short, name in names.items():
            w = out.pop(f"{name}.weight").float()
            s = torch.rand(w.shape[1], generator=g) + 0.5  # per-input-channel smoothing
            a0 = torch.tensor([0.7])
            ws = (w * s / a0).abs().max() / 448
            out[f"{name}.weight"] = (w * s / (a0 * ws)).to(torch.float8_e4m3fn)[None]
            out[f"{name}.weight_scale"] = ws.reshape(1)
            if short in PER_TENSOR:
                s[0] = a0[0]
                out[f"{name}.weight"] = (w * s / (a0 * ws)).to(torch.float8_e4m3fn)[None]
                out[f"{name}.input_scale"] = s
            else:
                out[f"{name}.input_scale"], out[f"{name}.smooth_scale"] = a0, s[None]
    return out


def test_fp8_reference_checkpoint_dequantizes():
    cfg = ref_cfg()
    ref = to_reference(random_dit(cfg).state_dict(), cfg)
    quant = quantize_like_reference(ref, cfg)
    assert {k: tuple(v.shape) for k, v in quant.items()} == reference_manifest(cfg, quantized=True)
    deq = dequantize_reference(quant, cfg)
    for k, v in ref.items():
        err = (deq[k].float() - v).norm() / v.norm()
        assert err < 0.08, (k, err)
    assert set(from_reference(quant, cfg)) == set(DiT(cfg).state_dict())


def write_reference_dir(path, cfg: DiTConfig, seed: int = 0):
    dit = random_dit(cfg, seed)
    write_sharded_safetensors(path, to_reference(dit.state_dict(), cfg), max_shard_bytes=40_000)
    return dit


def test_sharded_reference_checkpoint_loads_strictly(tmp_path):
    cfg = ref_cfg()
    dit = write_reference_dir(tmp_path / "inference_weight", cfg)
    assert len(list((tmp_path / "inference_weight").glob("model-*.safetensors"))) > 1
    assert find_reference_weights(tmp_path) == tmp_path / "inference_weight"
    loaded = DiT(cfg).eval()
    load_state(loaded, from_reference(read_sharded_safetensors(tmp_path / "inference_weight"), cfg), "ref")
    g = torch.Generator().manual_seed(0)
    latents, context = torch.randn(2, 4, 4, 8, 8, generator=g), torch.randn(2, 5, 24, generator=g)
    t = torch.tensor([[0.2, 0.2, 0.7, 0.7], [0.5, 0.5, 1.0, 1.0]])
    with torch.no_grad():
        assert torch.equal(loaded(latents, t, context), dit(latents, t, context))


@pytest.mark.parametrize("change", ["missing", "extra", "shape"])
def test_bad_reference_checkpoint_names_the_key(change):
    cfg = ref_cfg()
    ref = to_reference(random_dit(cfg).state_dict(), cfg)
    key = "videodit_blocks.layers.1.self_attention.linear_qkv.qx.weight"
    if change == "missing":
        del ref[key]
    elif change == "extra":
        key = "videodit_blocks.layers.1.unknown.weight"
        ref[key] = torch.zeros(1)
    else:
        ref[key] = ref[key][:-1]
    with pytest.raises(InputError, match=key.replace(".", r"\.")):
        from_reference(ref, cfg)


def test_incompatible_config_and_bad_index(tmp_path):
    with pytest.raises(InputError, match="layernorm"):
        reference_manifest(dataclasses.replace(ref_cfg(), norm="rms"))
    cfg = ref_cfg()
    write_reference_dir(tmp_path, cfg)
    shard = sorted(tmp_path.glob("model-*.safetensors"))[0]
    from magi.io.weights import read_safetensors

    save_weights(shard, read_safetensors(shard) | {"stray": torch.zeros(1)})
    with pytest.raises(InputError, match="stray"):
        read_sharded_safetensors(tmp_path)


def test_magi_convert_cli(tmp_path, capsys):
    from magi.cli import main

    cfg = dataclasses.replace(get_preset("tiny").dit, norm="layernorm", rope="magi")
    dit = write_reference_dir(tmp_path / "ref" / "inference_weight", cfg)
    sets = ["--set", "dit.norm=layernorm", "--set", "dit.rope=magi"]
    out = tmp_path / "ours"
    assert main(["convert", "--from-reference", str(tmp_path / "ref"), "--preset", "tiny", *sets,
                 "--out", str(out)]) == 0
    loaded = DiT(cfg)
    load_state(loaded, read_sharded_safetensors_or_ours(out), "converted")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in dit.state_dict().items())
    assert main(["convert", "--to-reference", str(out), "--out", str(tmp_path / "back")]) == 0
    back = read_sharded_safetensors(tmp_path / "back")
    original = read_sharded_safetensors(tmp_path / "ref" / "inference_weight")
    assert set(back) == set(original)
    # the tiny preset's default architecture is not the reference's: one clear line, exit status 2
    assert main(["convert", "--from-reference", str(tmp_path / "ref"), "--preset", "tiny",
                 "--out", str(tmp_path / "x")]) == 2
    assert "layernorm" in capsys.readouterr().err
    assert main(["convert", "--from-reference", str(tmp_path / "ref"), "--out", str(tmp_path / "x")]) == 2


def read_sharded_safetensors_or_ours(folder):
    from magi.io.weights import read_safetensors

    return read_safetensors(folder / "dit.safetensors")


def test_build_pipeline_reads_a_reference_directory(tmp_path):
    from magi.models.magi_vae import TiledVAE
    from magi.models.vae import TransformerVAE
    from magi.sampling.pipeline import build_pipeline
    from test_magi_vae import TINY_DDCONFIG, write_reference_vae

    folder = tmp_path / "downloads" / "4.5B_base"  # the reference run configs' load / vae_pretrained layout
    run = get_preset("tiny")
    run = dataclasses.replace(run, dit=dataclasses.replace(run.dit, norm="layernorm", rope="magi"),
                              weights=str(folder))
    dit = write_reference_dir(folder / "inference_weight", run.dit)
    with pytest.raises(InputError, match="has no VAE"):
        build_pipeline(run)
    vae_state = write_reference_vae(tmp_path / "downloads" / "vae", TINY_DDCONFIG)  # the published VAE's layout
    pipe = build_pipeline(run)
    assert all(torch.equal(pipe.dit.state_dict()[k], v) for k, v in dit.state_dict().items())
    assert isinstance(pipe.vae, TiledVAE)
    assert all(torch.equal(pipe.vae.vae.state_dict()[k], v) for k, v in vae_state.items())
    save_weights(folder / "vae.safetensors", TransformerVAE(run.vae).state_dict())  # ours, if present, wins
    assert isinstance(build_pipeline(run).vae, TransformerVAE)


def test_bf16_pipeline_keeps_the_official_float32_gains(tmp_path):
    """The official adds 1 to the zero-centred gains in float32 and keeps q/k, post and final norms in
    float32 (``_high_precision_promoter``); a bf16 checkpoint's gains must not be rounded to bf16 again."""
    from magi.sampling.pipeline import FLOAT32_GAINS, FLOAT32_MODULES, build_pipeline
    from test_magi_vae import TINY_DDCONFIG, write_reference_vae

    folder = tmp_path / "downloads" / "4.5B_base"
    run = get_preset("tiny")
    run = dataclasses.replace(run, dit=dataclasses.replace(run.dit, norm="layernorm", rope="magi"),
                              weights=str(folder), dtype="bfloat16")
    ref = to_reference(random_dit(run.dit).state_dict(), run.dit)
    ref = {k: (v + 0.01).to(torch.bfloat16) if k.endswith("layernorm.weight") else v.to(torch.bfloat16)
           for k, v in ref.items()}  # gains - 1 of about 0.01: 1 + w needs more bits than bf16 has
    write_sharded_safetensors(folder / "inference_weight", ref, max_shard_bytes=40_000)
    write_reference_vae(tmp_path / "downloads" / "vae", TINY_DDCONFIG)
    dit = build_pipeline(run).dit
    gain = dit.blocks[0].q_norm.weight
    w = ref["videodit_blocks.layers.0.self_attention.q_layernorm.weight"]
    assert gain.dtype == torch.float32 and torch.equal(gain, w.float() + 1)
    assert not torch.equal(gain, (w.float() + 1).to(torch.bfloat16).float())  # bf16 would have rounded it
    assert dit.blocks[0].qkv.weight.dtype == torch.bfloat16 and dit.blocks[0].cross_q_norm.weight.dtype == \
        torch.bfloat16  # the cross-attention norms stay bf16, as the official's _xattn ones
    for name in FLOAT32_GAINS:
        module = dit.final_norm if name == "final_norm" else getattr(dit.blocks[0], name)
        assert module.weight.dtype == torch.float32
    for name in FLOAT32_MODULES:  # the embedders, final linear and RoPE bands, as the official's
        assert all(p.dtype == torch.float32 for p in getattr(dit, name).parameters())
    assert dit.null_context.dtype == torch.float32 and dit.blocks[1].ffn.w1.weight.dtype == torch.bfloat16
    from magi.sampling import magi1

    sampler = dataclasses.replace(get_preset("magi-4.5b").sampler, steps=8, special_tokens=())
    context, mask = torch.randn(1, 5, 384), torch.ones(1, 5, dtype=torch.bool)
    chunk = next(magi1.iter_generate(dit, sampler, context, mask, num_chunks=1, latent_shape=(8, 8, 8)))
    assert chunk.dtype == torch.float32 and chunk.isfinite().all()
