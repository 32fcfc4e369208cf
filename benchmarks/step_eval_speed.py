"""Training step and evaluation of the training loop: the current code paths vs the previous ones.

Measured in one process, alternating A/B (ABAB, median) to even out load drift on a shared machine,
TopFormer-T, 150 classes, 1 thread by default (``--threads``):

* **training step** (512x512, batch 2, AdamW, the official loss: logits resized x8 to the labels,
  cross-entropy with ignored pixels in the denominator): the loss as ``sum / all pixels``
  (:func:`topnas.platform.train.loss.seg_cross_entropy`) vs a per-pixel loss tensor averaged
  (the previous code), and channels-last training vs the default layout;
* **evaluation** (:func:`topnas.platform.train.loop.evaluate` on 8 synthetic 512x512 images): the fast
  path (inference copy in channels-last, inference mode, batches of 4) vs ``fast=False`` (the model
  as given, one image at a time: the previous default).

Run it with the glibc malloc settings of :mod:`topnas.platform.malloc` in the environment to see
what the CLI and Ray workers get (``benchmarks/malloc_speed.py`` measures those on their own)::

    python benchmarks/step_eval_speed.py [--threads 1] [--steps 4]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from topnas.platform.train.loop import evaluate  # noqa: E402
from topnas.platform.train.loss import seg_cross_entropy  # noqa: E402
from topnas.topformer import TopFormer  # noqa: E402

K = 150


def per_pixel_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The previous loss: the same value through a per-pixel loss tensor."""
    logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits.float(), labels.long(), reduction="none", ignore_index=255).mean()


def step_time(loss_fn, channels_last: bool, steps: int) -> float:
    torch.manual_seed(0)
    model = TopFormer.from_preset("tiny", num_classes=K, norm="BN").train()
    x = torch.randn(2, 3, 512, 512)
    y = torch.randint(0, K, (2, 512, 512))
    y[:, :16] = 255
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step warms up
            times.append(time.perf_counter() - t)
    return statistics.median(times)


class _Images:
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.items = [{"img": torch.randn(3, 512, 512, generator=g),
                       "gt_semantic_seg": torch.randint(0, K, (512, 512), generator=g)} for _ in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def eval_time(fast: bool, data: _Images) -> float:
    torch.manual_seed(0)
    model = TopFormer.from_preset("tiny", num_classes=K, norm="BN")
    evaluate(model, _Images(1), rank=0, world_size=1, device=torch.device("cpu"), num_classes=K, fast=fast)
    t = time.perf_counter()
    evaluate(model, data, rank=0, world_size=1, device=torch.device("cpu"), num_classes=K, fast=fast)
    return (time.perf_counter() - t) / len(data)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--images", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = _Images(args.images)
    rows: dict[str, list[float]] = {}
    cases = {
        "step: per-pixel loss (previous)": lambda: step_time(per_pixel_loss, False, args.steps),
        "step: sum / all pixels (current)": lambda: step_time(seg_cross_entropy, False, args.steps),
        "step: current + channels-last": lambda: step_time(seg_cross_entropy, True, args.steps),
        "eval: one image, model as is (previous)": lambda: eval_time(False, data),
        "eval: fast path (current)": lambda: eval_time(True, data),
    }
    for _ in range(2):
        for name, fn in cases.items():
            rows.setdefault(name, []).append(fn())
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"TopFormer-T, {K} classes, 512x512, {args.threads} thread(s), torch {torch.__version__}")
    base_step, base_eval = med["step: per-pixel loss (previous)"], med["eval: one image, model as is (previous)"]
    for name, sec in med.items():
        base = base_step if name.startswith("step") else base_eval
        print(f"{name:<42}{sec:8.3f} s   {base / sec:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
