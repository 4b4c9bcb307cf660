"""Contact sheet (PNG) of real outputs of the shipped model in all three modes, for the README.

    .venv/bin/python scripts/contact_sheet.py [--checkpoint builtin:physics-64] [--out docs/contact_sheet.png]

Rows: t2v from a prompt; i2v from a Physics-IQ-mini switch frame; v2v from its 3 s of conditioning frames,
with the simulator's ground truth under it, all at the model's frame rate. ``--seconds`` of video are generated
in each mode (12 by default, in whole chunks) and one frame a second is shown; the conditioning frames are
framed in gray, generated frames in white.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw

from magi.io.atomic import atomic_path
from magi.io.weights import load_checkpoint_config
from magi.physics.mini import profile_frames, render_case
from magi.sampling.pipeline import Request, build_pipeline, generate_frames

SHOWN, BORDER, LABEL = 15, 2, 150


def strip(frames: np.ndarray, generated_from: int, label: str, step: int) -> Image.Image:
    """One row: every ``step``-th frame, up to SHOWN of them, after a label."""
    size = frames.shape[1]
    row = Image.new("RGB", (LABEL + SHOWN * (size + 2 * BORDER), size + 2 * BORDER), (255, 255, 255))
    ImageDraw.Draw(row).text((4, size // 2 - 6), label, fill=(0, 0, 0))
    for k, index in enumerate(range(0, min(len(frames), SHOWN * step), step)):
        x = LABEL + k * (size + 2 * BORDER)
        colour = (150, 150, 150) if index < generated_from else (255, 255, 255)
        ImageDraw.Draw(row).rectangle([x, 0, x + size + 2 * BORDER - 1, size + 2 * BORDER - 1], fill=colour)
        row.paste(Image.fromarray(frames[index]), (x + BORDER, BORDER))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default="builtin:physics-64")
    parser.add_argument("--out", default="docs/contact_sheet.png")
    parser.add_argument("--scenario", type=int, default=0, help="Physics-IQ-mini scenario for i2v / v2v")
    parser.add_argument("--prompt", default="a red ball falls and bounces five times on the floor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=12.0, help="video generated in each mode")
    args = parser.parse_args()

    cfg = load_checkpoint_config(args.checkpoint)
    pipe = build_pipeline(cfg)
    fps = cfg.video.fps
    generated = -(-round(args.seconds * fps) // cfg.frames_per_chunk) * cfg.frames_per_chunk  # whole chunks
    _, prefix, _ = profile_frames("mini", fps)
    truth, side = render_case(args.scenario, 1, 1, seed=args.seed, test_frames=generated, fps=fps)

    def run(**kwargs) -> np.ndarray:
        return np.concatenate(list(generate_frames(pipe, Request(seed=args.seed, num_frames=generated, **kwargs))))

    rows = [
        strip(run(mode="t2v", prompt=args.prompt), 0, "t2v: " + args.prompt[:22], fps),
        strip(run(mode="i2v", prompt=side["caption"], image=truth[prefix - 1]), 1, "i2v (switch frame)", fps),
        strip(run(mode="v2v", prompt=side["caption"], prefix_video=truth[:prefix]), prefix,
              f"v2v ({prefix} frames)", fps),
        strip(truth, prefix, "simulator (truth)", fps),
    ]
    sheet = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)), (255, 255, 255))
    for i, row in enumerate(rows):
        sheet.paste(row, (0, i * rows[0].height))
    with atomic_path(args.out) as tmp:
        sheet.save(tmp, format="PNG")
    print(f"wrote {args.out} ({side['family']}: {side['caption']})")


if __name__ == "__main__":
    main()
