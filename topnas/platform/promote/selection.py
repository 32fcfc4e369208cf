"""Choosing the front member to promote: by trial id, by a latency budget, or the front's knee.

A trial off the Pareto front (or one that never completed) is refused, naming the front members
that dominate it, unless forced; a forced choice is remembered in the :class:`Selection` so the
lineage tags say so.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from topnas.errors import ConfigError, TopnasError
from topnas.platform import pareto as _pareto
from topnas.platform.objectives import OBJECTIVES
from topnas.platform.promote.lineage import as_float

if TYPE_CHECKING:
    import pandas as pd

    from topnas.platform.sweep.reader import SweepRecord
    from topnas.search_spaces import Variant

__all__ = ["OBJECTIVES", "PromotionRefused", "Selection", "select_trial"]

log = logging.getLogger(__name__)


_NOT_ON_FRONT = ("{what} is not on the Pareto front of sweep {sweep}: {why}. Promote a front member "
                 "(`topnas pareto show {sweep}`), or pass --force to promote it anyway.")


class PromotionRefused(TopnasError):
    """The chosen trial may not be promoted (off the front, or not a completed trial) without --force."""

    def __init__(self, message: str, dominated_by: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.dominated_by = tuple(dominated_by)


@dataclass(frozen=True)
class Selection:
    """The trial to promote and why."""

    row: dict[str, Any] = field(repr=False)
    variant: Variant = field(repr=False)
    rule: str                               # "knee" | "max_latency_ms<=X" | "trial"
    on_front: bool
    forced: bool = False
    dominated_by: tuple[str, ...] = ()      # trial ids of front members dominating it

    @property
    def trial_id(self) -> str:
        return str(self.row["trial_id"])

    @property
    def variant_id(self) -> str:
        return str(self.row["variant_id"])

    @property
    def run_id(self) -> str:
        return str(self.row.get("run_id") or "")

    def value(self, column: str) -> float:
        return as_float(self.row.get(column))


def _describe_row(row: Mapping[str, Any]) -> str:
    return (f"trial {row['trial_id']} (variant {row['variant_id']}: mIoU {as_float(row.get('val_mIoU')):.4f}, "
            f"{as_float(row.get('latency_ms')):.2f} ms)")


def _dominators(df: pd.DataFrame, row: Mapping[str, Any]) -> pd.DataFrame:
    """Front members that dominate ``row`` (no worse in both objectives, better in one), best mIoU first.

    Every dominated point is dominated by at least one front member, so this is never empty for a
    completed trial off the front.
    """
    m, lat = as_float(row.get("val_mIoU")), as_float(row.get("latency_ms"))
    front = df[df["pareto"]]
    dom = front[(front["val_mIoU"] >= m) & (front["latency_ms"] <= lat)
                & ((front["val_mIoU"] > m) | (front["latency_ms"] < lat))]
    return dom.sort_values(["val_mIoU", "latency_ms"], ascending=[False, True])


def select_trial(
    record: SweepRecord,
    *,
    trial: str | None = None,
    max_latency_ms: float | None = None,
    knee: bool = False,
    force: bool = False,
) -> Selection:
    """Pick the variant to promote: one of ``trial`` / ``max_latency_ms`` / ``knee``.

    * ``trial``: a trial id, variant id or child run id. Off the front it is refused with
      :class:`PromotionRefused` naming the front member(s) dominating it, unless ``force``.
    * ``max_latency_ms``: the most accurate front member whose predicted latency is within budget.
    * ``knee``: :func:`topnas.platform.pareto.knee_point` of the front.

    When the sweep measured its proxy's seed noise (``record.seed_noise``), both rules first thin the
    front at it (:func:`topnas.platform.pareto.thin_front`): a member whose proxy mIoU beats a faster
    one's by no more than the noise is not chosen for that gain, so a front whose mIoU differences
    are all noise yields its fastest member. The rule text says so.
    """
    chosen = [x for x in (trial is not None, max_latency_ms is not None, bool(knee)) if x]
    if len(chosen) != 1:
        raise ConfigError("selection", {"trial": trial, "max_latency_ms": max_latency_ms, "knee": knee},
                          "exactly one of --trial, --max-latency-ms, --knee")
    df = record.trials
    front = df[df["pareto"]]
    if trial is not None:
        return _select_by_id(record, str(trial), force)
    if front.empty:
        counts = df["status"].value_counts().to_dict()
        raise PromotionRefused(f"sweep {record.name} has no Pareto front yet (trial statuses: {counts})")
    if max_latency_ms is not None:
        budget = float(max_latency_ms)
        if not math.isfinite(budget) or budget <= 0:
            raise ConfigError("--max-latency-ms", max_latency_ms, "a positive number of milliseconds")
        within = front[front["latency_ms"] <= budget]
        if within.empty:
            fastest = front.sort_values("latency_ms").iloc[0]
            raise PromotionRefused(
                f"no member of the Pareto front of sweep {record.name} has a predicted latency <= "
                f"{budget:g} ms; the fastest is {_describe_row(fastest)}")
        pool, note = _thinned(within, record.seed_noise)
        best = pool.sort_values(["val_mIoU", "latency_ms", "trial_id"], ascending=[False, True, True]).iloc[0]
        return _selection(best, f"max_latency_ms<={budget:g}{note}", on_front=True)
    pool, note = _thinned(front, record.seed_noise)
    points = _pareto.points_from_records(pool.to_dict("records"), OBJECTIVES)
    kp = _pareto.knee_point(points, OBJECTIVES)
    row = pool[pool["trial_id"] == kp.id].iloc[0]
    return _selection(row, f"knee{note}", on_front=True)


def _thinned(front: pd.DataFrame, seed_noise: float | None) -> tuple[pd.DataFrame, str]:
    """``front`` thinned at the proxy's seed noise (all of it when unknown), and the words for the rule."""
    if seed_noise is None or not (math.isfinite(seed_noise) and seed_noise > 0):
        return front, ""
    points = _pareto.points_from_records(front.to_dict("records"), OBJECTIVES)
    kept = {p.id for p in _pareto.thin_front(points, OBJECTIVES, "val_mIoU", seed_noise)}
    note = f" (front thinned at the proxy's seed noise, {seed_noise:.4f} mIoU: {len(kept)} of {len(front)} members kept)"
    return front[front["trial_id"].astype(str).isin(kept)], note


def _select_by_id(record: SweepRecord, key: str, force: bool) -> Selection:
    df = record.trials
    hits = df[(df["trial_id"] == key) | (df["variant_id"] == key) | (df["run_id"] == key)]
    if hits.empty:
        listed = ", ".join(f"{r.trial_id} ({r.variant_id})" for r in record.front.itertuples()) or "none"
        raise ConfigError("--trial", key, f"a trial id, variant id or run id of sweep {record.name}",
                          hint=f"front members: {listed}")
    hits = hits.sort_values(["pareto", "val_mIoU"], ascending=[False, False])
    row = hits.iloc[0]
    if bool(row["pareto"]):
        return _selection(row, "trial", on_front=True)
    what = _describe_row(row)
    if row["status"] != _pareto.ELIGIBLE_STATUS or not (
            math.isfinite(as_float(row["val_mIoU"])) and math.isfinite(as_float(row["latency_ms"]))):
        reason = str(row.get("reason") or "") if "reason" in row else ""
        why = f"its status is {row['status']}" + (f" ({reason})" if reason and reason != "nan" else "")
        if row["status"] == _pareto.ELIGIBLE_STATUS:
            why = "it has no finite mIoU / predicted latency"
        if not force:
            raise PromotionRefused(_NOT_ON_FRONT.format(what=what, sweep=record.name, why=why))
        log.warning("promoting %s although %s (--force)", what, why)
        return _selection(row, "trial", on_front=False, forced=True)
    dom = _dominators(df, row)
    ids = tuple(str(t) for t in dom["trial_id"])
    first = dom.iloc[0]
    why = f"it is dominated by {_describe_row(first)}"
    if len(dom) > 1:
        why += f" and {len(dom) - 1} more ({', '.join(ids[1:4])}{', ...' if len(dom) > 4 else ''})"
    if not force:
        raise PromotionRefused(_NOT_ON_FRONT.format(what=what, sweep=record.name, why=why), dominated_by=ids)
    log.warning("promoting %s although %s (--force)", what, why)
    return _selection(row, "trial", on_front=False, forced=True, dominated_by=ids)


def _selection(row: Any, rule: str, *, on_front: bool, forced: bool = False,
               dominated_by: tuple[str, ...] = ()) -> Selection:
    from topnas.search_spaces import Variant

    data = {k: (v.item() if hasattr(v, "item") else v) for k, v in dict(row).items()}
    text = data.get("config") or ""
    if not text:
        raise ConfigError(f"trial {data['trial_id']}.config", "<empty>", "the variant's config as JSON text")
    variant = Variant.from_json(text)
    if variant.id != data["variant_id"]:
        raise ConfigError(f"trial {data['trial_id']}.variant_id", data["variant_id"], [variant.id],
                          hint="the config column does not hash to the recorded variant id")
    return Selection(row=data, variant=variant, rule=rule, on_front=on_front, forced=forced,
                     dominated_by=dominated_by)
