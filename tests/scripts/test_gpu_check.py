"""scripts/gpu_check.sh on a machine without a GPU: exit 2 with one clear line; the dry run and the
images/s measurement work on CPU. The GPU run itself is checked only where a GPU is present."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    if path is not None:
        env["PATH"] = path
    return subprocess.run([shutil.which("bash"), str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_no_nvidia_smi_exits_2_before_anything_runs(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with the tools the script needs, without nvidia-smi
    bin_dir.mkdir()
    for tool in ("dirname", "timeout"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    res = _run(path=str(bin_dir))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "gpu_check: no NVIDIA GPU: nvidia-smi is not installed; run it on a GPU machine (or --dry-run)"]
    assert res.stdout == ""


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_python_part_without_cuda_exits_2_with_one_line():
    res = subprocess.run([sys.executable, "scripts/gpu_check.py"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "torch.cuda.is_available() is False" in lines[0] and "nothing was run" in lines[0]


def test_dry_run_validates_the_plan_without_a_gpu():
    res = _run("--dry-run")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "norm SyncBN, amp True" in out and "ONNX export True" in out
    for preset in ("tiny", "small", "base"):
        assert f"[dry-run] {preset}:" in out and "512x512 batch 16" in out


def test_images_per_s_runs_on_cpu():
    mod = _module()
    v = mod.images_per_s("tiny", "cpu", size=64, batch=2, warmup=1, iters=1, amp=False)
    assert v > 0


def test_options_parse():
    args = _module().parse_args(["--size", "256", "--batch", "8", "--skip-train"])
    assert (args.size, args.batch, args.skip_train, args.dry_run) == (256, 8, True, False)
