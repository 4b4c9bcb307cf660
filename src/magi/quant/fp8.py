"""fp8 (e4m3) weight quantization, applied to a finished model from the outside as a module swap.

Each selected ``nn.Linear`` becomes a ``Float8Linear`` holding its weight as float8_e4m3fn with one
float32 scale per output channel (``w ~= weight_fp8 * weight_scale[:, None]``). As in MAGI-1's fp8
checkpoints, the edge layers stay in high precision: the embeddings and output projection (by name) and the
first and last transformer blocks.

Compute: on CPU (and GPUs without fp8 tensor cores) the weight is dequantized on the fly into the input's
dtype; on GPUs with compute capability >= 8.9 the matmul runs in fp8 via ``torch._scaled_mm`` with a
dynamic per-row input scale. Weight memory is half of bf16 either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from magi.config import QuantConfig

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448


def quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """(out, in) float -> (float8 weight, float32 per-output-channel scale)."""
    amax = weight.detach().float().abs().amax(dim=1).clamp(min=1e-12)
    scale = amax / FP8_MAX  # (out,)
    return (weight.float() / scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


def dequantize_weight(weight: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
    return (weight.float() * scale[:, None]).to(dtype)


def _has_fp8_matmul(x: Tensor) -> bool:
    return x.is_cuda and torch.cuda.get_device_capability(x.device) >= (8, 9)


class Float8Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool, device: torch.device | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=FP8, device=device))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Float8Linear:
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, linear.weight.device)
        module.weight, module.weight_scale = quantize_weight(linear.weight)
        if linear.bias is not None:
            module.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        return module

    def forward(self, x: Tensor) -> Tensor:
        if _has_fp8_matmul(x) and x.shape[-1] % 16 == 0 and self.out_features % 16 == 0:
            return self._forward_fp8(x)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, dequantize_weight(self.weight, self.weight_scale, x.dtype), bias)

    def _forward_fp8(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])  # (M, in)
        x_scale = flat.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX  # (M, 1); exact in x's dtype
        scaled = flat.to(torch.float32, copy=True)  # one float32 copy (never x itself), scaled in place
        x_fp8 = scaled.div_(x_scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8)
        out = torch._scaled_mm(x_fp8, self.weight.t(), scale_a=x_scale, scale_b=self.weight_scale[None, :],
                               bias=None if self.bias is None else self.bias.to(torch.bfloat16),
                               out_dtype=torch.bfloat16)
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8=e4m3"


def kept_in_high_precision(name: str, cfg: QuantConfig, depth: int) -> bool:
    """Whether the linear at qualified ``name`` stays unquantized (edge layers, as in the reference)."""
    if any(name == keep or name.startswith(keep + ".") for keep in cfg.keep_high_precision):
        return True
    edge = {"blocks.0.", f"blocks.{depth - 1}."} if cfg.keep_edge_blocks else set()
    return any(name.startswith(prefix) for prefix in edge)


def quantize_(model: nn.Module, cfg: QuantConfig) -> nn.Module:
    """Swap the model's eligible ``nn.Linear`` layers for ``Float8Linear`` in place; returns the model."""
    if cfg.mode != "fp8":
        return model
    depth = len(getattr(model, "blocks", ()))
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and not kept_in_high_precision(name, cfg, depth)]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Float8Linear.from_linear(linear))
    return model


def is_fp8_state(state: dict[str, Tensor]) -> bool:
    return any(key.endswith(".weight_scale") for key in state)
