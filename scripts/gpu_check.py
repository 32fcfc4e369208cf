"""The GPU path, end to end, in under 5 minutes on one NVIDIA GPU (run through scripts/gpu_check.sh).

1. ``run_training`` with ``scaling.use_gpu: true`` on the generated fixture: Ray Train worker on the
   GPU (NCCL process group), ``norm: auto`` -> SyncBatchNorm, ``runtime.amp: true``, evaluation at the
   end, ONNX export; checked through the MLflow run it leaves (tags ``topnas.device``,
   ``topnas.norm``, ``topnas.dist_backend``, ``topnas.amp``, metric ``val_mIoU``, artifact
   ``onnx/*.onnx``, which is then run once with ONNX Runtime).
2. Training images/s of TopFormer-T/S/B at 512x512, batch 16 (synthetic tensors on the device, so the
   figure is the model + AdamW + AMP step, not the data pipeline), on the GPU and, measured in the
   same run with a few iterations, on this machine's CPU (fp32).

Exit status: 0 all checks passed, 1 a check failed, 2 no usable GPU (nothing run).
``--dry-run`` builds and validates everything that needs no GPU (configs, models, the plan) and
exits 0: the part of the script a machine without a GPU can check.

    bash scripts/gpu_check.sh               # the check
    python scripts/gpu_check.py --dry-run   # on any machine
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESETS = ("tiny", "small", "base")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="validate configs and models, print the plan, no GPU")
    p.add_argument("--size", type=int, default=512, help="square input size of the images/s rows (512)")
    p.add_argument("--batch", type=int, default=16, help="batch of the images/s rows (16)")
    p.add_argument("--gpu-iters", type=int, default=20, help="timed GPU iterations per preset (20, after 5 warm-up)")
    p.add_argument("--cpu-iters", type=int, default=2, help="timed CPU iterations per preset (2, after 1 warm-up)")
    p.add_argument("--train-iters", type=int, default=40, help="iterations of the platform training run (40)")
    p.add_argument("--skip-train", action="store_true", help="only the images/s table")
    return p.parse_args(argv)


def require_cuda() -> str:
    """The GPU's name, or exit 2 with one line saying why there is none."""
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_check: no usable NVIDIA GPU: torch.cuda.is_available() is False (torch {torch.__version__}, "
              f"built with CUDA {torch.version.cuda or 'none'}); nothing was run", file=sys.stderr)
        sys.exit(2)
    return torch.cuda.get_device_name(0)


# ----------------------------------------------------------------------------- 1. the platform run
def train_config(root: Path, iters: int) -> Any:
    from topnas.platform.train import TrainConfig

    storage = root / "runs"
    return TrainConfig.from_dict({
        "name": "gpu-check",
        "model": {"preset": "tiny", "num_classes": 5, "norm": "auto"},
        "data": {"root": str(root / "fixture"), "fixture": {"classes": 5, "train": 32, "val": 8, "size": [256, 320]},
                 "crop_size": [256, 256], "img_scale": [1024, 256], "test_img_scale": [1024, 256],
                 "samples_per_gpu": 8, "workers_per_gpu": 2},
        "optimizer": {"lr": 1e-3},
        "schedule": {"max_iters": iters, "warmup_iters": max(1, iters // 8)},
        "runtime": {"log_interval": max(1, iters // 4), "eval_interval": iters, "checkpoint_interval": iters,
                    "amp": True, "find_unused_parameters": False},
        "scaling": {"num_workers": 1, "use_gpu": True, "cpus_per_worker": 2, "max_failures": 0,
                    "storage_path": str(storage), "report_poll_s": 0.2},
        "tracking": {"uri": f"sqlite:///{storage / 'mlflow.db'}", "experiment": "gpu-check",
                     "export_onnx": True, "log_checkpoint": False},
    })


def check_training(cfg: Any) -> list[str]:
    """Run the job; return the failed checks (empty: all passed)."""
    from mlflow import MlflowClient

    from topnas.platform.train import run_training

    t0 = time.perf_counter()
    result = run_training(cfg, resume="never")
    print(f"[train] {result.iteration} iterations in {time.perf_counter() - t0:.0f} s (incl. Ray start), "
          f"val_mIoU {result.metrics.get('val_mIoU', float('nan')):.4f}")
    client = MlflowClient(result.tracking_uri)
    run = client.get_run(result.mlflow_run_id)
    tags, metrics = run.data.tags, run.data.metrics
    onnx_files = [f.path for f in client.list_artifacts(run.info.run_id, "onnx") if f.path.endswith(".onnx")]
    checks = {
        "trained to the last iteration": result.iteration == cfg.schedule.max_iters,
        f"device is CUDA (topnas.device={tags.get('topnas.device')})": tags.get("topnas.device", "").startswith("cuda"),
        f"SyncBatchNorm (topnas.norm={tags.get('topnas.norm')})": tags.get("topnas.norm") == "SyncBN",
        f"NCCL process group (topnas.dist_backend={tags.get('topnas.dist_backend')})":
            tags.get("topnas.dist_backend") == "nccl",
        f"AMP fp16 autocast (topnas.amp={tags.get('topnas.amp')})": tags.get("topnas.amp") == "true",
        "evaluation logged val_mIoU": math.isfinite(metrics.get("val_mIoU", float("nan"))),
        f"ONNX export logged ({', '.join(onnx_files) or tags.get('topnas.onnx_error', 'none')})": bool(onnx_files),
    }
    if onnx_files:
        checks["ONNX Runtime runs the export"] = _run_onnx(client, run.info.run_id, onnx_files[0], cfg)
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    return [name for name, ok in checks.items() if not ok]


def _run_onnx(client: Any, run_id: str, rel: str, cfg: Any) -> bool:
    import numpy as np
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, rel, tmp)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        h, w = cfg.variant.input_size
        out = sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 3, h, w), np.float32)})[0]
    return out.shape[:2] == (1, cfg.model.num_classes) and bool(np.isfinite(out).all())


# ----------------------------------------------------------------------------- 2. images/s
def images_per_s(preset: str, device: str, size: int, batch: int, warmup: int, iters: int, amp: bool) -> float:
    """Training images/s of one preset: forward + official loss + backward + AdamW step, timed after warm-up."""
    import torch

    from topnas.platform.train.loss import seg_cross_entropy
    from topnas.topformer import TopFormer

    torch.manual_seed(0)
    model = TopFormer.from_preset(preset, num_classes=150, norm="BN").to(device).train()
    if device == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 150, (batch, size, size), device=device)

    def step() -> None:
        with torch.autocast(device, dtype=torch.float16, enabled=amp):
            loss = seg_cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return iters * batch / (time.perf_counter() - t0)


def throughput_table(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    import os

    import torch

    torch.backends.cudnn.benchmark = True
    rows = []
    for preset in PRESETS:
        gpu = images_per_s(preset, "cuda", args.size, args.batch, 5, args.gpu_iters, amp=True)
        cpu = images_per_s(preset, "cpu", args.size, args.batch, 1, args.cpu_iters, amp=False)
        rows.append((preset, gpu, cpu))
        print(f"  {preset}: GPU {gpu:.1f} img/s, CPU {cpu:.2f} img/s", flush=True)
    print(f"\nTraining images/s at {args.size}x{args.size}, batch {args.batch} (synthetic tensors; GPU: AMP fp16 + "
          f"channels-last, {args.gpu_iters} timed iterations; CPU: fp32, {torch.get_num_threads()} threads of "
          f"{os.cpu_count()} cores, {args.cpu_iters} timed iterations)")
    print(f"{'preset':8} {'GPU img/s':>10} {'CPU img/s':>10} {'GPU/CPU':>8}")
    for preset, gpu, cpu in rows:
        print(f"{preset:8} {gpu:10.1f} {cpu:10.2f} {gpu / cpu:8.1f}")
    return rows


def dry_run(args: argparse.Namespace) -> int:
    """Everything but the GPU: configs validate, the three presets build, the plan is printed."""
    from topnas.topformer import TopFormer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = train_config(Path(tmp), args.train_iters)
    print(f"[dry-run] training config ok: {cfg.variant.id}, norm {cfg.resolved_norm()}, amp {cfg.runtime.amp}, "
          f"{cfg.schedule.max_iters} iterations, {cfg.scaling.num_workers} GPU worker, ONNX export "
          f"{cfg.tracking.export_onnx}")
    for preset in PRESETS:
        n = sum(p.numel() for p in TopFormer.from_preset(preset, num_classes=150, norm="BN").parameters())
        print(f"[dry-run] {preset}: {n / 1e6:.2f} M params; images/s at {args.size}x{args.size} batch {args.batch}: "
              f"GPU {args.gpu_iters} + CPU {args.cpu_iters} timed iterations")
    print("[dry-run] no GPU used; run scripts/gpu_check.sh on a machine with an NVIDIA GPU for the check")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        return dry_run(args)
    name = require_cuda()
    print(f"gpu_check on {name}", flush=True)
    t0 = time.perf_counter()
    failed: list[str] = []
    if not args.skip_train:
        with tempfile.TemporaryDirectory(prefix="topnas_gpu_check_") as tmp:
            failed = check_training(train_config(Path(tmp), args.train_iters))
    print("\n[throughput]", flush=True)
    throughput_table(args)
    print(f"\ngpu_check: {'FAILED: ' + '; '.join(failed) if failed else 'all checks passed'} "
          f"({time.perf_counter() - t0:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
