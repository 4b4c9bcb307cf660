"""``magi quantize``: write an fp8 (e4m3, per-channel scales) copy of a checkpoint's DiT."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

from magi.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("quantize", help="fp8-quantize a checkpoint's DiT weights")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (config.json + safetensors)")
    p.add_argument("--out", required=True, help="output checkpoint directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magi.config import QuantConfig, RunConfig
    from magi.io.weights import load_weights, resolve_checkpoint_dir, save_weights, state_dict_bytes
    from magi.models.dit import DiT
    from magi.quant.fp8 import quantize_

    source = resolve_checkpoint_dir(args.checkpoint)
    out = Path(args.out)
    if out.resolve() == source.resolve():
        raise InputError("--out must differ from --checkpoint")
    if not (source / "config.json").is_file():
        raise InputError(f"checkpoint '{source}' has no config.json")
    cfg = RunConfig.load(source / "config.json")
    if cfg.quant.mode == "fp8":
        raise InputError(f"checkpoint '{source}' is already fp8")
    dit = DiT(cfg.dit)
    load_weights(dit, source / "dit.safetensors")
    before = state_dict_bytes(dit.state_dict())
    quantize_(dit, QuantConfig(mode="fp8"))
    after = state_dict_bytes(dit.state_dict())
    out.mkdir(parents=True, exist_ok=True)
    save_weights(out / "dit.safetensors", dit.state_dict())
    shutil.copyfile(source / "vae.safetensors", out / "vae.safetensors")
    fp8_cfg = dataclasses.replace(cfg, name=f"{cfg.name}-fp8", quant=QuantConfig(mode="fp8"), weights="")
    fp8_cfg.save(out / "config.json")
    print(f"wrote {out}: DiT weights {before / 2**20:.1f} MiB (fp32) -> {after / 2**20:.1f} MiB (fp8)")
    return 0
