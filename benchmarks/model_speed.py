"""Model speed on this CPU: forward and forward+backward images/s for T/S/B, and ONNX Runtime vs eager.

Prints absolute numbers (noisy on a shared machine) and ratios measured in the same run (what to
quote). "fast" is ``TopFormer.to_inference()`` (channels-last) under ``torch.inference_mode``; the
official code is timed on its own test path (no_grad, default layout). glibc malloc settings
(MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4000000000 MALLOC_TOP_PAD_=536870912) cut
page faults and speed every eager column up; set them in the environment to compare. With TOPNAS_OFFICIAL_TOPFORMER pointing at a hustvl/TopFormer checkout, the official model
code is timed in the same run as the baseline (see tests/topformer/test_official_parity.py).

    python benchmarks/model_speed.py [--size 512] [--runs 10] [--presets tiny small base]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from topnas.topformer import TopFormer
from topnas.topformer.export import export_onnx, onnx_session


def _time(fn, runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def _official_model(name: str):
    src = os.environ.get("TOPNAS_OFFICIAL_TOPFORMER")
    if not src:
        return None
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.topformer.test_official_parity import _build_official, _load_official  # shims live there

    return _build_official(_load_official(Path(src)), name).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--train-batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for eager timings")
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "base"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    hw = (args.size, args.size)
    print(f"input 1x3x{args.size}x{args.size}, torch {torch.__version__}, {args.threads} thread(s), "
          f"median of {args.runs} runs")
    header = f"{'model':<7}{'eager fwd img/s':>16}{'fwd+bwd img/s':>15}{'ORT img/s':>11}{'ORT/eager':>11}"
    header += f"{'fast img/s':>11}{'official/ours (plain/fast)':>28}"
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets:
            model = TopFormer.from_preset(name, norm="BN").eval()
            x = torch.randn(1, 3, *hw)
            with torch.no_grad():
                fwd = _time(lambda: model(x), args.runs)
            train = TopFormer.from_preset(name, norm="BN").train()
            xb = torch.randn(args.train_batch, 3, *hw)

            def step():
                train.zero_grad(set_to_none=True)
                train(xb).mean().backward()

            fb = _time(step, max(3, args.runs // 3), warmup=1)
            sess = onnx_session(export_onnx(model, os.path.join(tmp, f"{name}.onnx"), hw))
            feed = {"input": x.numpy()}
            ort = _time(lambda: sess.run(["output"], feed), args.runs)
            fast = TopFormer.from_preset(name, norm="BN")
            fast.load_state_dict(model.state_dict())
            fast = fast.to_inference()
            xc = x.to(memory_format=torch.channels_last)
            with torch.inference_mode():
                fwd_fast = _time(lambda: fast(xc), args.runs)
            official = _official_model(name)
            ratio = "n/a"
            if official is not None:
                # the official test path: eval + no_grad, default memory layout
                with torch.no_grad():
                    off = _time(lambda: official(x), args.runs)
                ratio = f"{off / fwd:.2f}x/{off / fwd_fast:.2f}x"
            print(f"{name:<7}{1 / fwd:>16.2f}{args.train_batch / fb:>15.2f}{1 / ort:>11.2f}{fwd / ort:>10.2f}x"
                  f"{1 / fwd_fast:>11.2f}{ratio:>28}")


if __name__ == "__main__":
    main()
