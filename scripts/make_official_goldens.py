"""Golden outputs of the official hustvl/TopFormer code, for tests/topformer/test_official_goldens.py.

    .venv/bin/python scripts/make_official_goldens.py <hustvl/TopFormer checkout or bare repo> \
        [--out tests/topformer/data/official_goldens.npz]

Builds the official backbone + SimpleHead from the checkout exactly as the opt-in parity test does
(tests/topformer/test_official_parity.py: source read, mmcv 1.x imports shimmed, exec'd; needs
mmcv + mmengine), from the official local_configs (SyncBN -> BN, ``num_classes`` 8), sets every
weight with ``tests.helpers.topformer_goldens.deterministic_weights`` and runs every case of
``CASES`` (3 presets, eval and train mode, 64x64 and 96x80, three more injection types, c2t
strides 1 and 4). Saves the logits (float32 in eval mode, float64 in train mode, which runs in
float64) and, in train mode, BN running-stat sums and gradient norms, plus the official commit, in
one compressed npz; nothing of the official code is stored.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tests.helpers.topformer_goldens import CASES, NUM_CLASSES, case_key, run_case  # noqa: E402
from tests.topformer.test_official_parity import _build_official, _load_official  # noqa: E402

DEFAULT_OUT = ROOT / "tests" / "topformer" / "data" / "official_goldens.npz"


def _commit(src: Path) -> str:
    git_dir = src if (src / "HEAD").is_file() else src / ".git"
    out = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("official", type=Path, help="hustvl/TopFormer checkout or bare git repository")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if not args.official.exists():
        p.error(f"official: {args.official} does not exist")
    lib = _load_official(args.official)
    arrays: dict[str, np.ndarray] = {"commit": np.array(_commit(args.official))}
    for name, preset, mode, size, batch, overrides in CASES:
        backbone = {k: overrides[k] for k in ("injection_type", "c2t_stride", "drop_path_rate") if k in overrides}
        head = {"num_classes": NUM_CLASSES}
        if "dropout_ratio" in overrides:
            head["dropout_ratio"] = overrides["dropout_ratio"]
        model = _build_official(lib, preset, head, **backbone)
        for what, value in run_case(model, name, mode, size, batch).items():
            single = what == "logits" and mode == "eval"
            arrays[case_key(name, what)] = np.asarray(value, dtype=np.float32 if single else np.float64)
        print(f"{name}: logits {tuple(arrays[case_key(name, 'logits')].shape)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB, {len(CASES)} cases, official {arrays['commit']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
