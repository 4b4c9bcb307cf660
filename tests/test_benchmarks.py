"""A smoke run of every benchmark script at its smallest settings: each runs to the end and prints its table
(the figures themselves are measured by hand and recorded in docs/benchmarks.md)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from magi.presets import DEFAULT_PRESET, get_preset

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {
    "streaming.py": ["--preset", "tiny", "--chunks", "1,2", "--repeats", "1"],
    "memory.py": ["--preset", "tiny", "--decode-chunks", "1", "--size", "64", "--generate-chunks", "1",
                  "--steps", "4", "--attention-sizes", "64"],
    "kv_cache.py": ["--preset", "tiny", "--chunks", "2", "--steps", "4", "--repeats", "1"],
    "throughput.py": ["--presets", "tiny", "--steps", "4", "--chunks", "1"],
    "captions.py": ["--seeds", "0,1", "--frames", "24", "--set", "image.steps=4"],
    "distill.py": ["--cases", "1"],
    "quality.py": ["--cases", "1", "--chunks", "1"],
    "first_chunk.py": ["--clips", "4", "--seeds", "1", "--set", "sampler.steps=4", "--set", "sampler.stochasticity=1"],
    "real_size.py": ["--size", "32", "--steps", "4", "--set", "dit.depth=2", "--set", "dit.dim=256",
                     "--set", "dit.num_kv_heads=1", "--set", "dit.num_heads=2", "--set", "dit.ffn_dim=512"],
    "peers.py": ["--chunks", "1", "--repeats", "1", "--vae-sizes", "64"],
}
pytestmark = pytest.mark.slow


def test_every_script_is_covered():
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py")} - {"measure.py"}  # measure: the helpers
    assert scripts == set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_benchmark_runs(script, tmp_path):
    if script == "peers.py" and importlib.util.find_spec("diffusers") is None:
        pytest.skip("peers.py needs diffusers (pip install -e .[bench])")
    args = list(SCRIPTS[script])
    if script in ("quality.py", "first_chunk.py"):  # they read the test and the dev split
        # (dev seed 5: its third clip is a ball-bounce one, for first_chunk.py's part 4)
        fps = str(get_preset(DEFAULT_PRESET).video.fps)  # the clips at the default model's frame rate
        subprocess.run([sys.executable, "-m", "magi", "data", "--out", str(tmp_path / "data"), "--train", "0",
                        "--dev", "12", "--test", "4", "--seed", "5", "--fps", fps, "--no-progress"], check=True,
                       capture_output=True)
        args += ["--data", str(tmp_path / "data")]
    if script == "real_size.py":
        args += ["--dir", str(tmp_path)]
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "|---" in done.stdout or "---|" in done.stdout, done.stdout[-2000:]
    if script == "first_chunk.py":  # all four parts ran
        assert "the clip handed over below t" in done.stdout, done.stdout[-2000:]
    if script == "captions.py":  # both halves ran: t2v from the captions and i2v from the drawn scenes
        assert "mean count accuracy" in done.stdout and "i2v objects kept" in done.stdout, done.stdout[-2000:]
