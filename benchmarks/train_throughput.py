"""Training throughput: a bare PyTorch loop vs the platform loop vs Ray Train with 1 and 2 CPU workers.

Measures the platform's own overhead on TopFormer-T with the fixture dataset and the official
train pipeline (tiny crops). All rows are measured in the same run and printed as ratios against
the bare loop, because the shared development machine is noisy:

* ``bare``: model + AdamW + DataLoader(official pipeline) + loss in a plain ``for`` loop, 1 thread;
* ``platform, no Ray``: :func:`topnas.platform.train.run_loop` in-process (``LocalSession``): schedule,
  seeded sampling, logging; no DDP;
* ``Ray Train xN``: :func:`run_training` with N workers (1 CPU / 1 thread each, gloo DDP for N=2).

Steady-state images/s come from the second half of each run (warm-up excluded); the Ray rows also
show the wall time of ``fit()`` (actor start, gloo init, checkpoint, shutdown). The bare loop runs
first and last and the ratios use the mean of both; on a machine shared with other jobs, repeat the
benchmark and compare ratios across runs before trusting a difference below ~30%.

    python benchmarks/train_throughput.py            # ~2-4 minutes on 2 cores
    python benchmarks/train_throughput.py --iters 60 --crop 128
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bare_loop(root: Path, iters: int, crop: int, batch: int, classes: int) -> float:
    """Images/s over the second half of ``iters`` plain training iterations."""
    import torch
    import torch.nn.functional as F

    from topnas.platform.data import ADE20KDataset, build_train_pipeline, seg_collate
    from topnas.topformer import TopFormer

    torch.manual_seed(0)
    pipeline = build_train_pipeline(crop_size=crop, img_scale=(4 * 128, 128), seed=0)
    ds = ADE20KDataset(root, "training", pipeline, num_classes=classes)
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=iters * batch)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, collate_fn=seg_collate)
    model = TopFormer.from_preset("tiny", num_classes=classes, norm="BN").train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    half, t0 = iters // 2, 0.0
    for i, b in enumerate(loader):
        if i == half:
            t0 = time.perf_counter()
        logits = F.interpolate(model(b["img"]), size=b["gt_semantic_seg"].shape[-2:], mode="bilinear")
        loss = F.cross_entropy(logits, b["gt_semantic_seg"], ignore_index=255, reduction="none").mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (iters - half) * batch / (time.perf_counter() - t0)


def config(root: Path, storage: Path, name: str, workers: int, iters: int, crop: int, batch: int, classes: int):
    from topnas.platform.train import TrainConfig

    return TrainConfig.from_dict({
        "name": name,
        "model": {"preset": "tiny", "num_classes": classes, "norm": "BN"},
        "data": {"root": str(root), "crop_size": [crop, crop], "img_scale": [512, 128], "test_img_scale": [512, 128],
                 "samples_per_gpu": batch, "workers_per_gpu": 0, "val_max_samples": 2},
        "optimizer": {"lr": 1e-3},
        "schedule": {"max_iters": iters, "warmup_iters": 1},
        "runtime": {"log_interval": iters // 2, "eval_interval": iters, "checkpoint_interval": iters},
        "scaling": {"num_workers": workers, "use_gpu": False, "cpus_per_worker": 1, "storage_path": str(storage),
                    "report_poll_s": 0.2},
        "tracking": {"enabled": False},
    })


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=40, help="iterations per row (default 40)")
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--batch", type=int, default=2, help="images per worker and iteration")
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray Train worker counts")
    args = p.parse_args()

    import torch

    from topnas.platform.data import write_fixture
    from topnas.platform.train import LocalSession, TrainJob, run_loop, run_training

    torch.set_num_threads(1)  # what each Ray worker gets (OMP_NUM_THREADS=1)
    rows: list[tuple[str, float, float | None]] = []
    with tempfile.TemporaryDirectory(prefix="topnas_bench_") as tmp:
        tmp_path = Path(tmp)
        root = write_fixture(tmp_path / "data", num_classes=args.classes, train=32, val=4, size=(128, 160), seed=0)
        print(f"TopFormer-T, {args.crop}x{args.crop} crops, {args.batch} images/worker/iteration, "
              f"{args.iters} iterations per row, torch threads 1, {os.cpu_count()} CPUs", flush=True)

        rows.append(("bare PyTorch loop", bare_loop(root, args.iters, args.crop, args.batch, args.classes), None))
        print(f"  {rows[-1][0]}: {rows[-1][1]:.2f} img/s", flush=True)

        cfg = config(root, tmp_path / "runs", "local", 1, args.iters, args.crop, args.batch, args.classes)
        t0 = time.perf_counter()
        summary = run_loop(cfg, TrainJob("local", str(tmp_path / "local")), LocalSession(tmp_path / "local"))
        rows.append(("platform loop, no Ray", summary["images_per_s"], time.perf_counter() - t0))
        print(f"  {rows[-1][0]}: {rows[-1][1]:.2f} img/s", flush=True)

        import ray

        ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
        try:
            for n in args.workers:
                cfg = config(root, tmp_path / "runs", f"ray{n}", n, args.iters, args.crop, args.batch, args.classes)
                t0 = time.perf_counter()
                result = run_training(cfg, resume="never")
                rows.append((f"Ray Train x{n} worker(s)", result.metrics["images_per_s"], time.perf_counter() - t0))
                print(f"  {rows[-1][0]}: {rows[-1][1]:.2f} img/s", flush=True)
        finally:
            ray.shutdown()
        # measured again at the end: load from other users drifts; the baseline is the mean of both
        rows.append(("bare PyTorch loop (again)", bare_loop(root, args.iters, args.crop, args.batch, args.classes),
                     None))
        print(f"  {rows[-1][0]}: {rows[-1][1]:.2f} img/s", flush=True)

    bare = (rows[0][1] + rows[-1][1]) / 2
    print(f"\n{'mode':<26} {'img/s':>8} {'vs bare':>8} {'wall s':>8}   (bare = mean of both bare rows)")
    for name, speed, wall in rows:
        print(f"{name:<26} {speed:>8.2f} {speed / bare:>7.2f}x {'' if wall is None else f'{wall:8.1f}'}")
    print("(ratios > 1 for x2 come from the second worker's extra core; per-worker efficiency = ratio / workers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
