#!/usr/bin/env bash
# The reference run interface: --mode t2v|i2v|v2v --prompt --image_path --prefix_video_path --output_path
# (any other magi generate flag, e.g. --preset or --checkpoint, is passed through).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
magi_bin="$here/.venv/bin/magi"
[ -x "$magi_bin" ] || magi_bin="magi"
exec "$magi_bin" generate "$@"
