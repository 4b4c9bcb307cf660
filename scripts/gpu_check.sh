#!/usr/bin/env bash
# GPU check (one CUDA device, under 10 minutes): the GPU-marked tests, then a magi-4.5b-sized random-weight
# DiT in the published sharded layout streamed onto the GPU and run at 720x720 (5 chunks: the plan's largest
# forward, 4 in flight and one fed to the cache), peak VRAM against the plan. Usage: bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
.venv/bin/python -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
.venv/bin/python benchmarks/real_size.py --preset magi-4.5b --device cuda --size 720 --steps 4 --chunks 5 \
  --dir "${MAGI_GPU_CHECK_DIR:-/tmp/magi-random}"
.venv/bin/magi plan --preset magi-4.5b --set video.height=720 --set video.width=720 --envelopes
