"""The published MAGI-1 checkpoints (SandAI-org/MAGI-1) <-> our DiT state dict, through one explicit key map.

The reference ``VideoDiTModel`` stores the same network as ``magi.models.dit.DiT`` (with ``dit.norm =
"layernorm"`` and ``dit.rope = "magi"``) under other names and, for a few tensors, another layout:

    reference                                   ours                   layout change
    x_embedder.weight (D, C, 1, p, p)           patch_embed.weight     Conv3d kernel flattened (c, p, q)
    linear_qkv.{q,k,v}.weight                   qkv.weight             stacked rows [q; k; v]
    linear_qkv.qx.weight                        cross_q.weight         -
    linear_kv_xattn.weight  rows (h, [k; v], d) cross_kv.weight        rows ([k; v], h, d)
    linear_proj.weight  cols (8, [self; x], j)  attn_out.weight        cols ([self; x], 8, j)  (the "hn=8")
    FusedLayerNorm weight (stores gain - 1)     *_norm.weight          + 1 ("apply_layernorm_1p")
    final_linear.linear.weight rows (p, q, c)   final_proj.weight      rows (c, p, q)

``torch.nn.LayerNorm`` inside ``linear_qkv`` and ``mlp`` stores the gain itself (no + 1). The gated
``linear_fc1`` is [gate; up] like our ``ffn.w1``. The ``*_distill_quant`` checkpoints hold fp8 linears
(``weight`` (1, out, in) e4m3, ``weight_scale``, ``input_scale`` and, per-channel kind, ``smooth_scale``);
they are dequantized here to float32 weights, to be requantized by ``magi.quant.fp8.quantize_`` if the
config asks for fp8 (see ``dequantize_reference_linear`` for the one approximation this makes).

Every reference key is consumed exactly once and every one of ours produced exactly once; anything else
raises a one-line ``InputError`` naming the key. This module maps tensors only (it imports no network).

The published VAE is a separate directory (``config.json`` + ``diffusion_pytorch_model.safetensors``, names
already those of ``magi.models.magi_vae.MagiVAE``): ``find_reference_vae`` and ``load_reference_vae``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor

from magi.config import DiTConfig
from magi.errors import InputError
from magi.io.weights import (
    SAFETENSORS_INDEX,
    SINGLE_SAFETENSORS,
    LazyState,
    read_safetensors,
    shape_of,
)

TIME_FREQ_DIM = 256  # the reference TimestepEmbedder's frequency_embedding_size
PROJ_GROUPS = 8  # the reference's hard-coded ``hn=8`` (its tensor-parallel degree at training time)
PER_TENSOR = ("q", "qx", "k", "v", "fc1")  # PerTensorQuantizedFp8Linear in the quantized checkpoints
PER_CHANNEL = ("proj", "fc2")  # PerChannelQuantizedFp8Linear


@dataclass(frozen=True)
class Rule:
    """One of our tensors from one or more reference tensors, and back."""

    ours: str
    ref: tuple[str, ...]
    to_ours: Callable[[list[Tensor]], Tensor]
    to_ref: Callable[[Tensor], list[Tensor]]


def _same(ours: str, ref: str) -> Rule:
    return Rule(ours, (ref,), lambda ts: ts[0], lambda t: [t])


def _norm(ours: str, ref: str, one_p: bool) -> list[Rule]:
    """weight (+ 1 for the reference's zero-centred FusedLayerNorm) and bias."""
    weight = Rule(f"{ours}.weight", (f"{ref}.weight",), lambda ts: ts[0].float() + 1,  # exact, as the official
                  lambda t: [(t.float() - 1).to(t.dtype)]) if one_p \
        else _same(f"{ours}.weight", f"{ref}.weight")
    return [weight, _same(f"{ours}.bias", f"{ref}.bias")]


def check_compatible(cfg: DiTConfig) -> None:
    """The reference architecture needs these options; raise one line naming the first that differs."""
    if cfg.norm != "layernorm" or cfg.rope != "magi":
        raise InputError(f"the MAGI-1 reference layout needs dit.norm='layernorm' and dit.rope='magi' "
                         f"(got norm={cfg.norm!r}, rope={cfg.rope!r}); use a magi-* preset")
    if cfg.step_conditioning and cfg.step_embedder != "time":
        raise InputError("dit.step_conditioning with step_embedder='own' has no counterpart in the MAGI-1 reference "
                         "checkpoints (their distilled models embed the step with the timestep embedder: 'time')")


def _linear_names(cfg: DiTConfig, layer: int) -> dict[str, str]:
    """Short name -> reference module path of the linears the quantized checkpoints may hold in fp8."""
    a = f"videodit_blocks.layers.{layer}.self_attention"
    m = f"videodit_blocks.layers.{layer}.mlp"
    return {"q": f"{a}.linear_qkv.q", "qx": f"{a}.linear_qkv.qx", "k": f"{a}.linear_qkv.k",
            "v": f"{a}.linear_qkv.v", "proj": f"{a}.linear_proj", "fc1": f"{m}.linear_fc1", "fc2": f"{m}.linear_fc2"}


def reference_manifest(cfg: DiTConfig, quantized: bool = False) -> dict[str, tuple[int, ...]]:
    """Every parameter name and shape of the reference VideoDiTModel for ``cfg``.

    ``quantized``: the ``*_distill_quant`` layout, where the attention and MLP linears of all but the
    first and last layers are fp8 (weight (1, out, in) plus scales).
    """
    check_compatible(cfg)
    D, C, p, Dc, cond = cfg.dim, cfg.in_channels, cfg.patch_size, cfg.context_dim, cfg.cond_dim
    hd, q_dim, kv_dim = cfg.head_dim, cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    fc1 = cfg.ffn_dim * (2 if cfg.gated_ffn else 1)
    shapes: dict[str, tuple[int, ...]] = {
        "x_embedder.weight": (D, C, 1, p, p),  # t_patch_size 1
        "t_embedder.mlp.0.weight": (cond, TIME_FREQ_DIM), "t_embedder.mlp.0.bias": (cond,),
        "t_embedder.mlp.2.weight": (cond, cond), "t_embedder.mlp.2.bias": (cond,),
        "y_embedder.y_proj_xattn.0.weight": (D, Dc), "y_embedder.y_proj_xattn.0.bias": (D,),
        "y_embedder.y_proj_adaln.0.weight": (cond, Dc), "y_embedder.y_proj_adaln.0.bias": (cond,),
        "y_embedder.null_caption_embedding": (cfg.context_max_length, Dc),
        "rope.bands": (hd // 8,),
    }
    for i in range(cfg.depth):
        L, a = f"videodit_blocks.layers.{i}.", f"videodit_blocks.layers.{i}.self_attention."
        shapes |= {f"{L}ada_modulate_layer.proj.0.weight": (2 * D, cond),
                   f"{L}ada_modulate_layer.proj.0.bias": (2 * D,),
                   f"{a}linear_kv_xattn.weight": (2 * kv_dim, D)}
        linears = {"q": (q_dim, D), "qx": (q_dim, D), "k": (kv_dim, D), "v": (kv_dim, D), "proj": (D, 2 * q_dim),
                   "fc1": (fc1, D), "fc2": (D, cfg.ffn_dim)}
        names = _linear_names(cfg, i)
        fp8_layer = quantized and 0 < i < cfg.depth - 1
        for short, (out, inp) in linears.items():
            name = names[short]
            if not fp8_layer:
                shapes[f"{name}.weight"] = (out, inp)
                continue
            shapes |= {f"{name}.weight": (1, out, inp), f"{name}.weight_scale": (1,)}
            if short in PER_TENSOR:
                shapes[f"{name}.input_scale"] = (inp,)
            else:
                shapes |= {f"{name}.input_scale": (1,), f"{name}.smooth_scale": (1, inp)}
        for norm, size in (("linear_qkv.layer_norm", D), ("q_layernorm", hd), ("k_layernorm", hd),
                           ("q_layernorm_xattn", hd), ("k_layernorm_xattn", hd)):
            shapes |= {f"{a}{norm}.weight": (size,), f"{a}{norm}.bias": (size,)}
        for norm in ("self_attn_post_norm", "mlp.layer_norm", "mlp_post_norm"):
            shapes |= {f"{L}{norm}.weight": (D,), f"{L}{norm}.bias": (D,)}
    shapes |= {"videodit_blocks.final_layernorm.weight": (D,), "videodit_blocks.final_layernorm.bias": (D,),
               "final_linear.linear.weight": (p * p * C, D)}
    return shapes


def key_map(cfg: DiTConfig) -> list[Rule]:
    """The explicit map between the reference (high-precision layout) and our DiT, one Rule per our tensor."""
    check_compatible(cfg)
    D, C, p = cfg.dim, cfg.in_channels, cfg.patch_size
    hd, q_dim, kv_dim = cfg.head_dim, cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    rules = [
        Rule("patch_embed.weight", ("x_embedder.weight",),
             lambda ts: ts[0].reshape(D, C * p * p), lambda t: [t.reshape(D, C, 1, p, p)]),
        _same("time_embed.0.weight", "t_embedder.mlp.0.weight"), _same("time_embed.0.bias", "t_embedder.mlp.0.bias"),
        _same("time_embed.2.weight", "t_embedder.mlp.2.weight"), _same("time_embed.2.bias", "t_embedder.mlp.2.bias"),
        _same("context_embed.0.weight", "y_embedder.y_proj_xattn.0.weight"),
        _same("context_embed.0.bias", "y_embedder.y_proj_xattn.0.bias"),
        _same("context_pool.weight", "y_embedder.y_proj_adaln.0.weight"),
        _same("context_pool.bias", "y_embedder.y_proj_adaln.0.bias"),
        _same("null_context", "y_embedder.null_caption_embedding"),
        _same("rope.bands", "rope.bands"),
    ]
    for i in range(cfg.depth):
        b, L, a = f"blocks.{i}.", f"videodit_blocks.layers.{i}.", f"videodit_blocks.layers.{i}.self_attention."
        qkv = tuple(f"{a}linear_qkv.{n}.weight" for n in ("q", "k", "v"))
        rules += [
            _same(f"{b}modulation.weight", f"{L}ada_modulate_layer.proj.0.weight"),
            _same(f"{b}modulation.bias", f"{L}ada_modulate_layer.proj.0.bias"),
            *_norm(f"{b}attn_norm", f"{a}linear_qkv.layer_norm", one_p=False),
            Rule(f"{b}qkv.weight", qkv, lambda ts: torch.cat(ts, 0),
                 lambda t: list(t.split([q_dim, kv_dim, kv_dim], 0))),
            *_norm(f"{b}q_norm", f"{a}q_layernorm", one_p=True),
            *_norm(f"{b}k_norm", f"{a}k_layernorm", one_p=True),
            _same(f"{b}cross_q.weight", f"{a}linear_qkv.qx.weight"),
            Rule(f"{b}cross_kv.weight", (f"{a}linear_kv_xattn.weight",),
                 lambda ts: rearrange(ts[0], "(h two d) i -> (two h d) i", two=2, d=hd),
                 lambda t: [rearrange(t, "(two h d) i -> (h two d) i", two=2, d=hd)]),
            *_norm(f"{b}cross_q_norm", f"{a}q_layernorm_xattn", one_p=True),
            *_norm(f"{b}cross_k_norm", f"{a}k_layernorm_xattn", one_p=True),
            Rule(f"{b}attn_out.weight", (f"{a}linear_proj.weight",),
                 lambda ts: rearrange(ts[0], "o (g n j) -> o (n g j)", n=2, g=PROJ_GROUPS),
                 lambda t: [rearrange(t, "o (n g j) -> o (g n j)", n=2, g=PROJ_GROUPS)]),
            *_norm(f"{b}attn_post_norm", f"{L}self_attn_post_norm", one_p=True),
            *_norm(f"{b}ffn_norm", f"{L}mlp.layer_norm", one_p=False),
            _same(f"{b}ffn.w1.weight", f"{L}mlp.linear_fc1.weight"),
            _same(f"{b}ffn.w2.weight", f"{L}mlp.linear_fc2.weight"),
            *_norm(f"{b}ffn_post_norm", f"{L}mlp_post_norm", one_p=True),
        ]
    rules += [
        *_norm("final_norm", "videodit_blocks.final_layernorm", one_p=True),
        Rule("final_proj.weight", ("final_linear.linear.weight",),
             lambda ts: rearrange(ts[0], "(p q c) d -> (c p q) d", p=p, q=p),
             lambda t: [rearrange(t, "(c p q) d -> (p q c) d", p=p, q=p)]),
    ]
    return rules


def _check_keys(state: Mapping[str, Tensor], expected: dict[str, tuple[int, ...]], what: str) -> None:
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing:
        raise InputError(f"{what} is missing '{missing[0]}' ({len(missing)} missing keys in all)")
    if extra:
        raise InputError(f"{what} has unexpected key '{extra[0]}' ({len(extra)} unexpected keys in all)")
    for name, shape in expected.items():
        if shape_of(state, name) != shape:
            raise InputError(f"{what}: '{name}' has shape {shape_of(state, name)}, expected {shape}")


def is_quantized_reference(state: dict[str, Tensor]) -> bool:
    return any(key.endswith(".weight_scale") for key in state)


def dequantize_reference_linear(tensors: dict[str, Tensor], per_tensor: bool) -> Tensor:
    """Effective float32 weight (out, in) of a reference fp8 linear.

    Both kinds divide the input by a per-input-channel scale s before casting it to fp8 and multiply the
    fp8 product by two scalars (cuBLAS reads one value from each scale pointer), so
    ``W[o, i] = w_fp8[o, i] * weight_scale * a / s[i]``: per-tensor kind s = input_scale (in,), a =
    input_scale[0]; per-channel kind s = smooth_scale[0], a = input_scale[0]. The reference also rounds
    the scaled *activations* to fp8; a dequantized (or our per-channel requantized) weight does not, which
    is the approximation: outputs agree to fp8 activation rounding (~2^-4 relative per element).
    """
    weight = tensors["weight"][0].float()  # (out, in)
    scale = tensors["weight_scale"].float().reshape(-1)[0]
    smooth = tensors["input_scale"].float().reshape(-1) if per_tensor else tensors["smooth_scale"].float()[0]
    a = tensors["input_scale"].float().reshape(-1)[0]
    return weight * (scale * a) / smooth[None, :]


def dequantize_reference(state: dict[str, Tensor], cfg: DiTConfig) -> dict[str, Tensor]:
    """A quantized reference state -> the high-precision reference layout (strict on the quantized keys)."""
    _check_keys(state, reference_manifest(cfg, quantized=True), "quantized reference checkpoint")
    out = dict(state)
    for i in range(1, cfg.depth - 1):
        for short, name in _linear_names(cfg, i).items():
            parts = {k[len(name) + 1:]: out.pop(k) for k in [k for k in out if k.startswith(name + ".")]}
            out[f"{name}.weight"] = dequantize_reference_linear(parts, per_tensor=short in PER_TENSOR)
    return out


def from_reference(state: Mapping[str, Tensor], cfg: DiTConfig) -> dict[str, Tensor]:
    """Reference VideoDiTModel state (bf16 or fp8 ``*_quant``) -> our DiT state dict, strictly."""
    return dict(reference_tensors(state, cfg))


def reference_tensors(state: Mapping[str, Tensor], cfg: DiTConfig) -> Iterator[tuple[str, Tensor]]:
    """Our (name, tensor) pairs one at a time from a reference state (a dict, or a ``LazyState`` read as it
    goes: a loader then holds one converted tensor at a time). Every key is checked before any is read."""
    quantized = is_quantized_reference(state)
    _check_keys(state, reference_manifest(cfg, quantized=quantized),
                "quantized reference checkpoint" if quantized else "reference checkpoint")
    linears = {name: short for i in range(1, cfg.depth - 1) for short, name in _linear_names(cfg, i).items()} \
        if quantized else {}

    def read(key: str) -> Tensor:
        name = key.removesuffix(".weight")
        if name not in linears:
            return state[key]
        parts = ("weight", "weight_scale", "input_scale") + (() if linears[name] in PER_TENSOR else ("smooth_scale",))
        return dequantize_reference_linear({part: state[f"{name}.{part}"] for part in parts},
                                           per_tensor=linears[name] in PER_TENSOR)

    for rule in key_map(cfg):
        yield rule.ours, rule.to_ours([read(k) for k in rule.ref]).contiguous()


def to_reference(state: dict[str, Tensor], cfg: DiTConfig) -> dict[str, Tensor]:
    """Our DiT state dict (high precision) -> the reference VideoDiTModel layout; inverse of from_reference."""
    if any(key.endswith(".weight_scale") for key in state):
        raise InputError("to_reference needs high-precision weights; this state holds fp8 (our per-channel "
                         "format has no exact reference counterpart)")
    rules = key_map(cfg)
    missing = sorted({r.ours for r in rules} - set(state))
    extra = sorted(set(state) - {r.ours for r in rules})
    if missing or extra:
        raise InputError(f"our checkpoint is missing '{missing[0]}'" if missing
                         else f"our checkpoint has unexpected key '{extra[0]}'")
    out: dict[str, Tensor] = {}
    for rule in rules:
        for name, tensor in zip(rule.ref, rule.to_ref(state[rule.ours]), strict=True):
            out[name] = tensor.contiguous()
    _check_keys(out, reference_manifest(cfg), "converted reference state")
    return out


def find_reference_weights(folder: str | Path) -> Path | None:
    """The directory holding a reference-layout DiT checkpoint in ``folder``, or None if it is not one.

    Accepts the weights directory itself (``model.safetensors.index.json`` or ``model.safetensors``) or
    the reference's download directory, whose weights live in one ``inference_weight*/`` subfolder
    (``inference_weight``, ``.fp8``, ``.distill``, ``.fp8.distill``: as the reference's checkpointing.py).
    """
    folder = Path(folder)

    def holds(path: Path) -> bool:
        return (path / SAFETENSORS_INDEX).is_file() or (path / SINGLE_SAFETENSORS).is_file()

    if holds(folder):
        return folder
    candidates = sorted(p for p in folder.glob("inference_weight*") if p.is_dir() and holds(p))
    if len(candidates) > 1:
        raise InputError(f"'{folder}' holds several reference weight folders "
                         f"({', '.join(p.name for p in candidates)}): pass the one you mean")
    return candidates[0] if candidates else None


def load_reference_state(folder: str | Path, cfg: DiTConfig) -> dict[str, Tensor]:
    """Read a reference-layout directory and map it to our DiT state dict."""
    return dict(stream_reference_state(folder, cfg))


def stream_reference_state(folder: str | Path, cfg: DiTConfig) -> Iterator[tuple[str, Tensor]]:
    """A reference-layout directory as our (name, tensor) pairs, read one tensor at a time."""
    weights = find_reference_weights(folder)
    if weights is None:
        raise InputError(f"'{folder}' holds no MAGI-1 reference weights ({SAFETENSORS_INDEX} or {SINGLE_SAFETENSORS})")
    return reference_tensors(LazyState.open(weights), cfg)


REFERENCE_VAE_CONFIG = "config.json"  # diffusers ConfigMixin: {"_class_name": "ViTVAE", "ddconfig": {...}, ...}
REFERENCE_VAE_WEIGHTS = "diffusion_pytorch_model.safetensors"  # diffusers ModelMixin's file name


def find_reference_vae(folder: str | Path) -> Path | None:
    """The published MAGI-1 VAE directory that goes with the checkpoint ``folder``, or None.

    It is a ``vae/`` directory holding ``config.json``, looked for in this order: inside ``folder`` (what
    ``magi convert --from-reference`` writes), beside it (the reference run configs: ``load`` is
    ``downloads/4.5B_base``, ``vae_pretrained`` is ``downloads/vae``) and two levels up (the Hugging Face
    repository sand-ai/MAGI-1: ``ckpt/magi/4.5B_base`` and ``ckpt/vae``). ``folder`` may also be the
    ``inference_weight*`` directory itself.
    """
    base = Path(folder).resolve()
    if base.name.startswith("inference_weight"):
        base = base.parent
    for candidate in (base / "vae", base.parent / "vae", base.parent.parent / "vae"):
        if (candidate / REFERENCE_VAE_CONFIG).is_file():
            return candidate
    return None


def load_reference_vae(folder: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """The parsed ``config.json`` and the state dict of a published VAE directory (safetensors only).

    The names are checked against the network by the caller (``magi.io.weights.check_state_dict``).
    """
    folder = Path(folder)
    config_path = folder / REFERENCE_VAE_CONFIG
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the MAGI-1 VAE config '{config_path}': {error}") from None
    if not isinstance(config, dict) or config.get("_class_name") != "ViTVAE":
        raise InputError(f"'{config_path}' is not a MAGI-1 VAE config (its _class_name is not 'ViTVAE')")
    weights = folder / REFERENCE_VAE_WEIGHTS
    if not weights.is_file():
        pickled = (folder / "diffusion_pytorch_model.bin").is_file()
        raise InputError(f"'{folder}' has no {REFERENCE_VAE_WEIGHTS}"
                         + (" (only a pickled .bin, which magi never loads: convert it to safetensors)" if pickled
                            else ""))
    return config, read_safetensors(weights)
