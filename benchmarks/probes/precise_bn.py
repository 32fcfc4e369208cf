"""Proxy probe: is the seed noise in the BatchNorm running statistics rather than in the weights?

The demo proxy evaluates with BatchNorm running averages (momentum 0.1) collected on 64x64 training
crops at scales 0.5-2.0, then tests whole 128x160 images. A seed whose last running averages sit
off the test images' statistics would lose a class at test time without having failed to learn
it. "Precise BN" (recompute the population statistics with the final weights before evaluating,
as pycls and detectron2 do) removes that part of the noise. This probe trains variants at the demo
proxy and, at the last evaluation, also evaluates the same weights with statistics recomputed:

* ``crops``: over ``--bn-batches`` batches of the training pipeline (training crops);
* ``whole``: over every training image through the test pipeline (whole images at test scale).

    python benchmarks/probes/precise_bn.py tf-3cf351a076 tf-892d1c4abb --seeds 0 1 2 --work /tmp/pbn \
        --set search_space.num_classes=10 --set proxy.fixture.classes=10    # the 10-class variants file

Result: benchmarks/data/README.md ("Proxy changes tried").
"""
from __future__ import annotations

import argparse
import copy
import shutil
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

VARIANTS = ROOT / "benchmarks" / "data" / "replay_fixture-small_variants.jsonl"


def recompute_bn(model, batches) -> None:
    """Population BatchNorm statistics of ``model`` over ``batches`` (cumulative average, no grad)."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    with torch.no_grad():
        for img in batches:
            model(img)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="+", help="variant ids of --variants-file")
    ap.add_argument("--variants-file", default=str(VARIANTS))
    ap.add_argument("--sweep", default=str(ROOT / "experiments" / "sweep_demo_fixture.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="sweep-config override")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bn-batches", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", required=True, help="fixture + checkpoints")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from topnas.platform.data import ADE20KDataset, seg_collate
    from benchmarks.probes.proxy_setup import proxy_config, read_variants
    from topnas.platform.train import loop as L

    found = read_variants(args.variants_file)
    work = Path(args.work).absolute()
    cfg = proxy_config(args.sweep, args.set, work)
    evaluate = L.evaluate
    for vid in args.variants:
        variant = found[vid]
        for seed in args.seeds:
            tc = cfg.train_config(variant, f"pbn_{vid}_s{seed}")
            tc = replace(tc, runtime=replace(tc.runtime, seed=seed, log_interval=10 ** 9))
            evals = [0]

            def wrapped(model, dataset, *a, _tc=tc, _evals=evals, _vid=vid, _seed=seed, **k):
                result = evaluate(model, dataset, *a, **k)
                _evals[0] += 1
                if _evals[0] * cfg.proxy.eval_interval < cfg.proxy.iterations:
                    return result
                train_ds, _ = L._build_datasets(_tc)
                n = len(train_ds)
                g = torch.Generator().manual_seed(_seed)
                order = torch.randint(0, n, (args.bn_batches * _tc.data.samples_per_gpu,), generator=g).tolist()
                crops = [seg_collate([train_ds[i] for i in order[j:j + _tc.data.samples_per_gpu]])["img"]
                         for j in range(0, len(order), _tc.data.samples_per_gpu)]
                whole_ds = ADE20KDataset(_tc.data.root, _tc.data.train_split, dataset.pipeline,
                                         num_classes=_tc.model.num_classes, reduce_zero_label=_tc.data.reduce_zero_label)
                scores = {"plain": result["mIoU"]}
                for name, batches in (("crops", crops), ("whole", [whole_ds[i]["img"][None] for i in range(n)])):
                    m = copy.deepcopy(model)
                    recompute_bn(m, batches)
                    scores[name] = evaluate(m, dataset, *a, **k)["mIoU"]
                print(f"RESULT {_vid} seed {_seed} " + " ".join(f"{k} {v:.4f}" for k, v in scores.items()),
                      flush=True)
                return result

            L.evaluate = wrapped
            run_dir = work / f"{vid}_s{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            L.run_loop(tc, L.TrainJob(tc.name, str(run_dir)), L.LocalSession(run_dir))
            shutil.rmtree(run_dir, ignore_errors=True)
    L.evaluate = evaluate
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
