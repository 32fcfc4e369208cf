"""The Ray Tune trial function: one proxy training job of one variant (Ray Train V2 runs a
``TorchTrainer`` inside a Tune trial's function, not as a ``Tuner`` trainable).

Runs in a Tune trial actor, which reserves no CPU (``{"cpu": 0, "memory": 200 MiB}``:
with the default 1 CPU per trial, two concurrent trials on two CPUs starve their own training
workers) and which Tune reuses for the next trial once this one has returned (``reuse_actors``
without a rung scheduler, :func:`~.runner._reuse_actors`: no process start, imports or first MLflow
client per trial). The actor takes the variant the searcher
built (:func:`~.searcher.variant_of`), opens the trial's MLflow child run (the training package's
run, nested under the sweep's parent run; the only place it is opened) and logs what is known
before training (sampled point, predicted latency and interval, params, MACs), then runs the proxy training in that run through
:func:`topnas.platform.train.run_training` with a :class:`SweepReportCallback`, so every evaluation
of world-rank 0 reaches Tune (ASHA, the searcher) with the latency beside the mIoU. The driver's
callback closes the run with the trial's status (:mod:`.callback`). The final report also carries
where the trial's time went (``TIMING_KEYS``: before training, in :func:`run_training`), which
``benchmarks/sweep_overhead.py --breakdown`` reads from Tune's ``result.json``.

``proxy.seeds`` k > 1: the trial trains its variant k times, one seed after another, each a Train
run nested under the trial's run, and reports the mean (:func:`train_seeds`).

Resume: the Train run is named ``<trial id>-<variant id>`` under ``<sweep>/train``, so a trial
Tune restarts continues its own checkpoints and MLflow run. A trial whose run already finished
(it ended after Tune's last snapshot, before the kill) is not trained again: its recorded final
evaluation is reported back to Tune instead.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping

from ray.tune.integration.ray_train import TuneReportCallback

from topnas.platform.objectives import TrialStatus
from topnas.platform.sweep import estimates
from topnas.platform.sweep.sweep_config import SweepConfig
from topnas.platform.sweep.searcher import META_KEY, variant_of
from topnas.platform.sweep.tags import ATTEMPTS_TAG, FINAL_ITERATION_TAG, STATUS_TAG
from topnas.platform.sweep.mlflow_runs import (
    SweepTracker,
    child_metrics,
    child_params,
    child_tags,
)

__all__ = ["SEED_RUN_KIND", "TIMING_KEYS", "SweepReportCallback", "TrialContext", "run_name_of", "run_trial",
           "seed_run_name", "train_seeds"]

log = logging.getLogger(__name__)

_REPLAY_STATUSES = (TrialStatus.COMPLETED, TrialStatus.EARLY_STOPPED)
SEED_RUN_KIND = "sweep_trial_seed"  # topnas.kind of the runs of a trial's seeds (proxy.seeds > 1)
SEED_OF_TAG = "topnas.seed_of_trial"
TIMING_KEYS = ("setup_s", "train_s")  # seconds: trial start -> run_training (MLflow run, estimates); run_training


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs from the driver (passed with ``tune.with_parameters``)."""

    cfg: SweepConfig
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    predictor_id: str
    predictor_provenance: str = ""


class SweepReportCallback(TuneReportCallback):
    """Tune's ``TuneReportCallback`` plus constant entries (predicted latency, variant id) per result."""

    def __init__(self, extra: Mapping[str, Any]) -> None:
        super().__init__()
        self._extra = dict(extra)

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        metrics = [{**metrics[0], **self._extra}, *metrics[1:]]
        super().after_report(run_context, metrics, checkpoint)


def run_name_of(trial_id: str, variant_id: str) -> str:
    """Train run folder ``<sweep>/train/<name>`` and MLflow run name of a trial."""
    return f"{trial_id}-{variant_id}"


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """Tune function trainable (see module docstring). Raises when training fails (Tune: ERROR).

    The trial opens its MLflow child run, once, and never closes it or sets its final status: the
    driver's callback does both, from what Tune saw (a result at the full budget, a stop by the
    rung scheduler, an error). A trial the scheduler stopped is torn down by Tune; whatever its
    training raises then is not recorded.
    """
    t_start = time.perf_counter()
    from ray import tune

    from topnas.platform.train import run_training
    from topnas.platform.train.mlflow_logger import open_train_run

    trial_id = tune.get_context().get_trial_id()
    cfg = ctx.cfg
    meta = dict(config[META_KEY])
    point = {k: config[k] for k in cfg.space.parameters()}
    variant = variant_of(config, cfg.space)
    if variant.id != meta["variant_id"]:
        raise RuntimeError(f"trial {trial_id}: the config holds {variant.id}, the searcher proposed "
                           f"{meta['variant_id']}")
    extra = {"variant_id": variant.id, **{k: meta[k] for k in ("latency_ms", "latency_lo", "latency_hi")}}
    tracker = SweepTracker(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id, cfg.name)
    existing = tracker.child_of_trial(trial_id)
    recorded = _recorded_result(tracker, existing, cfg.proxy.iterations) if existing is not None else None
    if recorded is not None:  # its run is closed: neither reopened nor trained (or replayed) again
        log.info("trial %s: already trained (run %s); reporting its recorded result", trial_id, existing.info.run_id)
        tune.report({**recorded, **extra})
        return
    if cfg.replay is not None:  # read the benchmark table instead of training (replay.py)
        from topnas.platform.sweep.replay import run_replay_trial

        run_replay_trial(trial_id, cfg, meta, point, variant, extra, tracker, ctx.predictor_id,
                         ctx.predictor_provenance)
        return

    run_name = run_name_of(trial_id, variant.id)
    attempts = int(existing.data.tags.get(ATTEMPTS_TAG, "0")) + 1 if existing is not None else 1
    tags = {**child_tags(cfg.name, trial_id, meta.get("optuna_trial"), variant, TrialStatus.RUNNING),
            ATTEMPTS_TAG: str(attempts)}
    train_cfg = cfg.train_config(variant, run_name, tracking_uri=ctx.tracking_uri)
    client, run_id, _ = open_train_run(train_cfg, run_name, tracking_uri=ctx.tracking_uri,
                                       parent_run_id=ctx.parent_run_id, extra_tags=tags)
    if "latency_ms" not in client.get_run(run_id).data.metrics:  # first attempt: what is known before training
        from topnas.platform import tracking

        tracking.log_params_batched(client, run_id, child_params(point, variant, meta, ctx.predictor_id,
                                                                     ctx.predictor_provenance))
        tracker.log_metrics(run_id, child_metrics(meta, estimates.complexity_of(variant)), step=0)
    t_train = time.perf_counter()
    if cfg.proxy.seeds > 1:
        final = {**train_seeds(cfg, variant, run_name, trial_id, ctx.tracking_uri, tracker, run_id), **extra}
        final.update(zip(TIMING_KEYS, (t_train - t_start, time.perf_counter() - t_train)))
        tune.report(final)
        return
    result = run_training(train_cfg, run_name=run_name, resume="auto", callbacks=[SweepReportCallback(extra)],
                          tracking_uri=ctx.tracking_uri, mlflow_run_id=run_id)
    # The final evaluation once more, from the trial itself: Train's last report may still sit in the
    # callback queue when fit() returns, and a run resumed at its last checkpoint reports nothing.
    final = {k: v for k, v in {**result.metrics, **extra}.items() if v is not None}
    final.update(zip(TIMING_KEYS, (t_train - t_start, time.perf_counter() - t_train)))
    if "val_mIoU" not in final:  # resumed at its last checkpoint from before evaluations were checkpointed
        last = _last_evaluation(client, run_id)
        if last is None:
            raise RuntimeError(f"trial {trial_id}: training ended without an evaluation (run {run_id})")
        final["val_mIoU"] = last.value
    tune.report(final)


def seed_run_name(run_name: str, seed: int) -> str:
    """Train run folder and MLflow run name of one seed of a trial (``proxy.seeds`` > 1)."""
    return f"{run_name}-seed{seed}"


def train_seeds(cfg: SweepConfig, variant: Any, run_name: str, trial_id: str, tracking_uri: str,
                tracker: SweepTracker, run_id: str) -> dict[str, Any]:
    """Train ``variant`` once per seed, one after another; the trial's result is their mean.

    Each seed is a Train run of its own (``<run>-seed<k>``: checkpoints, resume, MLflow run nested
    under the trial's run, tagged ``topnas.kind`` = ``sweep_trial_seed``), so a killed trial resumes
    each seed where it stopped and a finished seed only reports its result again. The trial's run
    gets, at every evaluation all seeds reached, the mean of ``val_mIoU`` / ``val_mAcc`` / ``val_aAcc``
    over the seeds, plus ``val_mIoU_seed_std`` at the last one; Tune sees only the final mean (rung
    schedulers are refused with ``proxy.seeds`` > 1).
    """
    import numpy as np

    from topnas.platform.train import run_training

    keys = ("val_mIoU", "val_mAcc", "val_aAcc")
    histories: list[dict[str, dict[int, float]]] = []
    iterations = []
    for k in range(cfg.proxy.seeds):
        seed = cfg.seed + k
        name = seed_run_name(run_name, seed)
        seed_cfg = cfg.train_config(variant, name, tracking_uri=tracking_uri, seed_index=k)
        log.info("trial %s: seed %d (%d of %d)", trial_id, seed, k + 1, cfg.proxy.seeds)
        result = run_training(seed_cfg, run_name=name, resume="auto", tracking_uri=tracking_uri,
                              parent_run_id=run_id, extra_tags={"topnas.kind": SEED_RUN_KIND,
                                                                SEED_OF_TAG: trial_id, "topnas.seed": str(seed)})
        iterations.append(result.iteration)
        histories.append({key: {int(m.step): m.value for m in tracker.client.get_metric_history(
            result.mlflow_run_id, key)} for key in keys})
    steps = sorted(set.intersection(*(set(h["val_mIoU"]) for h in histories)))
    if not steps:
        raise RuntimeError(f"trial {trial_id}: its seeds share no evaluation (run {run_id})")
    logged = {int(m.step) for m in tracker.client.get_metric_history(run_id, "val_mIoU")}
    for step in steps:
        if step not in logged:  # a resumed trial logs only what it had not logged yet
            tracker.log_metrics(run_id, {key: float(np.mean([h[key][step] for h in histories]))
                                         for key in keys if all(step in h[key] for h in histories)}, step=step)
    last = steps[-1]
    per_seed = [h["val_mIoU"][last] for h in histories]
    spread = float(np.std(per_seed, ddof=1))
    tracker.log_metrics(run_id, {"val_mIoU_seed_std": spread}, step=last)
    tracker.client.set_tag(run_id, FINAL_ITERATION_TAG, str(min(iterations)))
    final = {key: float(np.mean([h[key][last] for h in histories])) for key in keys
             if all(last in h[key] for h in histories)}
    return {**final, "iteration": last, "val_mIoU_seed_std": spread}


def _recorded_result(tracker: SweepTracker, run: Any, iterations: int) -> dict[str, Any] | None:
    """The last evaluation of a child run the sweep already finished, else None (train it)."""
    tags = run.data.tags
    final = tags.get(FINAL_ITERATION_TAG)  # set by the training job when it reached its last iteration
    done = tags.get(STATUS_TAG) in _REPLAY_STATUSES or (final is not None and int(final) >= iterations)
    if not done:
        return None
    last = _last_evaluation(tracker.client, run.info.run_id)
    if last is None:
        return None
    return {"val_mIoU": last.value, "iteration": int(last.step), "replayed": True}


def _last_evaluation(client: Any, run_id: str) -> Any:
    """The run's latest ``val_mIoU`` metric (highest step, then newest), else None."""
    history = client.get_metric_history(run_id, "val_mIoU")
    return max(history, key=lambda m: (m.step, m.timestamp)) if history else None


