"""Shared by ``scripts/make_official_goldens.py`` and ``tests/topformer/test_official_goldens.py``.

The golden cases (preset, mode, input size, overrides) and :func:`deterministic_weights`, which
sets every Conv2d / BatchNorm tensor from a generator seeded by the module's NAME, so the official
model and ours - whose state_dict keys are identical - get the same weights without one model
being loaded into the other.
"""
from __future__ import annotations

import math
import zlib
from typing import Any

import torch
from torch import nn

__all__ = ["CASES", "NUM_CLASSES", "case_key", "deterministic_weights", "grad_weights", "inputs_of", "run_case", "train_step"]

NUM_CLASSES = 8  # small logits; the head's classifier is the only layer that depends on it
# (name, preset, mode, (H, W), batch, overrides in our config field names)
CASES: list[tuple[str, str, str, tuple[int, int], int, dict[str, Any]]] = []
for _preset in ("tiny", "small", "base"):
    for _size in ((64, 64), (96, 80)):
        CASES.append((f"{_preset}_eval_{_size[0]}x{_size[1]}", _preset, "eval", _size, 1, {}))
    CASES.append((f"{_preset}_train_96x80", _preset, "train", (96, 80), 2, {}))
CASES.append(("tiny_train_drop_96x80", "tiny", "train", (96, 80), 2, {"drop_path_rate": 0.1, "dropout_ratio": 0.1}))
for _inj in ("muli_sum_cbr", "fuse_sum", "fuse_multi"):
    CASES.append((f"tiny_{_inj}_eval_96x80", "tiny", "eval", (96, 80), 1, {"injection_type": _inj}))
CASES.append(("tiny_fuse_multi_train_96x80", "tiny", "train", (96, 80), 2, {"injection_type": "fuse_multi"}))
for _stride in (1, 4):
    CASES.append((f"tiny_c2t{_stride}_eval_96x80", "tiny", "eval", (96, 80), 1, {"c2t_stride": _stride}))


def case_key(name: str, what: str) -> str:
    return f"{name}/{what}"


@torch.no_grad()
def deterministic_weights(model: nn.Module, seed: int = 0) -> None:
    """Every Conv2d and BatchNorm tensor from ``crc32(module name) + seed`` (BN weights in [0.5, 1.5])."""
    touched = set()
    for name, m in model.named_modules():
        g = torch.Generator().manual_seed(zlib.crc32(name.encode()) + seed)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
            m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
            touched |= {f"{name}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
        elif isinstance(m, nn.Conv2d):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.weight[0].numel()))
            touched.add(f"{name}.weight")
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
                touched.add(f"{name}.bias")
    missed = [k for k in model.state_dict() if k not in touched]
    assert not missed, f"deterministic_weights missed {missed[:5]}"


def inputs_of(name: str, size: tuple[int, int], batch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return torch.randn(batch, 3, *size, generator=g)


def grad_weights(shape: torch.Size, name: str) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(zlib.crc32(("grad:" + name).encode())))


GOLDEN_THREADS = 2  # the goldens were made on a 2-core machine at torch's default thread count


def run_case(model: nn.Module, name: str, mode: str, size: tuple[int, int], batch: int) -> dict[str, Any]:
    """What a case stores: logits; in train mode also per-buffer BN running sums and per-parameter grad norms."""
    deterministic_weights(model)
    x = inputs_of(name, size, batch)
    if mode == "eval":
        model.eval()
        with torch.no_grad():
            return {"logits": model(x).numpy()}
    # Train mode in float64. Batch statistics of small maps and the unscaled attention make a
    # randomly weighted network's train step chaotic: in float32 a 1e-6 relative change of the input
    # moves some logit by 0.16-3400 times its value (benchmarks/probes/golden_sensitivity.py), so
    # float32 goldens only held on the CPU that made them (another CPU's summation order broke them).
    # In float64 at 96x80, a 1e-14 change moves logits by <1e-8 and gradient norms by <3e-3 of their
    # value: rounding differences stay far below the tolerances, while a wrong operator still moves
    # everything by whole units.
    return train_step(model, x, name, torch.float64)


def train_step(model: nn.Module, x: torch.Tensor, name: str, dtype: torch.dtype) -> dict[str, Any]:
    """One seeded train forward + backward of ``model`` (weights already set) on ``x``, in ``dtype``:
    logits, per-buffer BN running sums and per-parameter gradient norms."""
    model.train().to(dtype)
    x = x.to(dtype)
    threads = torch.get_num_threads()
    torch.set_num_threads(GOLDEN_THREADS)  # drop-path masks depend on the thread count
    try:
        torch.manual_seed(zlib.crc32(name.encode()))
        out = model(x)
        (out * grad_weights(out.shape, name).to(dtype)).sum().backward()
    finally:
        torch.set_num_threads(threads)
    sd = model.state_dict()
    running = [k for k in sd if k.endswith(("running_mean", "running_var"))]
    return {
        "logits": out.detach().numpy(),
        "running_sums": torch.stack([sd[k].double().sum() for k in running]).numpy(),
        "grad_norms": torch.stack([p.grad.double().norm() for _, p in model.named_parameters()]).numpy(),
    }
