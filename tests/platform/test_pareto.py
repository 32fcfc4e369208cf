"""Hand-checked cases for the non-dominated set, hypervolume and knee point."""
from __future__ import annotations

import itertools
import math
import random

import pytest

from topnas.errors import ConfigError
from topnas.platform.pareto import (
    ParetoPoint,
    default_reference_point,
    hypervolume,
    hypervolume_history,
    knee_point,
    non_dominated,
    pareto_flags,
    points_from_records,
)

OBJ = {"acc": "max", "lat": "min"}


def P(pid: str, acc: float | None, lat: float | None, status: str = "completed") -> ParetoPoint:
    return ParetoPoint(pid, {"acc": acc, "lat": lat}, status)


def ids(points) -> list[str]:
    return [p.id for p in points]


# --------------------------------------------------------------------------- front


def test_simple_2d_front():
    pts = [P("a", 0.30, 10), P("b", 0.35, 20), P("c", 0.25, 30), P("d", 0.40, 40), P("e", 0.33, 25)]
    assert ids(non_dominated(pts, OBJ)) == ["a", "b", "d"]


def test_direction_matters():
    pts = [P("a", 0.30, 10), P("b", 0.35, 20)]
    assert ids(non_dominated(pts, {"acc": "min", "lat": "min"})) == ["a"]
    assert ids(non_dominated(pts, {"acc": "max", "lat": "max"})) == ["b"]


def test_tie_in_one_objective_keeps_only_the_better_other():
    pts = [P("a", 0.30, 10), P("b", 0.30, 12), P("c", 0.28, 10)]
    assert ids(non_dominated(pts, OBJ)) == ["a"]


def test_exact_duplicates_both_kept_and_flagged():
    pts = [P("a", 0.30, 10), P("b", 0.30, 10), P("c", 0.20, 20)]
    flags = pareto_flags(pts, OBJ)
    assert [f.pareto for f in flags] == [True, True, False]
    assert flags[0].duplicates == ("b",)
    assert flags[1].duplicates == ("a",)
    assert flags[2].duplicates == ()


def test_dominated_duplicates_flagged_but_off_front():
    pts = [P("a", 0.40, 5), P("b", 0.30, 10), P("c", 0.30, 10)]
    flags = pareto_flags(pts, OBJ)
    assert [f.pareto for f in flags] == [True, False, False]
    assert flags[1].duplicates == ("c",)


def test_nan_and_missing_objectives_excluded():
    pts = [P("a", 0.30, 10), P("nan", math.nan, 1), P("none", 0.99, None),
           ParetoPoint("missing", {"acc": 0.99})]
    flags = pareto_flags(pts, OBJ)
    assert [f.pareto for f in flags] == [True, False, False, False]
    assert [f.reason for f in flags] == ["", "nan:acc", "nan:lat", "nan:lat"]
    assert ids(non_dominated(pts, OBJ)) == ["a"]


@pytest.mark.parametrize("status", ["failed", "early_stopped", "infeasible", "running", "pending"])
def test_non_completed_excluded_even_if_they_would_dominate(status):
    pts = [P("a", 0.30, 10), P("x", 0.99, 1, status)]
    flags = pareto_flags(pts, OBJ)
    assert ids(non_dominated(pts, OBJ)) == ["a"]
    assert flags[1].eligible is False and flags[1].reason == f"status={status}"


def test_all_dominated_by_one():
    pts = [P(f"p{i}", 0.1 + 0.01 * i, 50 - i) for i in range(10)] + [P("best", 0.9, 1)]
    assert ids(non_dominated(pts, OBJ)) == ["best"]


def test_empty_and_all_ineligible():
    assert non_dominated([], OBJ) == []
    assert non_dominated([P("f", 0.5, 5, "failed")], OBJ) == []


def test_three_objectives_front():
    objs = {"a": "min", "b": "min", "c": "min"}
    pts = [ParetoPoint("p", {"a": 1, "b": 2, "c": 3}), ParetoPoint("q", {"a": 2, "b": 1, "c": 3}),
           ParetoPoint("r", {"a": 2, "b": 2, "c": 3}), ParetoPoint("s", {"a": 3, "b": 3, "c": 0})]
    assert ids(non_dominated(pts, objs)) == ["p", "q", "s"]


@pytest.mark.parametrize("objectives", [{}, {"acc": "maximize"}, {"acc": "max", "lat": "MIN"}, None])
def test_bad_objectives_raise(objectives):
    with pytest.raises(ConfigError):
        non_dominated([P("a", 0.3, 10)], objectives)


def test_bad_points_raise():
    with pytest.raises(ConfigError, match="status"):
        P("a", 0.3, 10, "done")
    with pytest.raises(ConfigError, match="unique"):
        non_dominated([P("a", 0.3, 10), P("a", 0.2, 5)], OBJ)
    with pytest.raises(ConfigError, match="objectives.acc"):
        ParetoPoint("a", {"acc": "high"})


def test_points_from_records():
    rows = [{"trial_id": "t1", "status": "completed", "acc": 0.3, "lat": 10.0},
            {"trial_id": "t2", "status": "failed", "acc": None}]
    pts = points_from_records(rows, OBJ)
    assert ids(pts) == ["t1", "t2"]
    assert math.isnan(pts[1].objectives["lat"])
    with pytest.raises(ConfigError):
        points_from_records([{"acc": 1}], OBJ)


# --------------------------------------------------------------------------- hypervolume


def test_hypervolume_2d_hand_computed():
    # a covers acc [0, .30] x lat [10, 40] = 9; b covers [0, .35] x [20, 40] = 7; overlap 6.
    pts = [P("a", 0.30, 10), P("b", 0.35, 20), P("c", 0.25, 30)]
    ref = {"acc": 0.0, "lat": 40.0}
    assert hypervolume(pts, ref, OBJ) == pytest.approx(10.0)
    assert hypervolume(non_dominated(pts, OBJ), ref, OBJ) == pytest.approx(10.0)


def test_hypervolume_reference_excludes_points():
    ref = {"acc": 0.0, "lat": 40.0}
    base = [P("a", 0.30, 10), P("b", 0.35, 20)]
    extra = [P("slow", 0.90, 50), P("on_ref", 0.90, 40), P("neg", -0.1, 1)]
    assert hypervolume(base + extra, ref, OBJ) == pytest.approx(10.0)
    assert hypervolume(extra, ref, OBJ) == 0.0


def test_hypervolume_ignores_ineligible_and_duplicates():
    ref = {"acc": 0.0, "lat": 40.0}
    pts = [P("a", 0.30, 10), P("a2", 0.30, 10), P("b", 0.35, 20), P("f", 1.0, 1, "failed"),
           P("e", 1.0, 1, "early_stopped"), P("n", math.nan, 1)]
    assert hypervolume(pts, ref, OBJ) == pytest.approx(10.0)
    assert hypervolume([], ref, OBJ) == 0.0


def test_hypervolume_3d_hand_computed():
    # Boxes to ref (4,4,4): p1 9, p2 12, p3 6; pairwise overlaps 4, 3, 4; triple 2 -> 18.
    objs = {"x": "min", "y": "min", "z": "min"}
    ref = {"x": 4, "y": 4, "z": 4}
    pts = [ParetoPoint("p1", {"x": 1, "y": 1, "z": 3}), ParetoPoint("p2", {"x": 2, "y": 2, "z": 1}),
           ParetoPoint("p3", {"x": 3, "y": 1, "z": 2})]
    assert hypervolume(pts[:2], ref, objs) == pytest.approx(17.0)
    assert hypervolume(pts, ref, objs) == pytest.approx(18.0)
    # Same set with x maximised: negate x and its reference.
    objs_max = {"x": "max", "y": "min", "z": "min"}
    flipped = [ParetoPoint(p.id, {**p.objectives, "x": -p.objectives["x"]}) for p in pts]
    assert hypervolume(flipped, {"x": -4, "y": 4, "z": 4}, objs_max) == pytest.approx(18.0)


def test_hypervolume_1d():
    assert hypervolume([P("a", 0.3, 1), P("b", 0.5, 1)], {"acc": 0.1},
                       {"acc": "max"}) == pytest.approx(0.4)


def _brute_force_cells(costs: list[tuple[int, ...]], ref: tuple[int, ...]) -> int:
    """Count unit cells [c, c+1)^d inside the union of boxes [p, ref)."""
    count = 0
    for cell in itertools.product(*[range(r) for r in ref]):
        if any(all(p[i] <= cell[i] for i in range(len(ref))) for p in costs):
            count += 1
    return count


@pytest.mark.parametrize("d", [2, 3, 4])
def test_hypervolume_matches_brute_force(d):
    rng = random.Random(d)
    objs = {f"o{i}": "min" for i in range(d)}
    ref = tuple([6] * d)
    for trial in range(15):
        costs = [tuple(rng.randrange(0, 7) for _ in range(d)) for _ in range(rng.randrange(1, 8))]
        pts = [ParetoPoint(f"p{j}", dict(zip(objs, c))) for j, c in enumerate(costs)]
        expected = _brute_force_cells(costs, ref)
        assert hypervolume(pts, dict(zip(objs, ref)), objs) == pytest.approx(expected), costs


def test_hypervolume_reference_errors():
    pts = [P("a", 0.3, 10)]
    with pytest.raises(ConfigError, match="reference_point"):
        hypervolume(pts, {"acc": 0.0}, OBJ)
    with pytest.raises(ConfigError, match="reference_point"):
        hypervolume(pts, {"acc": 0.0, "lat": 10, "extra": 1}, OBJ)
    with pytest.raises(ConfigError, match="reference_point.lat"):
        hypervolume(pts, {"acc": 0.0, "lat": math.nan}, OBJ)


def test_hypervolume_history_counts_finished_trials():
    ref = {"acc": 0.0, "lat": 40.0}
    pts = [P("a", 0.30, 10), P("r", 0.5, 5, "running"), P("f", None, None, "failed"),
           P("b", 0.35, 20), P("c", 0.25, 30)]
    assert hypervolume_history(pts, ref, OBJ) == [
        (1, pytest.approx(9.0)), (2, pytest.approx(9.0)), (3, pytest.approx(10.0)),
        (4, pytest.approx(10.0)),
    ]


def test_default_reference_point():
    pts = [P("a", 0.30, 10), P("b", 0.35, 20), P("f", 0.9, 500, "failed")]
    assert default_reference_point(pts, OBJ) == {"acc": 0.0, "lat": pytest.approx(22.0)}
    assert default_reference_point(pts, OBJ, budgets={"lat": 30}) == {"acc": 0.0, "lat": 30.0}
    assert default_reference_point([], OBJ, budgets={"lat": 30}) == {"acc": 0.0, "lat": 30.0}
    with pytest.raises(ConfigError, match="points"):
        default_reference_point([], OBJ)
    with pytest.raises(ConfigError, match="budgets.nope"):
        default_reference_point(pts, OBJ, budgets={"nope": 1})
    ref = default_reference_point(pts, OBJ)
    assert hypervolume(pts, ref, OBJ) > 0


# --------------------------------------------------------------------------- knee


def test_knee_on_l_shaped_front():
    pts = [P("fast", 0.10, 1), P("knee", 0.38, 2), P("slow1", 0.39, 10), P("slow2", 0.40, 20),
           P("dominated", 0.20, 15)]
    assert knee_point(pts, OBJ).id == "knee"
    # Order and objective order do not change the answer.
    assert knee_point(list(reversed(pts)), {"lat": "min", "acc": "max"}).id == "knee"


def test_knee_small_fronts():
    assert knee_point([], OBJ) is None
    assert knee_point([P("f", 0.5, 1, "failed")], OBJ) is None
    assert knee_point([P("only", 0.3, 10)], OBJ).id == "only"
    # Two points: both on the line; the first objective (acc, max) decides.
    two = [P("fast", 0.30, 10), P("accurate", 0.35, 20)]
    assert knee_point(two, OBJ).id == "accurate"
    assert knee_point(two, {"lat": "min", "acc": "max"}).id == "fast"
    # Straight front: all on the line; again the first objective wins.
    line = [P("a", 0.1, 1), P("b", 0.2, 2), P("c", 0.3, 3)]
    assert knee_point(line, OBJ).id == "c"


def test_knee_needs_two_objectives():
    with pytest.raises(ConfigError, match="exactly 2"):
        knee_point([P("a", 0.3, 10)], {"acc": "max"})


# --------------------------------------------------------------------------- thinning at a noise level
def test_thin_front_keeps_a_member_only_for_a_gain_above_the_resolution():
    from topnas.platform.pareto import thin_front

    demo = [P("mid", 0.9007, 20.6), P("slow", 0.9011, 24.1), P("fast", 0.9007, 19.8), P("worse", 0.89, 22.0)]
    assert [p.id for p in thin_front(demo, OBJ, "acc", 0.0048)] == ["fast"]
    assert [p.id for p in thin_front(demo, OBJ, "acc", 0.0001)] == ["fast", "slow"]  # mid ties fast: dominated
    # gains of 0.6 x the resolution: every second member, measured from the last one kept
    steps = [P(f"p{i}", 0.50 + 0.006 * i, 1.0 + i) for i in range(5)]
    assert [p.id for p in thin_front(steps, OBJ, "acc", 0.01)] == ["p0", "p2", "p4"]
    # no resolution: the whole front, fastest first; dominated and failed points never count
    assert [p.id for p in thin_front(demo, OBJ, "acc", float("nan"))] == ["fast", "slow"]
    assert [p.id for p in thin_front(steps + [P("x", 0.99, 0.5, "failed")], OBJ, "acc", 0.0)] == [
        f"p{i}" for i in range(5)]
    assert thin_front([], OBJ, "acc", 0.01) == []
    with pytest.raises(ConfigError, match="objective"):
        thin_front(steps, OBJ, "latency", 0.01)
