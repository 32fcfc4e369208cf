"""Successive halving at rungs, on (val_mIoU, predicted latency) or on val_mIoU alone.

Rung rule (MO-ASHA, Schmucker et al. 2021; Syne Tune's ``MOASHA`` ranks a rung by non-dominated sort
and keeps the top ``1/eta`` of it): when a trial's evaluation lands on rung ``r`` it is compared with
every trial that reached ``r`` before it (asynchronous, like Ray's ASHA: the first trial at a rung
always continues). Candidates are ordered by

1. non-dominated rank on (max ``val_mIoU`` at ``r``, min ``latency_ms``) - Optuna's fast
   non-dominated sort, as NSGA-II uses it;
2. within a rank, hypervolume contribution (the volume the rank would lose without the point,
   :func:`topnas.platform.pareto.hypervolume` against the sweep's reference point), largest first;
3. then higher mIoU, lower latency, earlier arrival.

The trial continues (is promoted) when it sits in the top ``ceil(n / eta)`` of the ``n`` candidates,
and **always when it is non-dominated at its rung**: a fast variant on the rung's front is never
stopped for its mIoU alone. Two differences from Syne Tune's MOASHA, which orders a rung by
non-dominated sort with an epsilon-net inside each front and stops a trial whose rank is below the
top ``1/eta``: the tie-break here is hypervolume contribution, and a front member is never stopped
even when the front holds more than ``n/eta`` trials. ``objectives=("val_mIoU",)`` gives mIoU-only ASHA with the same rungs,
record and resume, which is what ``scheduler: {name: asha}`` runs.

A trial's final evaluation (``iteration >= final_iteration``) is never a stop decision, and rungs
sit strictly below the budget, so trials are only compared at equal training (an under-trained
mIoU compared with a fully trained one would favour whoever trained longest).

Every decision is appended to ``<sweep>/rungs.jsonl`` (:class:`RungLog`) before it is returned:
that file is the scheduler's state after a driver kill (Tune restores its scheduler from the
pickle made when the experiment started, so in-memory rungs would be empty), the rung and rung
front of each early-stopped trial in the ledger and MLflow, and ``topnas pareto show --rung K``.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from topnas.platform import pareto as P
from topnas.platform.objectives import OBJECTIVES, TrialStatus
from topnas.platform.sweep.layout import RUNG_FILE, SweepFolder
from topnas.platform.sweep.tags import RUNG_FRONT_TAG, RUNG_TAG

__all__ = ["RUNG_FILE", "RungEntry", "RungLog", "RungScheduler", "rank_rung", "record_stop", "rung_decision",
           "rung_frame", "rung_front", "stop_info"]

CONTINUE, STOP = "continue", "stop"


@dataclass
class RungEntry:
    """One trial arriving at one rung, and what the scheduler decided."""

    trial_id: str
    rung: int
    val_mIoU: float
    latency_ms: float
    decision: str  # continue | stop
    variant_id: str = ""
    scheduler: str = ""  # asha | moasha
    front: list[str] = field(default_factory=list)  # trial ids on the rung's front at decision time
    at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class RungLog:
    """Append-only ``rungs.jsonl``; the first decision per (trial, rung) is the one that counts."""

    def __init__(self, sweep_dir: str | os.PathLike[str]) -> None:
        self.path = SweepFolder(sweep_dir).rungs

    def append(self, entry: RungEntry) -> None:
        entry.at = entry.at or time.time()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(entry.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())

    def entries(self) -> list[RungEntry]:
        if not self.path.is_file():
            return []
        seen: dict[tuple[str, int], RungEntry] = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                e = RungEntry(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue  # a line cut by a kill mid-write
            seen.setdefault((e.trial_id, e.rung), e)
        return list(seen.values())


# ----------------------------------------------------------------------------- pure rung logic
def _points(rows: Sequence[Mapping[str, Any]], objectives: Mapping[str, str]) -> list[P.ParetoPoint]:
    return [P.ParetoPoint(str(r["trial_id"]), {k: r[k] for k in objectives}) for r in rows]


def _contributions(points: list[P.ParetoPoint], reference: Mapping[str, float],
                   objectives: Mapping[str, str]) -> list[float]:
    total = P.hypervolume(points, reference, objectives)
    return [total - P.hypervolume(points[:i] + points[i + 1:], reference, objectives) for i in range(len(points))]


def rank_rung(rows: Sequence[Mapping[str, Any]], reference: Mapping[str, float],
              objectives: Mapping[str, str] = OBJECTIVES) -> tuple[list[int], list[int]]:
    """``(order, ranks)``: row indices best first, and each row's non-dominated rank (0 = front).

    ``rows`` hold ``trial_id`` and the objectives, in arrival order (see module docstring).
    """
    from optuna.study._multi_objective import _fast_non_domination_rank

    if not rows:
        return [], []
    names = list(objectives)
    ref = {k: reference[k] for k in names}
    loss = np.array([[(-1.0 if objectives[k] == "max" else 1.0) * float(r[k]) for k in names] for r in rows])
    ranks = _fast_non_domination_rank(loss).tolist()
    contrib = [0.0] * len(rows)
    for level in set(ranks):
        idx = [i for i, k in enumerate(ranks) if k == level]
        for i, c in zip(idx, _contributions(_points([rows[i] for i in idx], objectives), ref, objectives)):
            contrib[i] = c
    order = sorted(range(len(rows)), key=lambda i: (ranks[i], -contrib[i], *loss[i].tolist(), i))
    return order, ranks


def rung_decision(rows: Sequence[Mapping[str, Any]], reduction_factor: float, reference: Mapping[str, float],
                  objectives: Mapping[str, str] = OBJECTIVES) -> str:
    """Continue or stop the LAST row (the trial arriving) against the rows before it."""
    n = len(rows)
    if n <= 1:
        return CONTINUE
    order, ranks = rank_rung(rows, reference, objectives)
    if ranks[-1] == 0:
        return CONTINUE  # non-dominated at its rung: never stopped
    return CONTINUE if order.index(n - 1) < math.ceil(n / reduction_factor) else STOP


def rung_front(entries: Iterable[RungEntry], rung: int) -> list[RungEntry]:
    """Entries at ``rung`` that no other entry there dominates on (val_mIoU, latency_ms)."""
    at = [e for e in entries if e.rung == rung]
    front = {p.id for p in P.non_dominated(_points([asdict(e) for e in at], OBJECTIVES), OBJECTIVES)}
    return [e for e in at if e.trial_id in front]


def stop_info(sweep_dir: str | os.PathLike[str], trial_id: str) -> tuple[int | None, list[str]]:
    """``(rung, front trial ids)`` of the decision that stopped ``trial_id``; ``(None, [])`` if none did."""
    stops = [e for e in RungLog(sweep_dir).entries() if e.trial_id == trial_id and e.decision == STOP]
    if not stops:
        return None, []
    e = min(stops, key=lambda x: x.rung)
    return e.rung, list(e.front)


# ----------------------------------------------------------------------------- Ray Tune scheduler
class RungScheduler(FIFOScheduler):
    """Ray Tune ``TrialScheduler``: ASHA-style rungs decided by :func:`rung_decision` (module docstring).

    Args:
        sweep_dir: where ``rungs.jsonl`` lives (the state restored after a driver kill).
        rungs: rung iterations, each an evaluation iteration below ``final_iteration``.
        final_iteration: the full proxy budget (never a stop decision).
        reduction_factor: ``eta``; the top ``ceil(n / eta)`` of a rung continues.
        reference_point: hypervolume reference for the contribution tie-break.
        objectives: ``OBJECTIVES`` (MO-ASHA) or ``{"val_mIoU": "max"}`` (mIoU-only ASHA).
    """

    def __init__(self, sweep_dir: str | os.PathLike[str], rungs: Sequence[int], final_iteration: int,
                 reduction_factor: float, reference_point: Mapping[str, float],
                 objectives: Mapping[str, str] = OBJECTIVES, time_attr: str = "iteration") -> None:
        super().__init__()
        self.sweep_dir = str(sweep_dir)
        self.rungs = tuple(int(r) for r in rungs)
        self.final_iteration = int(final_iteration)
        self.reduction_factor = float(reduction_factor)
        self.reference_point = {k: float(v) for k, v in reference_point.items()}
        self.objectives = dict(objectives)
        self.time_attr = time_attr
        self.name = "moasha" if "latency_ms" in self.objectives else "asha"
        self._entries: dict[tuple[str, int], RungEntry] | None = None  # loaded lazily from rungs.jsonl

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_entries": None}  # the file, not a pickle, is the state

    def _state(self) -> dict[tuple[str, int], RungEntry]:
        if self._entries is None:
            self._entries = {(e.trial_id, e.rung): e for e in RungLog(self.sweep_dir).entries()}
        return self._entries

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = self.decide(str(trial.trial_id), result)
        return TrialScheduler.STOP if decision == STOP else TrialScheduler.CONTINUE

    def decide(self, trial_id: str, result: Mapping[str, Any]) -> str:
        """The rung decision for one result (``continue`` off rungs); recorded before it is returned."""
        it = result.get(self.time_attr)
        if it is None or int(it) >= self.final_iteration or int(it) not in self.rungs:
            return CONTINUE
        rung, state = int(it), self._state()
        if (trial_id, rung) in state:  # re-reported after a resume: the decision stands
            return state[(trial_id, rung)].decision
        row = {"trial_id": trial_id, "val_mIoU": float(result["val_mIoU"]),
               "latency_ms": float(result.get("latency_ms", math.nan))}
        peers = [e for e in state.values() if e.rung == rung]
        rows = [{"trial_id": e.trial_id, "val_mIoU": e.val_mIoU, "latency_ms": e.latency_ms} for e in peers]
        decision = rung_decision([*rows, row], self.reduction_factor, self.reference_point, self.objectives)
        entry = RungEntry(trial_id, rung, row["val_mIoU"], row["latency_ms"], decision,
                          variant_id=str(result.get("variant_id", "")), scheduler=self.name)
        entry.front = [e.trial_id for e in rung_front([*peers, entry], rung)]
        RungLog(self.sweep_dir).append(entry)
        state[(trial_id, rung)] = entry
        return decision

    def debug_string(self) -> str:
        return f"{self.name}: rungs {list(self.rungs)}, eta {self.reduction_factor:g}"


def record_stop(sweep_dir: str | os.PathLike[str], trial_id: str, tracker: Any, run_id: str) -> dict[str, Any]:
    """Tag an early-stopped trial's MLflow run with its rung and rung front; the ledger fields.

    Returns ``{"rung": ..., "rung_front": [...]}`` for :class:`~topnas.platform.sweep.ledger.TrialRecord`
    (``{}`` when no rung decision stopped the trial, e.g. a sweep without a rung scheduler).
    """
    rung, front = stop_info(sweep_dir, trial_id)
    if rung is None:
        return {}
    tracker.client.set_tag(run_id, RUNG_TAG, str(rung))
    tracker.client.set_tag(run_id, RUNG_FRONT_TAG, ",".join(front)[:5000])
    return {"rung": rung, "rung_front": front}


def rung_frame(sweep_dir: str | os.PathLike[str], rung: int):
    """Every trial that reached ``rung`` (its mIoU there), ``pareto`` = on the rung's front.

    Columns follow :mod:`topnas.platform.pareto_plots` (``front_table`` prints it); ``status`` is
    the rung decision and, after a slash, the trial's final status from the ledger.
    """
    import pandas as pd

    from topnas.errors import ConfigError
    from topnas.platform.pareto_plots import COLUMNS
    from topnas.platform.sweep.ledger import Ledger

    entries = RungLog(sweep_dir).entries()
    rungs = sorted({e.rung for e in entries})
    if rung not in rungs:
        raise ConfigError("--rung", rung, rungs or "a rung some trial reached (none yet: no rung scheduler ran)")
    records = {r.trial_id: r for r in Ledger(sweep_dir).records()}
    front = {e.trial_id for e in rung_front(entries, rung)}
    rows = []
    for e in (e for e in entries if e.rung == rung):
        rec = records.get(e.trial_id)
        rows.append({
            "trial_id": e.trial_id, "variant_id": e.variant_id or (rec.variant_id if rec else ""),
            "status": f"{e.decision}/{rec.status if rec else TrialStatus.RUNNING}", "val_mIoU": e.val_mIoU,
            "latency_ms": e.latency_ms, "latency_lo": rec.latency_lo if rec else None,
            "latency_hi": rec.latency_hi if rec else None, "params": rec.params if rec else None,
            "macs": rec.macs if rec else None, "run_id": rec.run_id if rec else "",
            "preset": rec.preset if rec else "", "config": "", "pareto": e.trial_id in front,
        })
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype({"latency_lo": float, "latency_hi": float,
                                                             "params": float, "macs": float})
