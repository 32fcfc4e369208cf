"""glibc malloc settings (topnas.platform.malloc) vs glibc's defaults: training step and evaluation.

glibc reads the settings at process start, so each configuration runs in its own child process
(same script, ``--child``), twice in alternation (ABAB) to even out load drift on a shared machine.
Measured in each child, at 1 thread:

* ``train``: iterations/s of the demo sweep's proxy training step (its first variant, its crop and
  batch, AdamW, the official loss), the in-process loop's model + optimizer without data loading;
* ``eval``: TopFormer-T forward + bilinear resize to the input, 1x3x512x512 (the test path).

Prints each configuration's median and the ratio tuned / default (>1: the settings help)::

    python benchmarks/malloc_speed.py [--iters 30] [--runs 8]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(iters: int, runs: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.manual_seed(0)
    from topnas.platform.sweep import load_sweep_config
    from topnas.platform.sweep.fidelity import NO_FIDELITY
    from topnas.platform.train.loss import seg_cross_entropy
    from topnas.platform.train.optim import build_optimizer
    from topnas.topformer import TopFormer

    cfg = load_sweep_config(ROOT / "experiments" / "sweep_demo_fixture.yaml", NO_FIDELITY)
    tc = cfg.train_config(cfg.first_variant(), "malloc-bench")
    model = cfg.first_variant().build(norm="BN").train()
    opt = build_optimizer(model, tc.optimizer)
    b, (h, w), k = cfg.proxy.samples_per_gpu, cfg.proxy.crop_size, cfg.space.num_classes
    img, lab = torch.randn(b, 3, h, w), torch.randint(0, k, (b, h, w))

    def step() -> None:
        loss = seg_cross_entropy(model(img), lab)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(iters):
        step()
    train = iters / (time.perf_counter() - t)

    net = TopFormer.from_preset("tiny", num_classes=150, norm="BN").eval()
    x = torch.randn(1, 3, 512, 512)
    samples = []
    with torch.no_grad():
        for i in range(runs + 2):
            t = time.perf_counter()
            F.interpolate(net(x), size=(512, 512), mode="bilinear", align_corners=False)
            if i >= 2:
                samples.append(time.perf_counter() - t)
    return {"train_it_per_s": train, "eval_s": statistics.median(samples)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.iters, args.runs)))
        return 0
    from topnas.platform.malloc import MALLOC_ENV

    base = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    base.update({"TOPNAS_MALLOC_DEFAULTS": "0", "OMP_NUM_THREADS": "1"})
    envs = {"default": base, "tuned": {**base, **MALLOC_ENV}}
    results: dict[str, list[dict[str, float]]] = {"default": [], "tuned": []}
    for name in ("default", "tuned", "default", "tuned"):
        out = subprocess.run([sys.executable, __file__, "--child", "--iters", str(args.iters), "--runs", str(args.runs)],
                             env=envs[name], capture_output=True, text=True, check=True)
        results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in results.items()}
    print(f"{'':10}{'train it/s':>12}{'eval ms':>10}")
    for n, m in med.items():
        print(f"{n:10}{m['train_it_per_s']:12.2f}{m['eval_s'] * 1000:10.1f}")
    print(f"ratio tuned/default: training step {med['tuned']['train_it_per_s'] / med['default']['train_it_per_s']:.2f}x, "
          f"eval {med['default']['eval_s'] / med['tuned']['eval_s']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
