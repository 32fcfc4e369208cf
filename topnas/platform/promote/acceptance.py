"""Accepting a full run: alias ``champion`` moves to its version unless the current champion dominates or ties it.

Two trained versions are compared only when they were trained and priced the same way (dataset,
classes, input size, iterations, latency predictor: the ``setup`` tags finalize writes); otherwise
the move is refused, naming each difference, unless forced.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Mapping

from topnas.platform import pareto as _pareto
from topnas.platform import tracking
from topnas.platform.promote.finalization import finalize
from topnas.platform.promote.lineage import SETUP_TAGS, TAG_FINAL_LAT, TAG_FINAL_MIOU, T, as_float
from topnas.platform.promote.registry import CHAMPION, DEFAULT_MODEL_NAME
from topnas.platform.promote.selection import OBJECTIVES, PromotionRefused

__all__ = ["AcceptDecision", "accept", "setup_differences"]

log = logging.getLogger(__name__)


def setup_differences(champion: Mapping[str, str], candidate: Mapping[str, str]) -> list[str]:
    """``"<what>: champion X, candidate Y"`` for each setup tag (``finalization.run_setup``) that differs or
    is unrecorded."""
    out = []
    for tag, what in SETUP_TAGS.items():
        a, b = champion.get(tag), candidate.get(tag)
        if a != b:
            out.append(f"{what}: champion {a if a is not None else 'not recorded'}, "
                       f"candidate {b if b is not None else 'not recorded'}")
    return out


@dataclass(frozen=True)
class AcceptDecision:
    """Where alias ``champion`` points after accept, and why (a sentence for the console)."""

    model_name: str
    candidate: str                # version of the full run
    previous: str | None          # champion before
    champion: str                 # champion after
    moved: bool
    reason: str


def accept(
    run_id: str,
    *,
    tracking_uri: str | None = None,
    model_name: str = DEFAULT_MODEL_NAME,
    predictor: str | None = None,
    force: bool = False,
) -> AcceptDecision:
    """Move alias ``champion`` to the full run's version unless the current champion dominates it.

    Compared on the final mIoU and the predicted latency of each export (version tags
    ``topnas.final_mIoU`` / ``topnas.final_latency_ms``). An exact tie keeps the champion: a re-run that
    reproduces it is no reason to change what is deployed. A run not finalized yet is finalized first.
    No champion yet: the candidate becomes champion. Refused (:class:`PromotionRefused`) when the two
    runs differ in dataset, number of classes, input size, iterations or latency predictor
    (:func:`~topnas.platform.promote.finalization.run_setup`), naming each difference, unless
    ``force``; a forced move is tagged ``topnas.accept_forced`` on the new champion version.
    """
    from mlflow.exceptions import MlflowException

    fin = finalize(run_id, tracking_uri=tracking_uri, model_name=model_name, predictor=predictor)
    client = tracking.get_client(tracking.resolve_tracking_uri(tracking_uri))
    name = fin.model_name
    new = (fin.final_miou, fin.latency_ms)
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        current = None
    if current is None:
        client.set_registered_model_alias(name, CHAMPION, fin.version)
        return AcceptDecision(name, fin.version, None, fin.version, True,
                              f"no champion yet: v{fin.version} (mIoU {new[0]:.4f}, {new[1]:.2f} ms) becomes champion")
    if str(current.version) == fin.version:
        return AcceptDecision(name, fin.version, fin.version, fin.version, False, f"v{fin.version} is already champion")
    candidate_tags = client.get_model_version(name, fin.version).tags
    differences = setup_differences(current.tags, candidate_tags)
    note = ""
    if differences:
        text = "; ".join(differences)
        if not force:
            raise PromotionRefused(
                f"run {run_id} (v{fin.version}) is not comparable with champion v{current.version}: {text}. "
                "Train both the same way, or pass --force to compare them anyway.")
        log.warning("accepting v%s against champion v%s although %s (--force)", fin.version, current.version, text)
        client.set_model_version_tag(name, fin.version, T + "accept_forced", text)
        note = f" [FORCED although {text}]"
    old = (as_float(current.tags.get(TAG_FINAL_MIOU)), as_float(current.tags.get(TAG_FINAL_LAT)))
    describe_old = f"v{current.version} (mIoU {old[0]:.4f}, {old[1]:.2f} ms)"
    describe_new = f"v{fin.version} (mIoU {new[0]:.4f}, {new[1]:.2f} ms)"
    if all(math.isfinite(x) for x in old):
        points = [_pareto.ParetoPoint("champion", {"val_mIoU": old[0], "latency_ms": old[1]}),
                  _pareto.ParetoPoint("candidate", {"val_mIoU": new[0], "latency_ms": new[1]})]
        flags = {f.id: f.pareto for f in _pareto.pareto_flags(points, OBJECTIVES)}
        if new == old:  # the same model again (a re-run, a re-export): no reason to move what is deployed
            return AcceptDecision(name, fin.version, str(current.version), str(current.version), False,
                                  f"kept champion {describe_old}: {describe_new} ties it{note}")
        if not flags["candidate"]:
            return AcceptDecision(name, fin.version, str(current.version), str(current.version), False,
                                  f"kept champion {describe_old}: it dominates {describe_new}{note}")
        why = "it dominates the champion" if not flags["champion"] else "neither dominates the other"
    else:
        why = "the champion has no final mIoU / latency to compare"
    client.set_registered_model_alias(name, CHAMPION, fin.version)
    return AcceptDecision(name, fin.version, str(current.version), fin.version, True,
                          f"champion moved from {describe_old} to {describe_new}: {why}{note}")
