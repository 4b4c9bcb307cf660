"""``magi train vae|dit|image``: train the networks of a MAGI-1 model on a clip dataset (see ``magi data``): the
VAE, the DiT, and the first-frame model of image-first t2v."""

from __future__ import annotations

import argparse
from pathlib import Path

from magi.commands import add_placement_flags, placement_overrides
from magi.config import apply_overrides
from magi.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train the VAE or the DiT (resumes from --out if it has a checkpoint)")
    phases = p.add_subparsers(dest="phase", required=True)
    for phase, help_text in (("vae", "train the video VAE"), ("dit", "train the DiT on latents of a trained VAE"),
                             ("image", "train the first-frame model of image-first t2v for an exported video model"),
                             ("export", "export the EMA weights of a DiT run's latest checkpoint")):
        q = phases.add_parser(phase, help=help_text)
        q.add_argument("--out", required=True, help="run directory (checkpoints, samples, export/)")
        if phase == "export":
            q.add_argument("--image_from", help="checkpoint with a first-frame model (image.safetensors) of the same "
                                                "VAE and text encoder: the export takes it, and its t2v starts from "
                                                "its image (as the shipped physics-64 does)")
            continue
        q.add_argument("--data", required=True, help="dataset root written by `magi data`")
        q.add_argument("--preset", default="physics-64", help="architecture + training recipe")
        q.add_argument("--steps", type=int, help="override train.steps")
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
        q.add_argument("--no_progress", action="store_true")
        add_placement_flags(q)  # --dtype bfloat16: mixed precision, float32 weights
        if phase == "dit":
            q.add_argument("--vae", required=True, help="run directory of the trained VAE")
            q.add_argument("--init", help="exported DiT (its export/ folder, the same architecture) to start a new "
                                          "run from")
        elif phase == "image":
            q.add_argument("--video", required=True, help="exported video model (a DiT run's export/ folder): its "
                                                          "VAE encodes the images, and export/ is it with the image "
                                                          "model added")
            q.add_argument("--init", help="export holding an image.safetensors (the same architecture) to start a "
                                          "new run from")
        else:
            q.add_argument("--init", help="exported VAE to fine-tune in a new run (an export/ folder); its "
                                          "config and latent scale are kept")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from magi.parallel.data import data_parallelism_from_env
    from magi.presets import training_config
    from magi.training import runs

    out = Path(args.out)
    if args.phase == "export":
        if not (out / "vae.safetensors").is_file():
            raise InputError(f"'{out}' is not a DiT run directory")
        print(f"exported {runs.export_dit(out, image_from=Path(args.image_from) if args.image_from else None)}")
        return 0
    if not Path(args.data).is_dir():
        raise InputError(f"dataset '{args.data}' not found (create it with `magi data`)")
    overrides = list(args.set) + ([f"train.steps={args.steps}"] if args.steps is not None else []) + \
        placement_overrides(args)
    cfg = apply_overrides(training_config(args.preset, args.phase), overrides)
    init = Path(args.init) if args.init else None
    weights = {"vae": "vae.safetensors", "dit": "dit.safetensors", "image": "image.safetensors"}[args.phase]
    if init is not None and not ((init / weights).is_file() and (init / "config.json").is_file()):
        raise InputError(f"--init '{init}' has no {weights} and config.json (pass a run's export/ folder)")
    with data_parallelism_from_env(os.environ) as parallel:  # under torchrun: FSDP2 over all processes
        if args.phase == "vae":
            psnr = runs.train_vae(cfg, Path(args.data), out, progress=not args.no_progress, parallel=parallel,
                                  init=init)
            if parallel.is_main:
                print(f"VAE exported to {out / 'export'}; dev reconstruction PSNR {psnr:.2f} dB")
        elif args.phase == "image":
            export = runs.train_image(cfg, Path(args.data), Path(args.video), out, progress=not args.no_progress,
                                      parallel=parallel, init=init)
            if parallel.is_main:
                print(f"image-first model exported to {export} (use: magi generate --checkpoint {export})")
        else:
            runs.train_dit(cfg, Path(args.data), Path(args.vae), out, progress=not args.no_progress,
                           parallel=parallel, init=init)
            if parallel.is_main:
                print(f"DiT exported to {out / 'export'} (use: magi generate --checkpoint {out / 'export'})")
    return 0
