"""Pareto front, hypervolume and knee point for a multi-objective sweep (pure logic, no I/O).

A sweep's trials become :class:`ParetoPoint` records (id, objective values, status). Only
*eligible* points take part in the front and in the hypervolume: status ``"completed"`` and every
objective a finite number. Failed, early-stopped (ASHA-stopped trials report under-trained mIoU),
infeasible (latency budget broken) and unfinished trials are kept out, as are
points with a NaN / missing objective.

Example::

    >>> from topnas.platform.pareto import ParetoPoint, non_dominated, hypervolume
    >>> objs = {"val_mIoU": "max", "latency_ms": "min"}
    >>> pts = [ParetoPoint("a", {"val_mIoU": 0.30, "latency_ms": 10.0}),
    ...        ParetoPoint("b", {"val_mIoU": 0.35, "latency_ms": 20.0}),
    ...        ParetoPoint("c", {"val_mIoU": 0.25, "latency_ms": 30.0})]
    >>> [p.id for p in non_dominated(pts, objs)]
    ['a', 'b']
    >>> round(hypervolume(pts, {"val_mIoU": 0.0, "latency_ms": 40.0}, objs), 6)
    10.0

Conventions
- ``objectives`` maps an objective name to ``"max"`` or ``"min"``; its order is meaningful only for
  :func:`knee_point` tie-breaks (first objective wins).
- Dominance: ``a`` dominates ``b`` when ``a`` is no worse in every objective and strictly better in
  at least one. Equal points never dominate each other, so ties and exact duplicates are all kept;
  :func:`pareto_flags` names the duplicates.
- Internally every objective is turned into a minimisation (``max`` values are negated).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from topnas.errors import ConfigError, check_choice
from topnas.platform.objectives import FINISHED_STATUSES, TrialStatus

__all__ = [
    "DIRECTIONS",
    "ELIGIBLE_STATUS",
    "STATUSES",
    "FINISHED_STATUSES",
    "ParetoFlag",
    "ParetoPoint",
    "check_objectives",
    "default_reference_point",
    "exclusion_reason",
    "hypervolume",
    "hypervolume_history",
    "knee_point",
    "non_dominated",
    "pareto_flags",
    "points_from_records",
    "thin_front",
]

DIRECTIONS = ("max", "min")
ELIGIBLE_STATUS = TrialStatus.COMPLETED
STATUSES = tuple(s.value for s in TrialStatus)  # what each status means: topnas.platform.objectives.TrialStatus


@dataclass(frozen=True)
class ParetoPoint:
    """One trial as the front sees it.

    Args:
        id: unique id of the trial (e.g. the Ray trial id); used in results and tie-breaks.
        objectives: objective name -> value; ``None`` is stored as NaN.
        status: one of :data:`STATUSES`.
    """

    id: str
    objectives: Mapping[str, float]
    status: str = ELIGIBLE_STATUS

    def __post_init__(self) -> None:
        check_choice("status", self.status, STATUSES)
        values = {str(k): _as_float(f"objectives.{k}", v) for k, v in self.objectives.items()}
        object.__setattr__(self, "objectives", values)


@dataclass(frozen=True)
class ParetoFlag:
    """What :func:`pareto_flags` says about one input point (same order as the input).

    ``reason`` is empty for eligible points, else why the point is kept off the front
    (``"status=failed"``, ``"nan:latency_ms"``). ``duplicates`` holds the ids of the *other*
    eligible points whose objective values are exactly equal to this one's.
    """

    id: str
    eligible: bool
    pareto: bool
    reason: str = ""
    duplicates: tuple[str, ...] = field(default_factory=tuple)


def check_objectives(objectives: Mapping[str, str]) -> dict[str, str]:
    """Validate ``{name: "max"|"min"}`` and return it as a plain dict (order kept)."""
    if not isinstance(objectives, Mapping) or not objectives:
        raise ConfigError("objectives", objectives, "a non-empty mapping {name: 'max' | 'min'}")
    for name, direction in objectives.items():
        check_choice(f"objectives.{name}", direction, DIRECTIONS)
    return dict(objectives)


def exclusion_reason(point: ParetoPoint, objectives: Mapping[str, str]) -> str:
    """Empty string when ``point`` may enter the front, else the reason it may not."""
    if point.status != ELIGIBLE_STATUS:
        return f"status={point.status}"
    for name in objectives:
        value = point.objectives.get(name, math.nan)
        if not math.isfinite(value):
            return f"nan:{name}" if math.isnan(value) else f"inf:{name}"
    return ""


def pareto_flags(points: Sequence[ParetoPoint], objectives: Mapping[str, str]) -> list[ParetoFlag]:
    """Eligibility, front membership and exact duplicates for every point, in input order.

    Cost: O(n^2 d) comparisons, vectorised with numpy (a few ms for 1000 trials).
    """
    objectives = check_objectives(objectives)
    _check_unique_ids(points)
    reasons = [exclusion_reason(p, objectives) for p in points]
    idx = [i for i, r in enumerate(reasons) if not r]
    costs = _costs([points[i] for i in idx], objectives)
    on_front = _non_dominated_mask(costs)

    keys = {i: tuple(costs[row].tolist()) for row, i in enumerate(idx)}
    groups: dict[tuple[float, ...], list[str]] = {}
    for i, key in keys.items():
        groups.setdefault(key, []).append(points[i].id)

    front_of = dict(zip(idx, on_front.tolist()))
    flags = []
    for i, p in enumerate(points):
        if reasons[i]:
            flags.append(ParetoFlag(p.id, eligible=False, pareto=False, reason=reasons[i]))
            continue
        dups = tuple(other for other in groups[keys[i]] if other != p.id)
        flags.append(ParetoFlag(p.id, eligible=True, pareto=bool(front_of[i]), duplicates=dups))
    return flags


def non_dominated(points: Sequence[ParetoPoint], objectives: Mapping[str, str]) -> list[ParetoPoint]:
    """The eligible points no other eligible point dominates, in input order.

    Ties and exact duplicates are all kept (see :func:`pareto_flags` for the duplicate ids).
    """
    flags = pareto_flags(points, objectives)
    return [p for p, f in zip(points, flags) if f.pareto]


def thin_front(points: Sequence[ParetoPoint], objectives: Mapping[str, str], objective: str,
               resolution: float) -> list[ParetoPoint]:
    """The front without members whose gain in ``objective`` over a cheaper kept member is within ``resolution``.

    For two objectives, one of them measured with noise (a proxy mIoU with seed noise ``resolution``):
    walking the front from the best value of the other objective, a member is kept only when it
    improves ``objective`` by more than ``resolution`` over the last member kept (epsilon-dominance,
    Laumanns et al. 2002). The first member is always kept; the result is in that walking order.
    ``resolution`` <= 0 or not finite keeps the whole front.
    """
    objectives = check_objectives(objectives)
    if len(objectives) != 2 or objective not in objectives:
        raise ConfigError("objective", objective, f"one of exactly 2 objectives, here {list(objectives)}")
    front = non_dominated(points, objectives)
    other = next(k for k in objectives if k != objective)
    sign_o, sign_k = _sign(objectives[other]), _sign(objectives[objective])
    # best of the other objective first; equal values: best of this one first (it makes the rest redundant)
    order = sorted(front, key=lambda p: (sign_o * p.objectives[other], sign_k * p.objectives[objective], p.id))
    if not (math.isfinite(resolution) and resolution > 0):
        return order
    kept = [order[0]] if order else []
    for p in order[1:]:
        if -sign_k * (p.objectives[objective] - kept[-1].objectives[objective]) > resolution:
            kept.append(p)
    return kept


def hypervolume(
    points: Sequence[ParetoPoint],
    reference_point: Mapping[str, float],
    objectives: Mapping[str, str],
) -> float:
    """Volume of objective space dominated by ``points`` and bounded by ``reference_point``.

    ``reference_point`` is in the objectives' own units and should be worse than every point of
    interest (for ``max`` objectives below, for ``min`` objectives above). Ineligible points are
    ignored, and so is any point that is not strictly better than the reference in every objective
    (it bounds no volume). Passing all points or only the front gives the same value.

    Exact in every dimension: 1-D is a difference, 2-D a sweep after sorting (O(n log n)), and
    d >= 3 slices along the last objective and recurses (HSO / WFG-style slicing without WFG's
    bounding tricks): O(n^(d-1) log n) time, fine for d <= 4 and a few thousand points.
    """
    objectives = check_objectives(objectives)
    ref = _reference_costs(reference_point, objectives)
    usable = [p for p in points if not exclusion_reason(p, objectives)]
    costs = _costs(usable, objectives)
    if costs.size == 0:
        return 0.0
    costs = costs[np.all(costs < ref, axis=1)]
    if costs.size == 0:
        return 0.0
    costs = costs[_non_dominated_mask(costs)]
    return float(_hv(costs, ref))


def hypervolume_history(
    points: Sequence[ParetoPoint],
    reference_point: Mapping[str, float],
    objectives: Mapping[str, str],
) -> list[tuple[int, float]]:
    """Hypervolume after each finished trial, ``points`` given in finishing order.

    Returns ``[(n_finished, hypervolume), ...]`` with one entry per finished point (status in
    :data:`FINISHED_STATUSES`; failed and early-stopped trials count as finished but add no
    volume). Running/pending points are skipped. O(n) hypervolume calls.
    """
    objectives = check_objectives(objectives)
    history: list[tuple[int, float]] = []
    seen: list[ParetoPoint] = []
    front: list[ParetoPoint] = []
    hv = 0.0
    for p in points:
        if p.status not in FINISHED_STATUSES:
            continue
        seen.append(p)
        if not exclusion_reason(p, objectives):
            front = non_dominated(front + [p], objectives)
            hv = hypervolume(front, reference_point, objectives)
        history.append((len(seen), hv))
    return history


def knee_point(points: Sequence[ParetoPoint], objectives: Mapping[str, str]) -> ParetoPoint | None:
    """The front's knee: the point farthest from the line joining the two extremes.

    Needs exactly two objectives. Values are min-max normalised on the front (so units do not
    matter), the extremes are the best point of each objective, and the distance is signed: points
    on the ideal side of the line (a convex bulge) win; on a concave front the least-bad point is
    returned. Dominated and ineligible points are dropped first.

    Small fronts: ``None`` for no eligible point, the point itself for one point. With two points
    (or when several share the largest distance, e.g. a straight front) the tie goes to the best
    value of the *first* objective in ``objectives``, then to the smaller id, so with
    ``{"val_mIoU": "max", "latency_ms": "min"}`` the more accurate variant is chosen.
    """
    objectives = check_objectives(objectives)
    if len(objectives) != 2:
        raise ConfigError("objectives", list(objectives), "exactly 2 objectives for knee_point")
    front = non_dominated(points, objectives)
    if not front:
        return None
    costs = _costs(front, objectives)
    lo, hi = costs.min(axis=0), costs.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    norm = (costs - lo) / span
    a = norm[np.argmin(costs[:, 0])]  # best in objective 1
    b = norm[np.argmin(costs[:, 1])]  # best in objective 2
    direction = b - a
    length = float(np.hypot(*direction))
    if length == 0.0:
        dist = np.zeros(len(front))
    else:
        # Signed distance, positive toward the ideal corner (0, 0) of the normalised space.
        cross = direction[0] * (norm[:, 1] - a[1]) - direction[1] * (norm[:, 0] - a[0])
        ideal_side = direction[0] * (0.0 - a[1]) - direction[1] * (0.0 - a[0])
        dist = cross / length * (1.0 if ideal_side >= 0 else -1.0)
    order = sorted(
        range(len(front)),
        key=lambda i: (-round(float(dist[i]), 12), float(costs[i, 0]), front[i].id),
    )
    return front[order[0]]


def default_reference_point(
    points: Sequence[ParetoPoint],
    objectives: Mapping[str, str],
    budgets: Mapping[str, float] | None = None,
    margin: float = 0.1,
) -> dict[str, float]:
    """A reference point for :func:`hypervolume` that stays fixed while a sweep runs.

    Per objective: a value in ``budgets`` (the worst acceptable value, e.g. the latency budget)
    wins. Otherwise a ``max`` objective uses 0 (mIoU cannot be lower), or ``min - margin*|min|``
    if some value is negative; a ``min`` objective uses ``(1 + margin) * max observed`` (for
    latency: 1.1 x the slowest eligible trial). A ``min`` objective without a budget needs at
    least one eligible point.
    """
    objectives = check_objectives(objectives)
    budgets = dict(budgets or {})
    unknown = sorted(set(budgets) - set(objectives))
    if unknown:
        raise ConfigError(f"budgets.{unknown[0]}", budgets[unknown[0]], sorted(objectives))
    if not (isinstance(margin, (int, float)) and margin >= 0):
        raise ConfigError("margin", margin, "a number >= 0")
    usable = [p for p in points if not exclusion_reason(p, objectives)]
    ref: dict[str, float] = {}
    for name, direction in objectives.items():
        if name in budgets:
            ref[name] = _as_float(f"budgets.{name}", budgets[name])
            if not math.isfinite(ref[name]):
                raise ConfigError(f"budgets.{name}", budgets[name], "a finite number")
            continue
        values = [p.objectives[name] for p in usable]
        if direction == "max":
            low = min(values, default=0.0)
            ref[name] = 0.0 if low >= 0 else low - margin * abs(low)
        else:
            if not values:
                raise ConfigError(
                    "points", "<no completed point with finite objectives>",
                    f"at least one, or budgets[{name!r}]",
                )
            high = max(values)
            if high > 0:
                ref[name] = (1.0 + margin) * high
            elif high < 0:
                ref[name] = high + margin * abs(high)
            else:
                ref[name] = margin or 1.0
    return ref


def points_from_records(
    records: Iterable[Mapping[str, Any]],
    objectives: Mapping[str, str],
    id_key: str = "trial_id",
    status_key: str = "status",
) -> list[ParetoPoint]:
    """Build points from dict-like rows (e.g. ``df.to_dict("records")``); missing values -> NaN."""
    objectives = check_objectives(objectives)
    out = []
    for i, row in enumerate(records):
        if id_key not in row:
            raise ConfigError(f"records[{i}]", "<no id>", f"a row with key {id_key!r}")
        out.append(
            ParetoPoint(
                id=str(row[id_key]),
                objectives={n: row.get(n) for n in objectives},
                status=str(row.get(status_key, ELIGIBLE_STATUS)),
            )
        )
    return out


# --------------------------------------------------------------------------- internals


def _as_float(field_name: str, value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise ConfigError(field_name, value, "a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(field_name, value, "a number") from None


def _sign(direction: str) -> float:
    return -1.0 if direction == "max" else 1.0


def _costs(points: Sequence[ParetoPoint], objectives: Mapping[str, str]) -> np.ndarray:
    """n x d array, every objective as a minimisation."""
    names = list(objectives)
    if not points:
        return np.zeros((0, len(names)))
    return np.array(
        [[_sign(objectives[n]) * p.objectives[n] for n in names] for p in points], dtype=float
    )


def _reference_costs(reference_point: Mapping[str, float], objectives: Mapping[str, str]) -> np.ndarray:
    if not isinstance(reference_point, Mapping):
        raise ConfigError("reference_point", reference_point, f"a mapping with keys {list(objectives)}")
    if set(reference_point) != set(objectives):
        raise ConfigError("reference_point", sorted(reference_point), f"exactly the keys {list(objectives)}")
    values = []
    for name in objectives:
        v = _as_float(f"reference_point.{name}", reference_point[name])
        if not math.isfinite(v):
            raise ConfigError(f"reference_point.{name}", reference_point[name], "a finite number")
        values.append(_sign(objectives[name]) * v)
    return np.array(values, dtype=float)


def _non_dominated_mask(costs: np.ndarray) -> np.ndarray:
    """True where no other row is <= everywhere and < somewhere (duplicates survive)."""
    n = len(costs)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        no_worse = np.all(costs <= costs[i], axis=1)
        better = np.any(costs < costs[i], axis=1)
        if np.any(no_worse & better):
            mask[i] = False
    return mask


def _check_unique_ids(points: Sequence[ParetoPoint]) -> None:
    seen: set[str] = set()
    for p in points:
        if not isinstance(p, ParetoPoint):
            raise ConfigError("points", type(p).__name__, "ParetoPoint records (see points_from_records)")
        if p.id in seen:
            raise ConfigError("points.id", p.id, "unique ids (one per trial)")
        seen.add(p.id)


def _hv(costs: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of mutually non-dominated minimisation ``costs`` (all < ``ref``)."""
    n, d = costs.shape
    if n == 0:
        return 0.0
    if d == 1:
        return float(ref[0] - costs[:, 0].min())
    if d == 2:
        order = np.lexsort((costs[:, 1], costs[:, 0]))  # by x, then y
        area, best_y = 0.0, ref[1]
        for x, y in costs[order]:
            if y < best_y:
                area += (ref[0] - x) * (best_y - y)
                best_y = y
        return float(area)
    # Slice along the last objective: between consecutive values the cross-section is the
    # (d-1)-D hypervolume of every point at or below the slice.
    order = np.argsort(costs[:, -1], kind="stable")
    sorted_costs = costs[order]
    volume = 0.0
    for k in range(n):
        top = sorted_costs[k + 1, -1] if k + 1 < n else ref[-1]
        depth = top - sorted_costs[k, -1]
        if depth <= 0:
            continue
        section = sorted_costs[: k + 1, :-1]
        section = section[_non_dominated_mask(section)]
        volume += _hv(section, ref[:-1]) * depth
    return float(volume)


def finite_or_none(value: Any) -> float | None:
    """A float for finite numbers (incl. numeric strings), None for NaN, inf, None and junk."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
