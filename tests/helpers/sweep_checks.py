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
"""
from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

__all__ = ["check_stores_agree", "pareto_show_run_ids"]

_MLFLOW_STATUS = {"completed": "FINISHED", "early_stopped": "KILLED", "failed": ("FAILED", "KILLED"),
                  "infeasible": "FINISHED"}
_STEP_KEYS = ("loss", "lr", "images_per_s", "val_mIoU", "val_mAcc", "val_aAcc")


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
