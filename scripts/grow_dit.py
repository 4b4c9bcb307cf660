"""Write a deeper copy of an exported DiT that computes exactly what it did (progressive growing).

    .venv/bin/python scripts/grow_dit.py --init src/magi/weights/physics-64 --depth 8 --out /work/runs/grow8-init

The folder written (``dit.safetensors``, ``config.json`` with the new ``dit.depth``, and the VAE copied when
there is one) is an export that ``magi train dit --init DIR --set dit.depth=N`` starts a run from; see
``magi.training.growth`` for how the blocks are placed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from magi.config import RunConfig
from magi.errors import InputError
from magi.io.weights import read_safetensors, save_weights
from magi.training.growth import grown_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", required=True, help="an exported DiT: a folder with dit.safetensors, config.json")
    parser.add_argument("--depth", type=int, required=True, help="blocks of the grown DiT (a multiple of the old)")
    parser.add_argument("--out", required=True, help="folder to write (must not exist)")
    args = parser.parse_args()
    init, out = Path(args.init), Path(args.out)
    try:
        if not ((init / "dit.safetensors").is_file() and (init / "config.json").is_file()):
            raise InputError(f"--init '{init}' has no dit.safetensors and config.json")
        if out.exists():
            raise InputError(f"--out '{out}' exists; pick a new folder")
        cfg = RunConfig.load(init / "config.json")
        try:
            state = grown_state(read_safetensors(init / "dit.safetensors"), args.depth)
        except ValueError as error:
            raise InputError(str(error)) from None
    except InputError as error:
        sys.exit(f"error: {error}")
    out.mkdir(parents=True)
    save_weights(out / "dit.safetensors", state)
    replace(cfg, dit=replace(cfg.dit, depth=args.depth)).save(out / "config.json")
    if (init / "vae.safetensors").is_file():
        shutil.copyfile(init / "vae.safetensors", out / "vae.safetensors")
    print(f"wrote {out}: {args.depth} blocks grown from {cfg.dit.depth}")


if __name__ == "__main__":
    main()
