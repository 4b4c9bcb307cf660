"""``magi config``: print a resolved configuration and the parameter counts of its networks."""

from __future__ import annotations

import argparse

from magi.config import RunConfig, apply_overrides
from magi.presets import DEFAULT_PRESET, PUBLISHED_DIT_PARAMS, get_preset


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("config", help="print a resolved config and its parameter counts")
    p.add_argument("--preset", default=DEFAULT_PRESET)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def parameter_counts(cfg: RunConfig) -> dict[str, int]:
    """Parameters of each network, counted on the meta device (no memory, any size)."""
    import torch

    from magi.models.dit import DiT
    from magi.models.vae import TransformerVAE

    with torch.device("meta"):
        return {"dit": sum(p.numel() for p in DiT(cfg.dit).parameters()),
                "vae": sum(p.numel() for p in TransformerVAE(cfg.vae).parameters())}


def run(args: argparse.Namespace) -> int:
    cfg = apply_overrides(get_preset(args.preset), args.set)
    print(cfg.to_json())
    counts = parameter_counts(cfg)
    for name, count in counts.items():
        print(f"{name} parameters: {count:,} ({count / 1e9:.3f}B)")
    published = PUBLISHED_DIT_PARAMS.get(args.preset)
    if published:
        print(f"published DiT size: {published / 1e9:g}B (ours differs by {counts['dit'] / published - 1:+.2%})")
    return 0
