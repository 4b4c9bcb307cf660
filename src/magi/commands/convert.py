"""``magi convert``: published MAGI-1 (reference layout) checkpoints <-> our checkpoint directories.

    magi convert --from-reference DIR --preset magi-4.5b --out OUT   # DiT -> OUT/dit.safetensors, VAE -> OUT/vae/
    magi convert --to-reference CKPT --out OUT                       # our DiT -> sharded reference layout
    magi convert --special_tokens special_tokens.npz --out OUT       # -> OUT/special_tokens.safetensors

The published models condition on special tokens (the magi presets put HQ and DURATION tokens in front of
each chunk's caption): ``--from-reference`` converts a ``special_tokens.npz`` found in DIR, and
``--special_tokens`` converts the reference repository's ``example/assets/special_tokens.npz`` alone.

The published VAE is a network of its own (``magi.models.magi_vae``) whose parameter names are already
ours: ``--from-reference`` finds it as ``magi generate`` does (a ``vae/`` folder in DIR, beside it or two
levels up: ``magi.io.reference.find_reference_vae``), loads it strictly against the preset, and copies its
``config.json`` and ``diffusion_pytorch_model.safetensors`` to ``OUT/vae/``. A ``vae.safetensors`` of ours
found beside the weights is copied instead; with neither, the DiT is written alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

from magi.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("convert", help="convert MAGI-1 reference checkpoints to ours and back")
    direction = p.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from-reference", metavar="DIR", help="reference checkpoint directory")
    direction.add_argument("--to-reference", metavar="DIR", help="our checkpoint directory (config.json)")
    direction.add_argument("--special_tokens", metavar="NPZ", help="the reference's special_tokens.npz")
    p.add_argument("--preset", help="architecture of the reference checkpoint (e.g. magi-4.5b)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--max-shard-gb", type=float, default=5.0, help="shard size for --to-reference")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.special_tokens:
        return special_tokens(Path(args.special_tokens), out)
    source = Path(args.from_reference or args.to_reference)
    if not source.is_dir():
        raise InputError(f"'{source}' is not a directory")
    if out.resolve() == source.resolve():
        raise InputError("--out must differ from the source directory")
    return from_reference(args, source, out) if args.from_reference else to_reference(args, source, out)


def from_reference(args: argparse.Namespace, source: Path, out: Path) -> int:
    from magi.config import apply_overrides
    from magi.io.reference import (
        REFERENCE_VAE_CONFIG,
        REFERENCE_VAE_WEIGHTS,
        find_reference_vae,
        find_reference_weights,
        load_reference_state,
    )
    from magi.io.weights import save_weights
    from magi.presets import get_preset
    from magi.sampling.pipeline import load_magi_vae

    if not args.preset:
        raise InputError("--from-reference needs --preset (the checkpoint's architecture, e.g. magi-4.5b)")
    cfg = apply_overrides(get_preset(args.preset), args.set)
    state = load_reference_state(source, cfg.dit)
    weights = find_reference_weights(source)
    vae = next((p / "vae.safetensors" for p in (source, weights) if p and (p / "vae.safetensors").is_file()), None)
    published_vae = None if vae is not None else find_reference_vae(source)
    if published_vae is not None:
        load_magi_vae(source, cfg)  # strict: config, compression, names and shapes, before anything is written
        vae = published_vae
    out.mkdir(parents=True, exist_ok=True)
    save_weights(out / "dit.safetensors", state)
    if published_vae is not None:
        (out / "vae").mkdir(exist_ok=True)
        for name in (REFERENCE_VAE_CONFIG, REFERENCE_VAE_WEIGHTS):
            shutil.copyfile(published_vae / name, out / "vae" / name)
    elif vae is not None:
        shutil.copyfile(vae, out / "vae.safetensors")
    dataclasses.replace(cfg, weights="").save(out / "config.json")
    note = f", VAE from {vae}" if vae else " (no VAE found: add one before `magi generate --checkpoint`)"
    if (source / "special_tokens.npz").is_file():
        special_tokens(source / "special_tokens.npz", out)
    print(f"wrote {out}: {len(state)} DiT tensors from {weights}{note}")
    return 0


def to_reference(args: argparse.Namespace, source: Path, out: Path) -> int:
    from magi.config import RunConfig, apply_overrides
    from magi.io.reference import to_reference as convert
    from magi.io.weights import read_safetensors, write_sharded_safetensors

    if not (source / "config.json").is_file():
        raise InputError(f"checkpoint '{source}' has no config.json")
    cfg = apply_overrides(RunConfig.load(source / "config.json"), args.set)
    state = convert(read_safetensors(source / "dit.safetensors"), cfg.dit)
    out.mkdir(parents=True, exist_ok=True)
    files = write_sharded_safetensors(out, state, int(args.max_shard_gb * 2**30))
    print(f"wrote {out}: {len(state)} reference tensors in {len(files)} shard(s)")
    return 0


def special_tokens(npz: Path, out: Path) -> int:
    from magi.io.weights import save_weights
    from magi.sampling.special_tokens import FILE, from_reference_npz

    if not npz.is_file():
        raise InputError(f"special tokens file '{npz}' does not exist")
    table = from_reference_npz(npz)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(out / FILE, table)
    print(f"wrote {out / FILE}: {len(table)} special tokens of width {next(iter(table.values())).shape[-1]}")
    return 0
