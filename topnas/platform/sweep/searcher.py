"""Ray Tune's ``OptunaSearch`` made right for a multi-objective, latency-constrained sweep.

What the stock searcher does not do, and this subclass does:

* **Objectives on the searcher only**: ``metric=["val_mIoU", "latency_ms"]``, ``mode=["max", "min"]``;
  the sampler (NSGA-II / TPE / GP) is chosen by name and seeded; the study lives in a SQLite
  :class:`optuna.storages.RDBStorage` under the sweep folder (study name = sweep name).
* **Latency known before training**: the define-by-run space samples a point, builds the variant and
  predicts its latency. Every proposal gets ``Trial.set_constraint("latency_budget", ms - budget)``
  (Optuna 5's replacement for ``constraints_func``). A proposal over the budget is never launched:
  :meth:`suggest` records it (MLflow child run, ``trials.jsonl``, status ``infeasible``), tells
  Optuna (:func:`tell_infeasible`) and asks again, up to ``latency.max_rejections`` times in a row.
  What the sampler then sees depends on how it reads constraints (no sampler is given an mIoU it
  would model as measured):

  - NSGA-II, TPE, random: COMPLETE with the positive constraint. NSGA-II's constrained domination
    ranks every violator after every feasible trial and violators among themselves by violation
    only; c-TPE puts violators in its "bad" group by violation; so the ``val_mIoU`` slot
    (:data:`INFEASIBLE_MIOU`, the reference point's 0) is never read, and ``study.best_trials``
    skips them.
  - GP: FAIL (the constraint kept on the trial). Optuna's GPSampler fits its objective GPs on every
    COMPLETE trial, constraint-violating or not, so any mIoU told for a variant never trained would
    be modelled as a measurement; a FAIL trial is invisible to it.
* **Early-stopped is not complete** (the stock searcher tells Optuna COMPLETE with the last partial
  result, which puts under-trained mIoU on the front): a trial ASHA / MO-ASHA stopped is told PRUNED
  with its partial mIoU and rung only as user attributes (``topnas.partial_val_mIoU``,
  ``topnas.rung``); a failed one FAIL. NSGA-II builds its populations from COMPLETE trials only, GP
  fits COMPLETE trials only, TPE ranks PRUNED trials after every COMPLETE one: only trials at the full
  proxy budget enter a model with their mIoU.
* **Replay** (``replay:``, :mod:`~topnas.platform.sweep.replay`): a proposal whose variant is not
  in the table, or was evaluated already, is told FAIL (``topnas.snapped_to``) and the nearest table
  variant not evaluated yet is enqueued, so the next ask returns it with its own parameters; the
  search ends when the table is used up.
* **No variant trained twice**: a proposal whose variant id this sweep already launched is not
  launched again. It is told FAIL with user attributes ``topnas.status=duplicate``,
  ``topnas.duplicate_of`` (the trial that holds the result) and, when that one completed,
  ``topnas.duplicate_values``: never as a COMPLETE copy, so ``study.best_trials`` lists each
  variant once and equals ``topnas pareto show`` (a COMPLETE copy would put the same variant on the
  study's front two or three times). Optuna is then asked again (counted against
  ``latency.max_rejections``).
* **Resume**: after :meth:`restore`, Optuna trials left RUNNING by the killed driver that no
  restored Tune trial will finish are told FAIL (or, if they were already judged infeasible,
  COMPLETE as above); a trial that Tune re-runs although Optuna already holds its result is not told
  twice.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Mapping

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from topnas.platform.objectives import ABANDONED_PREFIX, OBJECTIVES, TrialStatus
from topnas.platform.sweep import estimates
from topnas.platform.sweep.sweep_config import SweepConfig, make_sampler
from topnas.platform.sweep.layout import OPTUNA_FILE
from topnas.platform.sweep.ledger import Ledger, TrialRecord, trial_status
from topnas.platform.sweep.tags import REASON_TAG
from topnas.platform.sweep.mlflow_runs import (
    SweepTracker,
    child_metrics,
    child_params,
    child_tags,
)

__all__ = ["LATENCY_CONSTRAINT", "INFEASIBLE_MIOU", "META_KEY", "SweepSearch", "open_study", "tell_infeasible",
           "variant_of"]

log = logging.getLogger(__name__)

META_KEY = "topnas"  # the config entry holding what the searcher knows about the proposal
LATENCY_CONSTRAINT = "latency_budget"
INFEASIBLE_MIOU = 0.0  # the val_mIoU slot of an infeasible COMPLETE trial; constrained samplers never read it
STATUS_ATTR = "topnas.status"
# Samplers that fit a model on every COMPLETE trial's values, constraint-violating or not.
VALUE_MODEL_SAMPLERS = ("gp",)


def variant_of(config: Mapping[str, Any], space: Any) -> Any:
    """The :class:`~topnas.search_spaces.Variant` the searcher built for a trial's ``config``.

    The searcher builds each proposal's variant once and hands it on under ``config[META_KEY]
    ["variant"]`` (``Variant.to_dict()``: plain JSON, so Tune's experiment state and
    ``pending.jsonl`` carry it); the trial and the driver's callback read it back instead of
    building it again from the point. A config without it (Tune state saved by an older topnas)
    is built from its point with ``space``.
    """
    from topnas.search_spaces import Variant

    data = (config.get(META_KEY) or {}).get("variant")
    if data is None:
        return space.build({k: config[k] for k in space.parameters()})
    return Variant.from_dict(data, field=f"{META_KEY}.variant")


def tell_infeasible(study: Any, trial: Any, latency_ms: float, sampler: str) -> None:
    """Close an over-budget proposal (its positive constraint already set) the way ``sampler`` reads it.

    See the module docstring: COMPLETE for samplers whose constrained ranking ignores a violator's
    values, FAIL for those that would model the placeholder mIoU as measured.
    """
    from optuna.trial import TrialState

    if sampler in VALUE_MODEL_SAMPLERS:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    else:
        study.tell(trial, [INFEASIBLE_MIOU, float(latency_ms)], state=TrialState.COMPLETE, skip_if_finished=True)


def open_study(cfg: SweepConfig, sampler: Any = None):
    """The sweep's Optuna study (read/write; the sampler matters only for asking)."""
    import optuna

    return optuna.load_study(study_name=cfg.name, storage=_storage(cfg), sampler=sampler)


def _storage(cfg: SweepConfig) -> Any:
    import optuna

    path = cfg.sweep_dir / OPTUNA_FILE
    return optuna.storages.RDBStorage(f"sqlite:///{path.absolute()}")


class SweepSearch(OptunaSearch):
    """OptunaSearch over a :class:`~topnas.search_spaces.SearchSpace` with a latency budget.

    Args:
        cfg: the sweep config (space, sampler, seed, latency budget, proxy budget).
        tracker: the sweep's MLflow writer (for proposals rejected before launch).
        predictor_id: recorded on every child run.
        storage: an Optuna storage; default the sweep's ``optuna.db`` (the in-process benchmark
            driver passes an in-memory one: nothing there resumes).
    """

    def __init__(self, cfg: SweepConfig, tracker: SweepTracker, predictor_id: str, storage: Any = None,
                 predictor_provenance: str = "") -> None:
        cfg.sweep_dir.mkdir(parents=True, exist_ok=True)
        self._cfg = cfg
        self._tracker = tracker
        self._predictor_id = predictor_id
        self._predictor_provenance = predictor_provenance
        self._meta: dict[str, dict[str, Any]] = {}
        self._launched: dict[str, str] = {}  # variant id -> Ray trial id launched by this driver
        super().__init__(
            space=self._define,
            metric=list(OBJECTIVES),
            mode=list(OBJECTIVES.values()),
            sampler=make_sampler(cfg.sampler, cfg.seed, cfg.sampler_options),
            study_name=cfg.name,
            storage=storage if storage is not None else _storage(cfg),
        )

    # ------------------------------------------------------------------ asking
    def _define(self, trial: Any) -> dict[str, Any]:
        """Define-by-run space: the point's categorical choices, plus what is known before training."""
        variant = self._cfg.space.suggest(trial)
        est = estimates.predict(estimates.load_predictor(self._cfg.latency.predictor), variant)
        return {META_KEY: {"variant_id": variant.id, "variant": variant.to_dict(), **est.to_dict()}}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._trials_counted() >= self._cfg.num_samples:
            return Searcher.FINISHED
        budget = self._cfg.latency.budget_ms
        for _ in range(self._cfg.latency.max_rejections):
            config = super().suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            ot_trial = self._ot_trials[trial_id]
            meta = config[META_KEY]
            meta["optuna_trial"] = ot_trial.number
            for key in ("variant_id", "latency_ms", "latency_lo", "latency_hi"):
                ot_trial.set_user_attr(f"topnas.{key}", meta[key])
            if budget is not None:
                ot_trial.set_constraint(LATENCY_CONSTRAINT, meta["latency_ms"] - budget)
            snapped = self._snap_to_table(ot_trial, config)
            if snapped is None:
                return Searcher.FINISHED  # replay: every variant of the table was evaluated
            if snapped:
                pass
            elif self._tell_duplicate(ot_trial, meta):
                pass
            elif budget is None or meta["latency_ms"] <= budget:
                ot_trial.set_user_attr("topnas.ray_trial_id", trial_id)
                ot_trial.set_user_attr(STATUS_ATTR, TrialStatus.RUNNING)
                self._keep_generation(ot_trial)
                self._meta[trial_id] = meta
                self._launched[meta["variant_id"]] = trial_id
                return config
            else:
                self._reject(ot_trial, config)
            del self._ot_trials[trial_id]  # the next super().suggest asks a new Optuna trial
        log.error("latency.max_rejections=%d proposals in a row were over the %s ms budget or already "
                  "evaluated; stopping the search", self._cfg.latency.max_rejections, budget)
        return Searcher.FINISHED

    def _trials_counted(self) -> int:
        """Trials that count towards ``num_samples``: recorded in the ledger (infeasible proposals
        aside) or launched by Tune. The ledger is the truth after a kill: a trial that finished after
        Tune's last experiment snapshot is unknown to the restored Tune run, whose own count would
        launch one trial too many."""
        recorded = {r.trial_id for r in Ledger(self._cfg.sweep_dir).records() if r.status != TrialStatus.INFEASIBLE}
        return len(recorded | set(self._ot_trials))

    def _keep_generation(self, ot_trial: Any) -> None:
        """Give an enqueued (snapped) trial its NSGA-II generation, as the sampler's own asks get it.

        A GA sampler assigns the generation in ``sample_relative``, which Optuna skips for a trial
        whose parameters are all fixed; without it no launched replay trial would ever count towards
        a generation and NSGA-II would stay random. ``get_trial_generation`` is idempotent.
        """
        from optuna.samplers._ga import BaseGASampler

        if isinstance(self._sampler, BaseGASampler):
            frozen = self._ot_study._storage.get_trial(ot_trial._trial_id)
            self._sampler.get_trial_generation(self._ot_study, frozen)

    def _snap_to_table(self, ot_trial: Any, config: Mapping[str, Any]) -> bool | None:
        """Replay: a proposal outside the table, or of a variant already evaluated, is told FAIL and the
        nearest table variant not evaluated yet is enqueued (True); None when none is left."""
        from optuna.trial import TrialState

        if self._cfg.replay is None:
            return False
        from topnas.platform.sweep.replay import load_replay

        table = load_replay(self._cfg)
        evaluated = set(self._launched) | {r.variant_id for r in Ledger(self._cfg.sweep_dir).records()}
        vid = config[META_KEY]["variant_id"]
        if vid in table.curves and vid not in evaluated:
            return False
        left = [v for v in table.curves if v not in evaluated]
        ot_trial.set_user_attr(STATUS_ATTR, TrialStatus.SNAPPED)
        if left:
            target = table.nearest({k: config[k] for k in self._cfg.space.parameters()}, among=left)
            ot_trial.set_user_attr("topnas.snapped_to", target)
        self._ot_study.tell(ot_trial, state=TrialState.FAIL, skip_if_finished=True)
        if not left:
            log.info("replay: every variant of %s was evaluated; stopping the search", self._cfg.replay.table)
            return None
        self._ot_study.enqueue_trial(table.points[target], user_attrs={"topnas.snapped_from": ot_trial.number})
        return True

    def _tell_duplicate(self, ot_trial: Any, meta: Mapping[str, Any]) -> bool:
        """Answer a proposal of an already evaluated variant from the record; True if it was one."""
        from optuna.trial import TrialState

        vid = meta["variant_id"]
        finished = [r for r in Ledger(self._cfg.sweep_dir).records() if r.variant_id == vid]
        if not finished and vid not in self._launched:
            return False
        done = next((r for r in reversed(finished) if r.status in (TrialStatus.COMPLETED, TrialStatus.INFEASIBLE)), None)
        if done is not None:
            source = done.trial_id
        elif vid in self._launched:
            source = self._launched[vid]
        else:
            source = finished[-1].trial_id
        ot_trial.set_user_attr("topnas.duplicate_of", source)
        ot_trial.set_user_attr(STATUS_ATTR, TrialStatus.DUPLICATE)
        if done is not None and done.status == TrialStatus.COMPLETED and done.val_mIoU is not None:
            ot_trial.set_user_attr("topnas.duplicate_values", [float(done.val_mIoU), float(meta["latency_ms"])])
        # FAIL, never a COMPLETE copy: the study's own front must list each variant once (module docstring)
        self._ot_study.tell(ot_trial, state=TrialState.FAIL, skip_if_finished=True)
        log.info("variant %s was already evaluated by trial %s; not launched again", vid, source)
        return True

    def _reject(self, ot_trial: Any, config: Mapping[str, Any]) -> None:
        """Record a proposal over the latency budget; it is never launched, never trained."""
        cfg, meta = self._cfg, config[META_KEY]
        point = {k: config[k] for k in cfg.space.parameters()}
        variant = variant_of(config, cfg.space)
        number = ot_trial.number
        reason = f"predicted {meta['latency_ms']:.2f} ms > latency budget {cfg.latency.budget_ms:g} ms"
        ot_trial.set_user_attr(STATUS_ATTR, TrialStatus.INFEASIBLE)
        record = self._infeasible_record(number, variant, point, meta, reason)
        Ledger(cfg.sweep_dir).append(record)
        tell_infeasible(self._ot_study, ot_trial, meta["latency_ms"], cfg.sampler)
        log.info("trial %s: %s; not trained", record.trial_id, reason)

    def _infeasible_record(self, number: int, variant: Any, point: Mapping[str, Any], meta: Mapping[str, Any],
                           reason: str) -> TrialRecord:
        cfg = self._cfg
        trial_id = f"infeasible-{number}"
        complexity = estimates.complexity_of(variant)
        tags = child_tags(cfg.name, trial_id, number, variant, TrialStatus.INFEASIBLE)
        tags[REASON_TAG] = reason
        run_id, _ = self._tracker.create_child(
            f"sweep:{cfg.name}:optuna:{number}", f"{trial_id}-{variant.id}", tags,
            child_params(point, variant, meta, self._predictor_id, self._predictor_provenance), child_metrics(meta, complexity))
        self._tracker.finish_child(run_id, TrialStatus.INFEASIBLE, reason, "FINISHED")
        return TrialRecord(
            trial_id=trial_id, variant_id=variant.id, status=TrialStatus.INFEASIBLE, reason=reason, optuna_trial=number,
            latency_ms=meta["latency_ms"], latency_lo=meta["latency_lo"], latency_hi=meta["latency_hi"],
            latency_out_of_range=bool(meta.get("out_of_range")), params=complexity["params"],
            macs=complexity["macs"], run_id=run_id, run_name=f"{trial_id}-{variant.id}",
            preset=variant.preset or "", config=variant.to_dict(), point=dict(point))

    # ------------------------------------------------------------------ telling
    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        from optuna.trial import TrialState

        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        self._completed_trials.add(trial_id)
        if not self._is_running(ot_trial.number):
            return  # told before the driver was killed; Tune re-ran (replayed) the trial
        status, reason = trial_status(result, error, self._cfg.proxy.iterations)
        ot_trial.set_user_attr(STATUS_ATTR, status)
        if reason:
            ot_trial.set_user_attr("topnas.status_reason", reason[:1000])
        if status == TrialStatus.COMPLETED:
            latency = self._meta.get(trial_id, {}).get("latency_ms", (result or {}).get("latency_ms"))
            values = [float(result["val_mIoU"]), float(latency)]  # type: ignore[index]
            self._ot_study.tell(ot_trial, values, state=TrialState.COMPLETE, skip_if_finished=True)
        elif status == TrialStatus.EARLY_STOPPED:
            partial = (result or {}).get("val_mIoU")
            if partial is not None and math.isfinite(float(partial)):
                ot_trial.set_user_attr("topnas.partial_val_mIoU", float(partial))
            if (result or {}).get("iteration") is not None:
                ot_trial.set_user_attr("topnas.rung", int(result["iteration"]))
            self._ot_study.tell(ot_trial, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            self._ot_study.tell(ot_trial, state=TrialState.FAIL, skip_if_finished=True)

    def _is_running(self, number: int) -> bool:
        from optuna.trial import TrialState

        return any(t.number == number for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))

    # ------------------------------------------------------------------ resume
    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self.__dict__.setdefault("_launched", {})  # snapshots written before this attribute existed
        live = {t.number for tid, t in self._ot_trials.items() if tid not in self._completed_trials}
        self.fail_stale_trials(live)

    def fail_stale_trials(self, live: set[int] = frozenset()) -> list[int]:
        """Close Optuna trials left RUNNING by a killed driver that no Tune trial will finish.

        ``live`` holds the numbers of the Optuna trials whose Tune trials will be resumed. A stale
        proposal already judged infeasible is told COMPLETE with its constraint (and recorded if the
        kill came before its record); any other is told FAIL. Returns the numbers closed.
        """
        from optuna.trial import TrialState

        closed = []
        for ft in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            if ft.number in live:
                continue
            if ft.user_attrs.get(STATUS_ATTR) == TrialStatus.INFEASIBLE and "topnas.latency_ms" in ft.user_attrs:
                tell_infeasible(self._ot_study, ft.number, ft.user_attrs["topnas.latency_ms"], self._cfg.sampler)
                self._record_stale_infeasible(ft)
            else:  # its status attribute follows, so Optuna never shows a FAIL trial as "running"
                launched = "topnas.ray_trial_id" in ft.user_attrs
                self._ot_study._storage.set_trial_user_attr(ft._trial_id, STATUS_ATTR, TrialStatus.FAILED)
                self._ot_study._storage.set_trial_user_attr(ft._trial_id, "topnas.status_reason", (
                    f"{ABANDONED_PREFIX} the driver was killed after this trial started and before Ray Tune saved it"
                    if launched else f"{ABANDONED_PREFIX} proposed just before the driver was killed, never launched"))
                self._ot_study.tell(ft.number, state=TrialState.FAIL, skip_if_finished=True)
            closed.append(ft.number)
        if closed:
            log.warning("resume: closed %d Optuna trial(s) left running by the killed driver: %s", len(closed), closed)
        return closed

    def _record_stale_infeasible(self, ft: Any) -> None:
        known = {r.trial_id for r in Ledger(self._cfg.sweep_dir).records()}
        if f"infeasible-{ft.number}" in known:
            return
        point = {k: ft.params[k] for k in self._cfg.space.parameters() if k in ft.params}
        variant = self._cfg.space.build(point)
        meta = {k: ft.user_attrs.get(f"topnas.{k}") for k in ("latency_ms", "latency_lo", "latency_hi")}
        reason = f"predicted {meta['latency_ms']:.2f} ms > latency budget {self._cfg.latency.budget_ms:g} ms"
        Ledger(self._cfg.sweep_dir).append(self._infeasible_record(ft.number, variant, point, meta, reason))
