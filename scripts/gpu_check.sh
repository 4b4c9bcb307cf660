#!/usr/bin/env bash
# GPU check (one CUDA device, under 10 minutes): the GPU-marked tests, then a magi-4.5b-sized random-weight
# DiT in the published sharded layout streamed onto the GPU, peak VRAM against the plan each time:
#   720x720, 5 chunks (the plan's largest forward: 4 in flight and one fed to the cache);
#   368x368 (0.26 of the tokens);
#   720x720 with the blocks offloaded to the host;
#   the same weights as magi-4.5b-distill-fp8 with window 1 at 720x720.
# Usage: bash scripts/gpu_check.sh
#   MAGI_PYTHON=python3 bash scripts/gpu_check.sh   # a Python that already has torch (no network): no set-up
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${MAGI_PYTHON:-}" ]]; then
  py=$MAGI_PYTHON
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
else
  bash scripts/setup.sh
  py=.venv/bin/python
fi
dir=${MAGI_GPU_CHECK_DIR:-/tmp/magi-random}
failed=0
measure() { "$py" benchmarks/real_size.py --device cuda --dir "$dir" "$@" || failed=1; }  # the rest runs regardless
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
"$py" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py || failed=1
measure --preset magi-4.5b --size 720 --steps 4 --chunks 5
measure --preset magi-4.5b --size 368 --steps 4 --chunks 5
measure --preset magi-4.5b --size 720 --steps 4 --chunks 5 --set offload=blocks
mkdir -p "$dir" && ln -sfn magi-4.5b "$dir/magi-4.5b-distill-fp8"  # the distilled DiT has the base's tensors
measure --preset magi-4.5b-distill-fp8 --size 720 --steps 8 --chunks 2 --set sampler.window_size=1
"$py" -m magi plan --preset magi-4.5b --set video.height=720 --set video.width=720 --envelopes
exit $failed
