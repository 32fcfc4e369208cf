"""Probe: how chaotic is a randomly weighted TopFormer's train step, by input size and dtype?

``tests/topformer/test_official_goldens.py`` compares our train step with one of the official code,
both given the same deterministic weights (``tests/helpers/topformer_goldens.py``). Goldens only
hold across machines if rounding differences (another CPU's summation order) stay far below the
test's tolerances. This probe multiplies the input by ``1 + eps * N(0, 1)`` and prints the largest
relative change of the logits, the BN running-stat sums and the gradient norms, per preset, input
size and dtype. A change of about one float's rounding (1e-6 in float32, 1e-14 in float64) that
moves an output by more than its tolerance means goldens of that case are not portable.

    python benchmarks/probes/golden_sensitivity.py                      # T/S/B, 64x64 and 96x80
    python benchmarks/probes/golden_sensitivity.py --sizes 96x80 128x128 160x160 --presets tiny

Result: README ("Official parity") and the comment in ``run_case``: the train cases run at 96x80 in
float64.
"""
from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tests.helpers.topformer_goldens import (  # noqa: E402
    NUM_CLASSES,
    deterministic_weights,
    inputs_of,
    train_step,
)
from topnas.topformer import TopFormer  # noqa: E402

EPS = {torch.float32: 1e-6, torch.float64: 1e-14}
OUTPUTS = ("logits", "running_sums", "grad_norms")


def perturbed_step(preset: str, size: tuple[int, int], dtype: torch.dtype, eps: float) -> dict[str, np.ndarray]:
    """The goldens' train step (:func:`train_step`) on the case's input times ``1 + eps * N(0, 1)``."""
    name = f"{preset}_train_{size[0]}x{size[1]}"
    model = TopFormer.from_preset(preset, num_classes=NUM_CLASSES, norm="BN")
    deterministic_weights(model)
    x = inputs_of(name, size, 2).to(dtype)
    x = x * (1 + eps * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=dtype))
    return train_step(model, x, name, dtype)


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / (np.abs(b) + 1e-9)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "base"])
    ap.add_argument("--sizes", nargs="+", default=["64x64", "96x80"], help="HxW")
    args = ap.parse_args(argv)
    print(f"{'case':<20} {'dtype':<8} {'eps':>6}  {'logits':>8} {'running':>8} {'grads':>8}  (largest relative change)")
    for preset in args.presets:
        for text in args.sizes:
            size = tuple(int(v) for v in text.split("x"))
            for dtype, eps in EPS.items():
                base, moved = perturbed_step(preset, size, dtype, 0.0), perturbed_step(preset, size, dtype, eps)
                changes = [max_rel(np.asarray(moved[k], float), np.asarray(base[k], float)) for k in OUTPUTS]
                print(f"{preset + '_' + text:<20} {str(dtype).removeprefix('torch.'):<8} {eps:>6.0e}  "
                      + " ".join(f"{c:>8.1e}" for c in changes), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
