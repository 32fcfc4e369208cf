"""After any kill and resume, every store of a sweep tells the same story (issue: kill and resume).

:func:`check_stores_agree` reads the sweep folder (``trials.jsonl``, ``pending.jsonl``), the MLflow
runs on the tracking server and the Optuna study, and asserts:

* one ledger line per trial, nothing left pending;
* every child run's ``topnas.status`` and MLflow status are the ledger's; no child, no Optuna trial
  is still ``running``;
* no metric step logged twice in any child run (replayed iterations keep their first value);
* every Optuna trial named by the ledger is in the matching state with the recorded values;
* the study's own Pareto front (``study.best_trials``) is exactly the front ``topnas pareto show``
  prints (same run ids, each variant once).

:func:`check_runs_opened_and_closed_once` reads the ``MlflowClient`` calls that every process of a
sweep recorded (``tests/helpers/mlflow_calls``, switched on by :func:`record_mlflow_calls`): each
trial's run is opened once, by the trial, and closed once, by the driver.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

__all__ = ["check_runs_across_a_kill", "check_runs_opened_and_closed_once", "check_stores_agree", "pareto_show_run_ids", "read_mlflow_calls",
           "record_mlflow_calls", "trials_created"]

_MLFLOW_STATUS = {"completed": "FINISHED", "early_stopped": "KILLED", "failed": ("FAILED", "KILLED"),
                  "infeasible": "FINISHED"}
_STEP_KEYS = ("loss", "lr", "images_per_s", "val_mIoU", "val_mAcc", "val_aAcc")
_CALLS_DIR = Path(__file__).resolve().parent / "mlflow_calls"
_TERMINAL = {"FINISHED", "FAILED", "KILLED"}


def record_mlflow_calls(env: Mapping[str, str], calls: Path) -> dict[str, str]:
    """``env`` plus what makes every Python process started with it record its MlflowClient calls in ``calls``."""
    root = str(_CALLS_DIR.parents[2])
    return {**env, "TOPNAS_TEST_MLFLOW_CALLS": str(calls),
            "PYTHONPATH": os.pathsep.join([str(_CALLS_DIR), root, env.get("PYTHONPATH", "")])}


def read_mlflow_calls(calls: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def trials_created(calls: list[dict[str, Any]]) -> Counter:
    """Trial id -> how many runs were created for it in ``calls``."""
    return Counter(c["tags"]["topnas.trial_id"] for c in calls
                   if c["call"] == "create_run" and "topnas.trial_id" in c.get("tags", {}))


def check_runs_opened_and_closed_once(records: Mapping[str, Any], calls: list[dict[str, Any]],
                                      uri: str) -> dict[str, str]:
    """Per trial of ``records`` (trial id -> ledger record): one run created in ``calls``, by a Ray worker
    (the trial); its status set terminal once, by the driver; never set back to running; the run's status
    and ``topnas.status`` tag are the ledger's. Returns trial id -> run id."""
    from mlflow import MlflowClient

    created = {c["tags"]["topnas.trial_id"]: c for c in calls
               if c["call"] == "create_run" and "topnas.trial_id" in c.get("tags", {})}
    per_trial = trials_created(calls)
    client = MlflowClient(tracking_uri=uri)
    for trial_id, rec in records.items():
        assert per_trial[trial_id] == 1, (trial_id, per_trial)
        run_id = created[trial_id]["run_id"]
        assert run_id == rec.run_id
        assert created[trial_id]["ray_worker"], "the trial (a Ray worker) opens its run"
        closes = [c for c in calls if c["run_id"] == run_id and c["call"] in ("set_terminated", "update_run")
                  and c["status"] in _TERMINAL]
        reopens = [c for c in calls if c["run_id"] == run_id and c["call"] == "update_run"
                   and c["status"] not in _TERMINAL]
        assert len(closes) == 1 and not reopens, (trial_id, rec.status, closes, reopens)
        assert not closes[0]["ray_worker"], "the driver closes the run"
        run = client.get_run(run_id)
        assert run.info.status == closes[0]["status"]
        assert run.data.tags["topnas.status"] == rec.status
    return {t: created[t]["run_id"] for t in records}



def check_runs_across_a_kill(before: Mapping[str, Any], records: Mapping[str, Any], calls: tuple[list, list],
                             uri: str, trained: tuple[str, ...]) -> tuple[dict[str, str], dict[str, Any]]:
    """:func:`check_runs_opened_and_closed_once` for every trial that one driver ran from start to end.

    ``before``: the trials finished before the kill, checked in the first driver's ``calls[0]``; the
    resumed driver must not touch their runs. The trials the resume started (a status in ``trained``:
    an abandoned trial never started) are checked in ``calls[1]``. A trial training at the kill spans
    both drivers; :func:`check_stores_agree` covers it. Returns (trial id -> run id, the resume's trials).
    """
    first, resumed = calls
    runs = check_runs_opened_and_closed_once(before, first, uri)
    assert not {c["run_id"] for c in resumed} & set(runs.values()), "the resume touched a finished trial's run"
    fresh = {t: r for t, r in records.items() if t not in trials_created(first) and r.status in trained}
    runs.update(check_runs_opened_and_closed_once(fresh, resumed, uri))
    return runs, fresh

def pareto_show_run_ids(folder: Path) -> tuple[int, set[str]]:
    """``(exit code, run ids in the table)`` of ``topnas pareto show <folder>`` run through the CLI main."""
    from topnas.platform.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["pareto", "show", str(folder)])
    return rc, set(re.findall(r"\b[0-9a-f]{32}\b", out.getvalue()))


def check_stores_agree(folder: Path, uri: str) -> dict[str, int]:
    """Assert the module docstring's rules; returns a few counts for the test's own checks."""
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    from topnas.platform.sweep import Ledger
    from topnas.platform.sweep.layout import SweepState
    from topnas.platform.sweep.ledger import PendingTrials

    lines = [json.loads(x) for x in (folder / "trials.jsonl").read_text().splitlines() if x.strip()]
    ids = [x["trial_id"] for x in lines]
    assert len(ids) == len(set(ids)), f"a trial has two ledger lines: {sorted(i for i in ids if ids.count(i) > 1)}"
    assert PendingTrials(folder).entries() == [], "finished trials left unrecorded"
    records = Ledger(folder).records()
    state = SweepState.load(folder)

    client = MlflowClient(tracking_uri=uri)
    children = client.search_runs([state.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{state.parent_run_id}'",
                                  max_results=1000)
    by_run = {c.info.run_id: c for c in children}
    assert not [c.info.run_name for c in children if c.data.tags.get("topnas.status") == "running"]
    for r in records:
        child = by_run[r.run_id]
        assert child.data.tags["topnas.status"] == r.status, (r.trial_id, child.data.tags["topnas.status"], r.status)
        allowed = _MLFLOW_STATUS[r.status]
        assert child.info.status in (allowed if isinstance(allowed, tuple) else (allowed,)), (r.trial_id, r.status,
                                                                                              child.info.status)
    steps_checked = 0
    for child in children:
        for key in _STEP_KEYS:
            if key not in child.data.metrics:
                continue
            steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
            dup = sorted({s for s in steps if steps.count(s) > 1})
            assert not dup, f"run {child.info.run_name}: {key} logged twice at steps {dup}"
            steps_checked += len(steps)

    study = optuna.load_study(study_name=state.name, storage=f"sqlite:///{folder / 'optuna.db'}")
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert not [n for n, t in trials.items() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert not [n for n, t in trials.items() if t.user_attrs.get("topnas.status") == "running"]
    for r in records:
        if r.optuna_trial is None:
            continue
        t = trials[r.optuna_trial]
        if r.status == "completed":
            assert t.state == TrialState.COMPLETE and t.values[0] == pytest.approx(r.val_mIoU)
        elif r.status == "early_stopped":
            assert t.state == TrialState.PRUNED
        elif r.status == "failed":
            assert t.state == TrialState.FAIL, (r.trial_id, t.state)
        assert t.user_attrs.get("topnas.status", r.status) == r.status, (r.trial_id, t.user_attrs, r.status)
    run_of_trial = {r.optuna_trial: r.run_id for r in records if r.optuna_trial is not None}
    study_front = {run_of_trial[t.number] for t in study.best_trials}
    assert len(study_front) == len(study.best_trials), "a study trial on the front has no ledger record"
    rc, shown = pareto_show_run_ids(folder)
    shown.discard(state.parent_run_id)  # the table's last line names the parent run
    assert rc == 0 and shown, "topnas pareto show printed no front"
    assert study_front == shown, f"study.best_trials {sorted(study_front)} != pareto show {sorted(shown)}"
    return {"records": len(records), "children": len(children), "front": len(shown), "steps": steps_checked}
