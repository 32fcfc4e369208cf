"""The main job, end to end on one machine: fixture -> sweep -> Pareto front in MLflow -> promotion.

``topnas demo [--out runs/demo] [--trials 8]`` runs, with everything under ``--out`` (that folder
becomes the run folder, ``TOPNAS_HOME``, and holds the local MLflow store ``mlflow.db``):

1. the synthetic fixture dataset of the demo sweep (ADE20K layout, generated once);
2. the demo sweep ``experiments/sweep_demo_fixture.yaml`` (Ray Tune + Optuna NSGA-II, proxy training
   per trial) on an embedded Ray, its parent/child runs and Pareto artifacts in the local store;
3. the Pareto table, and the command that opens the MLflow UI on that store;
4. ``promote --knee --scale-down``: the knee variant's 160k ADE20K YAML, its registry version
   (alias ``challenger``), then its scaled-down full training (same recipe, fixture-sized: crop,
   workers and iterations of ``experiments/demo_tiny_fixture.yaml`` on the sweep's own fixture,
   ``experiments/demo_promoted_fixture.yaml``), finalized with its final
   mIoU and the predicted latency of its ONNX export; ``accept`` then sets alias ``champion``.

Re-running reuses a finished sweep (and resumes an interrupted one); ``--fresh`` starts over.
Example::

    result = run_demo("runs/demo", trials=8)
    result.champion, result.final_miou
"""
from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from topnas.errors import ConfigError
from topnas.platform.console import LOG_DIR
from topnas.platform.envvars import scoped_environ

if TYPE_CHECKING:
    from topnas.platform.console import Console
from topnas.platform.objectives import TrialStatus

__all__ = ["DEMO_SWEEP", "DemoResult", "clear_demo_folder", "run_demo"]

DEMO_SWEEP = "sweep_demo_fixture.yaml"
FULL_FIXTURE = "demo_promoted_fixture.yaml"  # the sweep's fixture, the tiny recipe
MARKER = ".topnas-demo"


@dataclass(frozen=True)
class DemoResult:
    out: Path
    tracking_uri: str
    sweep: str
    front_size: int
    trials: int
    promoted_yaml: Path
    train_yaml: Path
    challenger: str
    champion: str
    full_run_id: str
    final_miou: float
    latency_ms: float
    elapsed_s: float


def clear_demo_folder(out: Path) -> None:
    """Empty an earlier demo folder for ``--fresh``; refuse any folder the demo did not make.

    The CLI opens this run's console log under ``<out>/logs`` before the demo starts, so that folder
    is kept, and a folder holding nothing else counts as new.
    """
    if not out.exists():
        return
    if not (out / MARKER).is_file() and any(c.name != LOG_DIR for c in out.iterdir()):
        raise ConfigError("--out", str(out), "a folder made by `topnas demo` (it has no .topnas-demo marker)",
                          hint="refusing to delete it; choose another --out")
    for child in out.iterdir():
        if child.name != LOG_DIR:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def run_demo(
    out: str | os.PathLike[str] = "runs/demo",
    trials: int = 8,
    *,
    full_iters: int | None = None,
    fresh: bool = False,
    num_cpus: int | None = None,
    echo: Callable[[str], None] = print,
    console: Console | None = None,
) -> DemoResult:
    """Run the whole main job under ``out`` and return what it produced (see the module docstring).

    ``console`` (the CLI's): the live views of the sweep and of the full run are drawn on it.
    """
    from topnas.platform import promote as P
    from topnas.platform.promote import experiments_dir

    if trials < 2:
        raise ConfigError("--trials", trials, "an integer >= 2 (a front needs trials to compare)")
    t0 = time.perf_counter()
    out = Path(out).absolute()
    if fresh:
        clear_demo_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `topnas demo`; safe to delete\n")
    db = out / "mlflow.db"
    uri = f"sqlite:///{db}"
    sweep_yaml = experiments_dir() / DEMO_SWEEP

    with scoped_environ(TOPNAS_HOME=str(out), MLFLOW_TRACKING_URI=uri, RAY_USAGE_STATS_ENABLED="0"):
        from topnas.platform.sweep import (
            load_saved_config,
            load_sweep_config,
            run_sweep,
        )
        from topnas.platform.sweep.fidelity import fidelity_of, front_resolution
        from topnas.platform.sweep.layout import SweepFolder, SweepStatus

        # The config is parsed once: from the sweep's own folder to resume an interrupted sweep, else the YAML.
        folder = SweepFolder(_sweep_dir_of(sweep_yaml))
        status = _sweep_status(folder.state)
        reuse = status == SweepStatus.FINISHED and _finished_trials(folder.root) >= trials
        resume = status is not None and not reuse
        cfg = load_saved_config(folder.root) if resume else load_sweep_config(sweep_yaml, {"num_samples": int(trials)})

        # 1. fixture
        _step(echo, 1, f"fixture dataset for the sweep ({cfg.proxy.dataset})")
        _write_fixture(cfg, echo)

        # 2. sweep (reuse a finished one, resume an interrupted one)
        if reuse:
            _step(echo, 2, f"sweep {cfg.name}: reusing the finished sweep in {cfg.sweep_dir} (--fresh to redo)")
            from topnas.platform.sweep import load_trials

            table_df = load_trials(cfg.sweep_dir)
        else:
            _step(echo, 2, f"sweep {cfg.name}: {cfg.num_samples} trials, {cfg.max_concurrent} at a time, "
                           f"{cfg.sampler}, embedded Ray" + (" (resuming)" if resume else ""))
            with _sweep_view(console, cfg):
                result = run_sweep(cfg, address=None, resume=resume, num_cpus=num_cpus)
            table_df = result.trials
            echo(f"   sweep done in {result.elapsed_s:.0f} s: {result.counts}, hypervolume {result.hypervolume:.4g}")

        fidelity = fidelity_of(cfg)  # what the sweep logged on its parent run, from the same table
        if fidelity is not None:
            echo(f"   {fidelity.summary()}")
            echo(f"   {fidelity.components()}")
            table = Path(fidelity.table)
            echo(f"   (measured on {table.parent.name}/{table.name}: benchmarks/proxy_fidelity.py prints every rung)")

        # 3. front + MLflow UI
        from topnas.platform.pareto_plots import front_mious, front_table

        _step(echo, 3, "Pareto front (val mIoU vs predicted Snapdragon 865 latency)")
        echo(front_table(table_df, "latency_ms", front_only=False))
        if fidelity is not None:
            line = front_resolution(front_mious(table_df), fidelity.seed_noise)
            if line:
                echo(f"   {line}")
        echo(f"   open the MLflow UI (and optuna-dashboard):  topnas ui {cfg.sweep_dir}")
        echo("   then the printed MLflow URL -> run "
             f"{cfg.name} -> Artifacts: pareto_front.png, pareto_front.html, hypervolume.png")

        # 4. promote the knee, train it (scaled down), finalize, accept
        record = P.load_sweep(cfg.name, tracking_uri=uri)
        sel = P.select_trial(record, knee=True)
        promo = P.promote(sel, record, out_dir=out / "promoted", scale_down=str(experiments_dir() / FULL_FIXTURE),
                          max_iters=full_iters)
        _step(echo, 4, f"promote the {sel.rule}: trial {sel.trial_id}, variant {sel.variant_id} (proxy mIoU "
                       f"{sel.value('val_mIoU'):.4f}, {sel.value('latency_ms'):.2f} ms predicted), size class "
                       f"{promo.size.name}")
        echo(f"   160k ADE20K recipe: {promo.yaml_path}")
        echo(f"   scaled-down run:    {promo.train_yaml}")
        echo(f"   registry: {promo.model_name} v{promo.version}, alias challenger")
        echo(f"   full training (scaled down) {promo.run_name} ...")
        with _train_view(console, promo):
            launched = P.launch_local(promo)
        fin = launched.finalized
        echo(f"   final mIoU {fin.final_miou:.4f} (proxy {fin.promoted['proxy_mIoU']:.4f}); ONNX export predicted "
             f"{fin.latency_ms:.2f} ms [{fin.latency_lo:.2f}, {fin.latency_hi:.2f}]; {promo.model_name} "
             f"v{fin.version} = challenger")
        echo("   (the scaled-down run keeps the official 160k recipe's learning rate over a few hundred iterations:"
             " it checks the promotion pipeline; its mIoU is not comparable with the proxy's)")
        decision = P.accept(fin.run_id, tracking_uri=uri, model_name=promo.model_name)
        echo(f"   accept: {decision.reason}")
    elapsed = time.perf_counter() - t0
    echo(f"demo finished in {elapsed / 60:.1f} min; everything is under {out}")
    return DemoResult(out=out, tracking_uri=uri, sweep=cfg.name, front_size=int(table_df["pareto"].sum()),
                      trials=len(table_df), promoted_yaml=promo.yaml_path, train_yaml=promo.train_yaml,
                      challenger=fin.version, champion=decision.champion, full_run_id=fin.run_id,
                      final_miou=fin.final_miou, latency_ms=fin.latency_ms, elapsed_s=elapsed)


def _sweep_view(console: Console | None, cfg) -> contextlib.AbstractContextManager:
    if console is None:
        return contextlib.nullcontext()
    from topnas.platform.liveview import watch_sweep

    return watch_sweep(console, cfg.sweep_dir, cfg.name, cfg.num_samples)


def _train_view(console: Console | None, promo) -> contextlib.AbstractContextManager:
    if console is None:
        return contextlib.nullcontext()
    from topnas.platform.liveview import watch_train
    from topnas.platform.train.train_config import load_config
    from topnas.platform.train.trainer import run_dir_for

    cfg = load_config(promo.train_yaml)
    return watch_train(console, run_dir_for(cfg, promo.run_name), promo.run_name, cfg.schedule.max_iters)


def _step(echo: Callable[[str], None], n: int, text: str) -> None:
    echo(f"[{n}/4] {text}")


def _write_fixture(cfg, echo: Callable[[str], None]) -> None:
    from topnas.platform.data import dataset_dir
    from topnas.platform.train.train_config import FixtureSpec

    root = Path(cfg.proxy.dataset)
    if not cfg.proxy.fixture:
        target = dataset_dir(root)
        if not (target / "images").is_dir():
            raise ConfigError("proxy.dataset", str(root), "an existing dataset or a proxy.fixture spec")
        echo(f"   present: {target}")
        return
    target, written = FixtureSpec.from_dict(cfg.proxy.fixture, "proxy.fixture").ensure(root)
    echo(f"   {'wrote' if written else 'present:'} {target}")


def _sweep_dir_of(sweep_yaml: Path) -> Path:
    """The folder of the sweep ``sweep_yaml`` defines, from its ``name`` and ``storage`` (read, not parsed)."""
    from topnas.platform.paths import sweeps_root
    from topnas.platform.train.train_config import resolve_path
    from topnas.yamlio import read_yaml_mapping

    raw = read_yaml_mapping(sweep_yaml, "sweep config")
    storage = raw.get("storage")
    return sweeps_root(resolve_path(storage) if isinstance(storage, str) else None) / str(raw.get("name")
                                                                                            or sweep_yaml.stem)


def _sweep_status(state_file: Path) -> str | None:
    import json

    from topnas.platform.sweep.layout import SweepStatus

    if not state_file.is_file():
        return None
    try:
        return str(json.loads(state_file.read_text()).get("status") or SweepStatus.RUNNING)
    except (OSError, ValueError):
        return SweepStatus.RUNNING


def _finished_trials(sweep_dir: Path) -> int:
    from topnas.platform.sweep import load_trials

    df = load_trials(sweep_dir)
    return 0 if df.empty else int((df["status"] != TrialStatus.INFEASIBLE).sum())
