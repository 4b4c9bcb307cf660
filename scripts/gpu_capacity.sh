#!/usr/bin/env bash
# Capacity on a GPU in one device call (under 10 minutes): the physics-64 DiT and a bigger one, each trained
# from scratch on the GPU for the same wall-clock budget, then measured with the caption benchmark (t2v).
#
# 1. Here (CPU, network to the package registry): the captions' text contexts and the simulator's wheels, in
#    gpu/ (ignored by git; about 18 MB, carried to the device):
#      bash scripts/gpu_capacity.sh prepare
# 2. On the device machine (the device tool's run, carry ["gpu"], timeout_s 600; its python3 has torch but no
#    package registry):
#      MAGI_PYTHON=python3 bash scripts/gpu_capacity.sh run
#    Not yet run on a GPU: its phases' times there are a guess (clips ~15 s; per model ~30 s of pace probes, the
#    budget, ~90 s of captions), so the first run should keep the defaults and read the times it prints.
#    Settings (environment): BIG (the bigger DiT's overrides, default "dit.depth=8"), BUDGET_S (training seconds
#    per model, default 120), CLIPS (training clips, default 3000), SEEDS (caption seeds, default 16), DEVICE
#    (default cuda), DTYPE (default bfloat16). The table, the caption logs, the loss logs, the bigger DiT's
#    config and the training logs (one file) go to $OUT (or gpu/out): 7 files, within the device's 8.
set -euo pipefail
cd "$(dirname "$0")/.."
phase=${1:-}
if [[ "$phase" == prepare ]]; then
  py=${MAGI_PYTHON:-.venv/bin/python}
  mkdir -p gpu/wheels
  "$py" -m pip download pymunk==7.3.1 --python-version 3.12 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --only-binary=:all: -d gpu/wheels -q
  # the captions of the training clips (they depend on the simulation, not on the picture size)
  "$py" -m magi data --out gpu/captions-data --train 3000 --dev 0 --test 0 --frames 72 --size 16 --workers 2 \
    --no-progress
  PYTHONPATH=benchmarks "$py" -c "import captions
print('\n'.join([c[0] for c in captions.CAPTIONS] + [s[0] for s in captions.SCENES]))" > gpu/prompts.txt
  "$py" -m magi text-cache --out gpu/text.safetensors --data gpu/captions-data --prompts-file gpu/prompts.txt
  rm -rf gpu/captions-data
  du -sh gpu
  exit 0
fi
if [[ "$phase" != run ]]; then
  echo "usage: bash scripts/gpu_capacity.sh prepare|run" >&2
  exit 2
fi
[[ -f gpu/text.safetensors ]] || { echo "gpu/text.safetensors missing: run 'prepare' here first" >&2; exit 2; }
py=${MAGI_PYTHON:-.venv/bin/python}
out=${OUT:-gpu/out}
work=${MAGI_CAPACITY_DIR:-/tmp/magi-capacity}
big=${BIG:-dit.depth=8}
budget=${BUDGET_S:-120}
clips=${CLIPS:-3000}
seeds=$(seq -s, 0 $((${SEEDS:-16} - 1)))
device=${DEVICE:-cuda}
dtype=${DTYPE:-bfloat16}
logs="$work/logs"
mkdir -p "$out" "$work/vae/export" "$logs"
if ! "$py" -c "import pymunk" 2>/dev/null; then
  "$py" -m pip install --no-index --target "$work/deps" gpu/wheels/*.whl -q
fi
export PYTHONPATH="$PWD/src:$work/deps${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
magi() { "$py" -m magi "$@"; }
text=(--set "text.path=$PWD/gpu/text.safetensors" --set text.kind=cache)
# the clips of the shipped model's data (docs/TRAINING.md), and its VAE
[[ -d "$work/data/train" ]] || magi data --out "$work/data" --train "$clips" --dev 8 --test 0 --frames 72 \
  --workers "$(nproc)" --no-progress
cp src/magi/weights/physics-64/{vae.safetensors,config.json} "$work/vae/export/"
recipe=(--preset physics-64 --data "$work/data" --vae "$work/vae" --no_progress --set "device=$device"
        --set "dtype=$dtype" --set train.motion_weight=9 --set train.chunk_levels=cascade
        --set train.prefix_probs=0.3,0.3,0.4 --set train.sample_every=0 --set train.checkpoint_every=100000 "${text[@]}")
echo "| DiT | overrides | parameters | steps in ${budget} s | flow loss, last 100 steps | t2v count accuracy ($((${SEEDS:-16})) seeds) |" > "$out/table.md"
echo "|---|---|---:|---:|---:|---:|" >> "$out/table.md"
seconds() { "$py" -c "import time; print(time.time())"; }
calc() { "$py" -c "print($1)"; }
for name in base big; do
  sets=()
  [[ "$name" == big ]] && for s in $big; do sets+=(--set "$s"); done
  rm -rf "$work/$name" && mkdir -p "$work/$name"
  # the pace: 10 and 110 steps in fresh folders on the same latents (the first one encodes them), so that the
  # start-up cancels
  for n in 10 110; do
    rm -rf "$work/probe$n" && mkdir -p "$work/probe$n"
    [[ -f "$work/latents.safetensors" ]] && cp "$work/latents.safetensors" "$work/probe$n/"
    start=$(seconds)
    magi train dit "${recipe[@]}" "${sets[@]}" --out "$work/probe$n" --steps "$n" > "$logs/probe-$name-$n.log" 2>&1
    eval "took$n=$(calc "$(seconds) - $start")"
    cp "$work/probe$n/latents.safetensors" "$work/latents.safetensors"
  done
  steps=$(calc "max(100, int($budget * 100 / max($took110 - $took10, 1e-3)))")
  cp "$work/latents.safetensors" "$work/$name/"
  start=$(seconds)
  magi train dit "${recipe[@]}" "${sets[@]}" --out "$work/$name" --steps "$steps" > "$logs/train-$name.log" 2>&1
  took=$(calc "round($(seconds) - $start)")
  start=$(seconds)
  "$py" benchmarks/captions.py --checkpoint "$work/$name/export" --seeds "$seeds" --no-i2v \
    --set "device=$device" "${text[@]}" > "$out/captions-$name.log" 2>&1
  echo "$name: pace probes $(calc "round($took10 + $took110)") s, training $took s, captions $(calc "round($(seconds) - $start)") s"
  [[ "$name" == big ]] && cp "$work/$name/export/config.json" "$out/config-big.json"
  cp "$work/$name/loss.csv" "$out/loss-$name.csv"
  params=$("$py" -c "from magi.config import RunConfig; from magi.plan import dit_parameter_count
print(f'{dit_parameter_count(RunConfig.load(\"$work/$name/export/config.json\")) / 1e6:.1f} M')")
  loss=$(tail -n 100 "$out/loss-$name.csv" | awk -F, '{s += $2} END {printf "%.3f", s / NR}')
  accuracy=$(sed -n 's/^mean count accuracy: \(.*\) (bar.*/\1/p' "$out/captions-$name.log")
  echo "| $name | ${sets[*]:-} | $params | $steps in $took s | $loss | $accuracy |" >> "$out/table.md"
done
tail -n +1 "$logs"/*.log > "$out/training-logs.txt"
cat "$out/table.md"
