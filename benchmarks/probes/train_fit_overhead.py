"""Probe: what one Ray Train ``fit()`` costs before any training (the fixed part of a sweep trial).

Every sweep trial is one ``TorchTrainer.fit()`` (``proxy.seeds`` k: k of them). This times fits of
a function that only imports the training loop, on an embedded 2-CPU Ray, with and without the
per-worker environment variables that ``run_training`` passes (a runtime env keeps Ray from reusing
idle worker processes). Prints seconds per fit.

    python benchmarks/probes/train_fit_overhead.py --repeats 2
"""
from __future__ import annotations

import argparse
import tempfile
import time


def _loop(config: dict) -> int:
    import topnas.platform.train.loop  # noqa: F401 - what a real worker imports

    return 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)

    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from topnas.platform.malloc import worker_malloc_env

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    storage = tempfile.mkdtemp(prefix="topnas_fit_probe_")
    try:
        for k in range(args.repeats):
            for mode in ("runtime env", "no runtime env"):
                env = {"env_vars": {**worker_malloc_env(), "MLFLOW_TRACKING_URI": "sqlite:///x.db"}}
                run = RunConfig(name=f"probe{k}-{mode.replace(' ', '_')}", storage_path=storage,
                                worker_runtime_env=env if mode == "runtime env" else None)
                t0 = time.perf_counter()
                TorchTrainer(_loop, scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                             run_config=run).fit()
                print(f"fit {k + 1}, {mode}: {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
