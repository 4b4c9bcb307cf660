"""The published MAGI-1 VAE: reference names and shapes, the reference's formulas, tiles, strict loading."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from magi.errors import InputError
from magi.io.reference import find_reference_vae, load_reference_vae
from magi.models.magi_vae import MagiVAE, MagiVAEConfig, Tiling, blend, run_tiles, tiled_decode, tiled_encode
from magi.presets import get_preset

# The published ckpt/vae/config.json "ddconfig" (Hugging Face sand-ai/MAGI-1; the GitHub repository does not
# ship it). Sizes as hard-coded by diffusers' scripts/convert_magi1_to_diffusers.py (patch (4, 8, 8), 16 heads
# of 64, z 16, 256 x 256 x 16 frames, ffn 4 * 1024, 24 layers, cls token, qkv bias, no norm1); the keys are the
# reference ViTEncoder / ViTDecoder keywords (inference/model/vae/vae_module.py).
PUBLISHED_DDCONFIG = dict(
    video_size=256, video_length=16, patch_size=8, patch_length=4, in_chans=3, z_chans=16, double_z=True,
    embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop_rate=0.0,
    attn_drop_rate=0.0, drop_path_rate=0.0, with_cls_token=True, norm_code=False, ln_in_attn=True,
    conv_last_layer=True, use_rope=False, use_final_proj=False)
# A small architecture of the same kind for the CPU tests: 2x4x4 patches, 2 channels after the unpatchify.
SMALL_DDCONFIG = PUBLISHED_DDCONFIG | dict(video_size=16, video_length=4, patch_size=4, patch_length=2, z_chans=4,
                                           embed_dim=64, depth=2, num_heads=4)


def config_json(ddconfig: dict) -> dict:
    """A reference VAE config.json as diffusers' ConfigMixin writes it for ``ViTVAE(ddconfig, model_type)``."""
    return {"_class_name": "ViTVAE", "_diffusers_version": "0.32.2", "ddconfig": ddconfig, "model_type": "vit"}


def reference_manifest(d: dict) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the reference ``ViTVAE(ddconfig=d)``, read off vae_module.py's __init__s:
    PatchEmbed.proj Conv3d, cls_token, pos_embed (num_patches + cls), Block (norm1 unless ln_in_attn, attn.qkv
    with qkv_bias, attn.proj, norm2, mlp.fc1/fc2), norm, encoder last_layer Linear(D, 2z), decoder proj_in
    Linear(z, D) and last_layer Conv3d(D / (pl ps ps), 3, 3)."""
    D, z, pl, ps = d["embed_dim"], d["z_chans"], d["patch_length"], d["patch_size"]
    cls = int(d["with_cls_token"])
    num_patches = (d["video_length"] // pl) * (d["video_size"] // ps) ** 2
    hidden = int(D * d["mlp_ratio"])
    shapes: dict[str, tuple[int, ...]] = {}
    for part in ("encoder", "decoder"):
        if cls:
            shapes[f"{part}.cls_token"] = (1, 1, D)
        shapes[f"{part}.pos_embed"] = (1, num_patches + cls, D)
        for i in range(d["depth"]):
            b = f"{part}.blocks.{i}."
            if not d["ln_in_attn"]:
                shapes |= {b + "norm1.weight": (D,), b + "norm1.bias": (D,)}
            shapes[b + "attn.qkv.weight"] = (3 * D, D)
            if d["qkv_bias"]:
                shapes[b + "attn.qkv.bias"] = (3 * D,)
            shapes |= {b + "attn.proj.weight": (D, D), b + "attn.proj.bias": (D,),
                       b + "norm2.weight": (D,), b + "norm2.bias": (D,),
                       b + "mlp.fc1.weight": (hidden, D), b + "mlp.fc1.bias": (hidden,),
                       b + "mlp.fc2.weight": (D, hidden), b + "mlp.fc2.bias": (D,)}
        shapes |= {f"{part}.norm.weight": (D,), f"{part}.norm.bias": (D,)}
    shapes |= {"encoder.patch_embed.proj.weight": (D, d["in_chans"], pl, ps, ps), "encoder.patch_embed.proj.bias": (D,),
               "encoder.last_layer.weight": (2 * z, D), "encoder.last_layer.bias": (2 * z,),
               "decoder.proj_in.weight": (D, z), "decoder.proj_in.bias": (D,),
               "decoder.last_layer.weight": (3, D // (pl * ps * ps), 3, 3, 3), "decoder.last_layer.bias": (3,)}
    return shapes


def random_reference_state(d: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=g) * 0.1 + (1.0 if name.endswith("norm2.weight") else 0.0)
            for name, shape in reference_manifest(d).items()}


def shapes_of(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


def test_published_config_matches_the_reference_manifest():
    cfg = MagiVAEConfig.magi()
    assert MagiVAEConfig.from_reference(config_json(PUBLISHED_DDCONFIG), scale_factor=0.18215) == cfg
    assert (cfg.patch_t, cfg.patch_hw, cfg.latent_channels, cfg.scale_factor) == (4, 8, 16, 0.18215)
    with torch.device("meta"):
        vae = MagiVAE(cfg)
    manifest = reference_manifest(PUBLISHED_DDCONFIG)
    assert shapes_of(vae) == manifest
    assert sum(p.numel() for p in vae.parameters()) == 613_755_239
    assert sum(torch.Size(s).numel() for s in manifest.values()) == 613_755_239
    # the pipeline's strides: the published VAE compresses exactly as the magi presets' VAEConfig says
    magi = get_preset("magi-4.5b").vae
    assert (magi.patch_t, magi.patch_hw, magi.latent_channels, magi.scale_factor) == (4, 8, 16, 0.18215)


@pytest.mark.parametrize("flags", [dict(ln_in_attn=False), dict(qkv_bias=False), dict(with_cls_token=False)])
def test_options_change_the_names_as_in_the_reference(flags):
    d = SMALL_DDCONFIG | flags
    assert shapes_of(MagiVAE(MagiVAEConfig.from_reference(config_json(d), 1.0))) == reference_manifest(d)


# ---- the reference's forward, from its formulas on reference-named weights (flash attention -> SDPA) ----

def ref_positions(ref: dict, part: str, d: dict, grid: tuple[int, int, int]) -> torch.Tensor:
    pos = ref[f"{part}.pos_embed"]
    src = (d["video_length"] // d["patch_length"], *(2 * [d["video_size"] // d["patch_size"]]))
    if tuple(grid) == src:
        return pos
    table = pos[:, 1:].reshape(1, *src, -1).permute(0, 4, 1, 2, 3)  # resize_pos_embed
    table = F.interpolate(table, size=grid, mode="trilinear", align_corners=False)
    return torch.cat([pos[:, :1], table.permute(0, 2, 3, 4, 1).reshape(1, -1, pos.shape[-1])], dim=1)


def ref_trunk(ref: dict, part: str, d: dict, x: torch.Tensor, grid) -> torch.Tensor:
    B, _, C = x.shape
    x = torch.cat([ref[f"{part}.cls_token"].expand(B, -1, -1), x], 1) + ref_positions(ref, part, d, grid)
    heads = d["num_heads"]
    for i in range(d["depth"]):
        p = f"{part}.blocks.{i}."
        N = x.shape[1]
        qkv = F.linear(x, ref[p + "attn.qkv.weight"], ref[p + "attn.qkv.bias"]).reshape(B, N, 3, heads, C // heads)
        qkv = (qkv - qkv.mean(-1, keepdim=True)) / (qkv.std(-1, keepdim=True, unbiased=False) + 1e-5)
        q, k, v = (qkv[:, :, j].transpose(1, 2) for j in range(3))  # (B, heads, N, d)
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C)
        x = x + F.linear(o, ref[p + "attn.proj.weight"], ref[p + "attn.proj.bias"])
        h = F.layer_norm(x, (C,), ref[p + "norm2.weight"], ref[p + "norm2.bias"], eps=1e-5)
        h = F.gelu(F.linear(h, ref[p + "mlp.fc1.weight"], ref[p + "mlp.fc1.bias"]))
        x = x + F.linear(h, ref[p + "mlp.fc2.weight"], ref[p + "mlp.fc2.bias"])
    return F.layer_norm(x, (C,), ref[f"{part}.norm.weight"], ref[f"{part}.norm.bias"], eps=1e-5)


def reference_encode(ref: dict, d: dict, video: torch.Tensor) -> torch.Tensor:
    """ViTEncoder.forward, then DiagonalGaussianDistribution(...).mode(): the unscaled posterior mean."""
    pl, ps = d["patch_length"], d["patch_size"]
    x = F.conv3d(video, ref["encoder.patch_embed.proj.weight"], ref["encoder.patch_embed.proj.bias"],
                 stride=(pl, ps, ps))
    B, _, lT, lH, lW = x.shape
    x = ref_trunk(ref, "encoder", d, x.flatten(2).transpose(1, 2), (lT, lH, lW))
    x = F.linear(x, ref["encoder.last_layer.weight"], ref["encoder.last_layer.bias"])[:, 1:]
    x = x.reshape(B, lT, lH, lW, -1).permute(0, 4, 1, 2, 3)
    return x.chunk(2, dim=1)[0]


def reference_decode(ref: dict, d: dict, z: torch.Tensor) -> torch.Tensor:
    """ViTDecoder.forward on unscaled latents."""
    pl, ps = d["patch_length"], d["patch_size"]
    B, C, lT, lH, lW = z.shape
    x = F.linear(z.permute(0, 2, 3, 4, 1).reshape(B, -1, C), ref["decoder.proj_in.weight"], ref["decoder.proj_in.bias"])
    x = ref_trunk(ref, "decoder", d, x, (lT, lH, lW))[:, 1:]
    c = d["embed_dim"] // (pl * ps * ps)
    x = x.reshape(B, lT, lH, lW, pl, ps, ps, c).permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(B, c, lT * pl, lH * ps, lW * ps)
    return F.conv3d(x, ref["decoder.last_layer.weight"], ref["decoder.last_layer.bias"], padding=1)


def small_vae(scale: float = 0.5) -> tuple[MagiVAE, dict]:
    ref = random_reference_state(SMALL_DDCONFIG)
    vae = MagiVAE(MagiVAEConfig.from_reference(config_json(SMALL_DDCONFIG), scale_factor=scale))
    vae.load_state_dict(ref, strict=True)
    return vae.eval(), ref


@pytest.mark.parametrize("shape", [(2, 3, 4, 16, 16), (1, 3, 6, 8, 12)], ids=["train-grid", "resized-positions"])
def test_our_vae_computes_the_reference_forward(shape):
    vae, ref = small_vae(scale=0.5)
    g = torch.Generator().manual_seed(1)
    video = torch.rand(shape, generator=g) * 2 - 1
    with torch.no_grad():
        latents = vae.encode(video)
        assert latents.shape == (shape[0], 4, shape[2] // 2, shape[3] // 4, shape[4] // 4)
        torch.testing.assert_close(latents, reference_encode(ref, SMALL_DDCONFIG, video) * 0.5, atol=1e-5, rtol=1e-5)
        decoded = vae.decode(latents)
        assert decoded.shape == video.shape
        torch.testing.assert_close(decoded, reference_decode(ref, SMALL_DDCONFIG, latents / 0.5), atol=1e-5, rtol=1e-5)


def test_a_lone_frame_is_encoded_as_a_still_patch():
    vae, _ = small_vae()
    frame = torch.rand(1, 3, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(vae.encode(frame), vae.encode(frame.expand(-1, -1, 2, -1, -1)))
        with pytest.raises(ValueError, match="not divisible"):
            vae.encode(torch.zeros(1, 3, 3, 16, 16))


def test_tiles_covering_the_input_change_nothing():
    vae, _ = small_vae()
    video = torch.rand(1, 3, 8, 16, 24) * 2 - 1
    whole = Tiling(frames=8, height=32, width=32)  # strides 8 x 24 x 24: one tile
    with torch.no_grad():
        latents = vae.encode(video)
        assert torch.equal(tiled_encode(vae, video, whole), latents)
        assert torch.equal(tiled_decode(vae, latents, whole), vae.decode(latents))


def test_temporal_tiles_decode_independently():
    """Attention is global, so decoding two segments at once differs from decoding each; without temporal
    overlap (the reference pipeline's setting) the tiled decode of two segments is the two decodes."""
    vae, _ = small_vae()
    latents = torch.randn(1, 4, 4, 4, 4)
    with torch.no_grad():
        halves = torch.cat([vae.decode(latents[:, :, :2]), vae.decode(latents[:, :, 2:])], dim=2)
        assert not torch.allclose(vae.decode(latents), halves, atol=1e-3)
        tiled = tiled_decode(vae, latents, Tiling(frames=4, height=64, width=64))
        assert torch.equal(tiled, halves)


def test_a_lone_latent_tile_decodes_to_one_frame():
    """The published ViTVAE.decode keeps one frame of a one-latent input; the tiled decode of a 4-latent
    chunk in tiles of 3 (the official v2v's first chunk) is 3 * 4 + 1 = 13 frames."""
    vae, _ = small_vae()  # patch_t = 2 here: tiles of 6 frames are 3 latents; 4 latents -> 3 * 2 + 1 frames
    latents = torch.randn(1, 4, 4, 4, 4)
    with torch.no_grad():
        assert vae.decode(latents[:, :, :1]).shape[2] == 1
        tiled = tiled_decode(vae, latents, Tiling(frames=6, height=64, width=64))
        assert tiled.shape[2] == 7
        torch.testing.assert_close(tiled[:, :, 6:], vae.decoder(latents[:, :, 3:] / 0.5)[:, :, :1])


def test_published_vae_runs_in_the_run_dtype():
    from magi.models.magi_vae import TiledVAE

    vae, _ = small_vae()
    tiled = TiledVAE(vae.to(torch.bfloat16), Tiling(frames=4, height=64, width=64))
    video = torch.rand(1, 3, 4, 16, 16) * 2 - 1
    with torch.no_grad():
        latents = tiled.encode(video)
        assert latents.dtype == torch.float32 and tiled.decode(latents).dtype == torch.float32
        reference = vae.float().encode(video)
        assert 0 < (latents - reference).abs().max() < 0.1  # bf16 rounding, not float32


@pytest.mark.parametrize("chained", [False, True])
def test_tiles_stitch_back_to_the_input(chained):
    """With an identity "network", overlapping tiles blend identical values: the input comes back."""
    x = torch.randn(1, 2, 10, 20, 28)
    out = run_tiles(lambda t: t.clone(), x, tile=(4, 8, 8), out_tile=(4, 8, 8), overlap=(0.25, 0.25, 0.25),
                    chained=chained)  # strides 3, 6, 6; blends 1, 2, 2
    torch.testing.assert_close(out, x)


def test_blend_is_the_reference_cross_fade():
    a, b = torch.zeros(1, 1, 1, 1, 6), torch.ones(1, 1, 1, 1, 5)
    blend(a, b, dim=4, extent=4)
    assert b.flatten().tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]  # b[k] = a[-4 + k] (1 - k/4) + b[k] k/4
    x = torch.zeros(1, 1, 1, 1, 12)
    calls = iter(range(10))
    out = run_tiles(lambda t: t + next(calls), x, tile=(1, 1, 8), out_tile=(1, 1, 8), overlap=(0, 0, 0.25),
                    chained=False)  # tiles [0, 8) and [6, 12): the second fades in from the first over 2
    assert out.flatten().tolist() == [0.0] * 6 + [0.0, 0.5] + [1.0] * 4


# ---- checkpoints in the reference layout ----

def write_reference_vae(folder, d: dict, state: dict | None = None) -> dict:
    """A published-layout VAE directory: config.json and diffusion_pytorch_model.safetensors (no prefix)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = random_reference_state(d) if state is None else state
    (folder / "config.json").write_text(json.dumps(config_json(d)))
    save_file(state, str(folder / "diffusion_pytorch_model.safetensors"))
    return state


# the tiny preset's VAE strides: 4x8x8 into 8 channels
TINY_DDCONFIG = PUBLISHED_DDCONFIG | dict(video_size=16, video_length=8, z_chans=8, embed_dim=256, depth=1, num_heads=4)


@pytest.mark.parametrize("layout", ["hugging-face", "run-config", "inside"])
def test_reference_vae_directory_loads_strictly(tmp_path, layout):
    from magi.sampling.pipeline import load_magi_vae

    dit, vae_dir = {"hugging-face": ("ckpt/magi/4.5B_base", "ckpt/vae"), "run-config": ("downloads/4.5B_base",
                    "downloads/vae"), "inside": ("ours", "ours/vae")}[layout]
    (tmp_path / dit / "inference_weight").mkdir(parents=True)
    state = write_reference_vae(tmp_path / vae_dir, TINY_DDCONFIG)
    assert find_reference_vae(tmp_path / dit) == (tmp_path / vae_dir).resolve()
    assert find_reference_vae(tmp_path / dit / "inference_weight") == (tmp_path / vae_dir).resolve()
    vae = load_magi_vae(tmp_path / dit, get_preset("tiny"))
    assert vae.cfg.scale_factor == get_preset("tiny").vae.scale_factor
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in state.items())
    assert set(vae.state_dict()) == set(state)


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_a_bad_reference_vae_checkpoint_names_the_key(tmp_path, change):
    from magi.sampling.pipeline import load_magi_vae

    state = random_reference_state(TINY_DDCONFIG)
    key = "decoder.blocks.0.attn.qkv.bias"
    if change == "missing":
        del state[key]
    elif change == "unexpected":
        key = "decoder.blocks.0.norm1.weight"
        state[key] = torch.ones(256)
    else:
        state[key] = state[key][:-1]
    write_reference_vae(tmp_path / "vae", TINY_DDCONFIG, state)
    with pytest.raises(InputError, match=key.replace(".", r"\.")) as error:
        load_magi_vae(tmp_path, get_preset("tiny"))
    assert "\n" not in str(error.value)


def test_bad_reference_vae_configs_are_one_line_errors(tmp_path):
    from magi.sampling.pipeline import load_magi_vae

    tiny = get_preset("tiny")
    write_reference_vae(tmp_path / "a" / "vae", TINY_DDCONFIG | dict(z_chans=16))
    with pytest.raises(InputError, match="latent_channels=8"):
        load_magi_vae(tmp_path / "a", tiny)
    for bad, match in [(dict(use_rope=True), "use_rope"), (dict(conv_last_layer=False), "conv_last_layer"),
                       (dict(new_option=1), "unknown ddconfig key 'new_option'")]:
        with pytest.raises(InputError, match=match):
            MagiVAEConfig.from_reference(config_json(TINY_DDCONFIG | bad), 1.0)
    (tmp_path / "b" / "vae").mkdir(parents=True)
    (tmp_path / "b" / "vae" / "config.json").write_text(json.dumps(config_json(TINY_DDCONFIG)))
    (tmp_path / "b" / "vae" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(InputError, match="never loads"):
        load_reference_vae(tmp_path / "b" / "vae")
    with pytest.raises(InputError, match="has no VAE"):
        load_magi_vae(tmp_path / "c" / "d" / "e", tiny)


def test_generate_with_the_reference_vae(tmp_path):
    """A reference checkpoint (DiT shards + published-layout VAE) runs end to end through the pipeline."""
    from magi.models.magi_vae import TiledVAE
    from magi.sampling.pipeline import Request, build_pipeline, generate_frames
    from test_reference import write_reference_dir

    run = get_preset("tiny")
    ckpt = tmp_path / "ckpt" / "magi" / "tiny"
    run = dataclasses.replace(run, dit=dataclasses.replace(run.dit, norm="layernorm", rope="magi"),
                              text=dataclasses.replace(run.text, kind="hash"), weights=str(ckpt))
    write_reference_dir(ckpt / "inference_weight", run.dit)
    write_reference_vae(tmp_path / "ckpt" / "vae", TINY_DDCONFIG)
    pipe = build_pipeline(run)
    assert isinstance(pipe.vae, TiledVAE) and pipe.vae.tiling.frames == 2 * run.vae.patch_t  # fps // 2 is 1 latent
    image = (torch.rand(64, 64, 3) * 255).to(torch.uint8).numpy()
    frames = list(generate_frames(pipe, Request(mode="i2v", prompt="a ball", image=image, num_frames=8)))
    assert frames[0].shape == (1, 64, 64, 3)
    assert sum(f.shape[0] for f in frames[1:]) == 8 and frames[1].shape[1:] == (64, 64, 3)


def test_convert_from_reference_copies_the_vae_strictly(tmp_path, capsys):
    from magi.cli import main
    from magi.config import RunConfig
    from magi.sampling.pipeline import build_pipeline
    from test_reference import write_reference_dir

    sets = ["--preset", "tiny", "--set", "dit.norm=layernorm", "--set", "dit.rope=magi"]
    dit_cfg = dataclasses.replace(get_preset("tiny").dit, norm="layernorm", rope="magi")
    source = tmp_path / "ckpt" / "magi" / "tiny"
    write_reference_dir(source / "inference_weight", dit_cfg)
    state = write_reference_vae(tmp_path / "ckpt" / "vae", TINY_DDCONFIG)
    out = tmp_path / "ours"
    assert main(["convert", "--from-reference", str(source), *sets, "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "vae").iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    run = dataclasses.replace(RunConfig.load(out / "config.json"), weights=str(out))
    vae = build_pipeline(run).vae.vae
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in state.items())
    # a VAE that does not load is reported before anything is written
    del state["encoder.norm.bias"]
    write_reference_vae(tmp_path / "ckpt" / "vae", TINY_DDCONFIG, state)
    capsys.readouterr()
    assert main(["convert", "--from-reference", str(source), *sets, "--out", str(tmp_path / "bad")]) == 2
    assert "encoder.norm.bias" in capsys.readouterr().err and not (tmp_path / "bad").exists()
