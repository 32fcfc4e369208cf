"""Closing a full run: its final mIoU, the predicted latency of its own ONNX export, a trained version.

The full run re-prices its export because proxy rank is not full-training rank: the trained
version carries the final numbers beside the ones predicted at promotion, and the run's setup
(:func:`run_setup`) that :func:`~topnas.platform.promote.acceptance.accept` compares.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from topnas.errors import ConfigError
from topnas.platform import tracking
from topnas.platform.promote.lineage import (
    SETUP_CLASSES,
    SETUP_DATASET,
    SETUP_INPUT,
    SETUP_ITERS,
    SETUP_PREDICTOR,
    TAG_FINAL_LAT,
    TAG_FINAL_LAT_HI,
    TAG_FINAL_LAT_LO,
    TAG_FINAL_MIOU,
    TAG_FULL_RUN,
    TAG_LAT,
    TAG_LAT_HI,
    TAG_LAT_LO,
    TAG_MODEL_NAME,
    TAG_PROMOTED_VERSION,
    TAG_PROXY_MIOU,
    TAG_STAGE,
    TAG_TRAIN_RUN,
    TAG_VARIANT,
    TAG_YAML,
    T,
    as_float,
    tag_number,
)
from topnas.platform.promote.pricing import load_predictor, onnx_artifact, onnx_input_hw, price_onnx
from topnas.platform.promote.registry import (
    CHALLENGER,
    DEFAULT_MODEL_NAME,
    PROMOTION_ARTIFACT,
    ensure_registered_model,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

__all__ = ["FinalizeResult", "finalize", "run_setup"]


@dataclass(frozen=True)
class FinalizeResult:
    """The trained version finalize registered: the final numbers beside those predicted at promotion."""

    run_id: str
    model_name: str
    version: str                 # the trained version (alias challenger)
    promoted_version: str | None
    final_miou: float
    latency_ms: float
    latency_lo: float
    latency_hi: float
    out_of_range: bool
    onnx_artifact: str
    promoted: dict[str, float]   # proxy mIoU and predicted latency at promotion
    predictor_id: str = ""       # the predictor that priced the export (<file stem>-<sha256[:10]>)


def _get_run(client: MlflowClient, run_id: str, uri: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        raise ConfigError("run", run_id, f"the MLflow run id of a full training at {uri}",
                          hint=str(exc).splitlines()[0][:200]) from None


def _latest_metric(client: MlflowClient, run_id: str, key: str) -> float:
    history = client.get_metric_history(run_id, key)
    if not history:
        return math.nan
    last = max(history, key=lambda m: (m.step, m.timestamp))
    return float(last.value)


def _find_promoted_version(client: MlflowClient, model_name: str, run) -> ModelVersion | None:
    tags = run.data.tags
    if tags.get(TAG_PROMOTED_VERSION):
        return client.get_model_version(tags.get(TAG_MODEL_NAME) or model_name, tags[TAG_PROMOTED_VERSION])
    name = tags.get("topnas.train_run") or run.info.run_name
    for key, value in ((TAG_TRAIN_RUN, name), (TAG_YAML, None)):
        if value is None or "'" in value:
            continue
        found = client.search_model_versions(f"name = '{model_name}' and tags.`{key}` = '{value}'")
        if found:
            return max(found, key=lambda v: int(v.version))
    return None


def run_setup(cfg: Any, predictor_id: str) -> dict[str, str]:
    """What makes two full runs comparable: dataset, classes, input size, iterations, latency predictor.

    The dataset is the folder's name, the evaluation split and its cap (the same data under another
    absolute path on another machine compares equal); a generated fixture adds its spec.
    """
    data = cfg.data
    dataset = f"{Path(data.root).name}:{data.val_split}"
    if data.val_max_samples:
        dataset += f"[:{data.val_max_samples}]"
    if data.fixture is not None:
        f = data.fixture
        dataset += f" (fixture {f.classes} classes, {f.train}/{f.val} images, seed {f.seed})"
    h, w = cfg.variant.input_size
    return {SETUP_DATASET: dataset, SETUP_CLASSES: str(cfg.model.num_classes), SETUP_INPUT: f"{h}x{w}",
            SETUP_ITERS: str(cfg.schedule.max_iters), SETUP_PREDICTOR: predictor_id}


def finalize(
    run_id: str,
    *,
    tracking_uri: str | None = None,
    model_name: str = DEFAULT_MODEL_NAME,
    predictor: str | None = None,
) -> FinalizeResult:
    """Close a full run: final mIoU, predicted latency of its ONNX export, trained model version.

    Logs on the run (metrics, step = the run's final iteration): ``final_val_mIoU``,
    ``final_latency_ms`` / ``_lo`` / ``_hi`` (the exported ONNX graph's own kernels priced by
    ``predictor`` when given, else by exactly the predictor the sweep recorded - see
    :func:`~topnas.platform.promote.pricing.load_predictor`; never a fallback) and, beside them,
    ``promoted_proxy_mIoU``, ``promoted_latency_ms`` / ``_lo`` / ``_hi`` and ``config_latency_ms``
    (the same predictor on the run's config, so a gap between config and export shows); plus
    ``promotion/finalize.json``.
    Then registers version vN+1 (source: the run's artifacts, with the lineage tags, the final
    numbers and the run's setup, :func:`run_setup`, that
    :func:`~topnas.platform.promote.acceptance.accept` compares) and moves alias ``challenger`` to it.
    Idempotent: a run finalized before keeps its version.
    """
    from mlflow.entities import Metric

    from topnas.platform.train.train_config import TrainConfig

    uri = tracking.resolve_tracking_uri(tracking_uri)
    client = tracking.get_client(uri)
    run = _get_run(client, run_id, uri)
    if run.info.status != "FINISHED":
        raise ConfigError("run", run_id, "a FINISHED full-training run", hint=f"its status is {run.info.status}")
    model_name = run.data.tags.get(TAG_MODEL_NAME) or model_name
    existing = client.search_model_versions(f"name = '{model_name}' and tags.`{TAG_FULL_RUN}` = '{run_id}'")
    if existing:
        mv = max(existing, key=lambda v: int(v.version))
        return _result_from_version(mv, run_id, model_name)

    final_miou = _latest_metric(client, run_id, "val_mIoU")
    if not math.isfinite(final_miou):
        raise ConfigError("run", run_id, "a run that logged val_mIoU", hint="the full run has no evaluation")
    promoted = _find_promoted_version(client, model_name, run)
    onnx_rel = onnx_artifact(client, run_id)
    choice = load_predictor(client, promoted, predictor)
    with tempfile.TemporaryDirectory() as tmp:
        cfg_local = client.download_artifacts(run_id, "config/train_config.yaml", tmp)
        cfg = TrainConfig.from_yaml_text(Path(cfg_local).read_text())
        onnx_local = client.download_artifacts(run_id, onnx_rel, tmp)
        hw = onnx_input_hw(onnx_local)
        variant = cfg.variant
        if hw is not None and tuple(hw) != tuple(variant.input_size):
            raise ConfigError("onnx input", list(hw), [list(variant.input_size)],
                              hint="the exported graph does not match the run's variant")
        pred = price_onnx(choice, onnx_local, onnx_rel)
    config_pred = choice.predictor.predict(variant)
    setup = run_setup(cfg, choice.id)
    step = int(run.data.tags.get("topnas.final_iteration") or 0)
    ptags = promoted.tags if promoted else {}
    promoted_vals = {k: as_float(ptags.get(t)) for k, t in (("proxy_mIoU", TAG_PROXY_MIOU), ("latency_ms", TAG_LAT),
                                                            ("latency_lo", TAG_LAT_LO), ("latency_hi", TAG_LAT_HI))}
    now = int(time.time() * 1000)
    values = {"final_val_mIoU": final_miou, "final_latency_ms": pred.ms, "final_latency_lo": pred.lo,
              "final_latency_hi": pred.hi, "promoted_proxy_mIoU": promoted_vals["proxy_mIoU"],
              "promoted_latency_ms": promoted_vals["latency_ms"], "promoted_latency_lo": promoted_vals["latency_lo"],
              "promoted_latency_hi": promoted_vals["latency_hi"], "config_latency_ms": config_pred.ms}
    client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in values.items() if math.isfinite(v)],
                     synchronous=True)
    client.set_tag(run_id, "topnas.final_latency_out_of_range", str(pred.out_of_range).lower())
    client.set_tag(run_id, "topnas.onnx_artifact", onnx_rel)
    client.set_tag(run_id, SETUP_PREDICTOR, choice.id)
    summary = {"run_id": run_id, "variant_id": variant.id, "onnx": onnx_rel, "onnx_input_size": hw,
               "final": values, "priced": "onnx graph", "predictor": {"id": choice.id, "source": choice.source},
               "setup": setup, "out_of_range": pred.out_of_range, "out_of_range_reasons": list(pred.reasons),
               "promoted_version": promoted.version if promoted else None}
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "finalize.json"
        p.write_text(json.dumps(summary, indent=1, default=str) + "\n")
        client.log_artifact(run_id, str(p), PROMOTION_ARTIFACT)

    ensure_registered_model(client, model_name)
    tags = {k: v for k, v in ptags.items() if k.startswith(T)}
    tags.update({TAG_STAGE: "trained", TAG_FULL_RUN: run_id, TAG_FINAL_MIOU: tag_number(final_miou),
                 TAG_FINAL_LAT: tag_number(pred.ms), TAG_FINAL_LAT_LO: tag_number(pred.lo),
                 TAG_FINAL_LAT_HI: tag_number(pred.hi), TAG_PROMOTED_VERSION: str(promoted.version) if promoted else "",
                 T + "trained_variant_id": variant.id, T + "onnx_artifact": onnx_rel, **setup})
    description = (f"{ptags.get(TAG_VARIANT, variant.id)} after the full run {run.info.run_name}: "
                   f"mIoU {final_miou:.4f}, predicted {pred.ms:.2f} ms [{pred.lo:.2f}, {pred.hi:.2f}]")
    mv = client.create_model_version(model_name, source=run.info.artifact_uri, run_id=run_id, tags=tags,
                                     description=description)
    client.set_registered_model_alias(model_name, CHALLENGER, mv.version)
    return FinalizeResult(run_id, model_name, str(mv.version), str(promoted.version) if promoted else None,
                          final_miou, pred.ms, pred.lo, pred.hi, pred.out_of_range, onnx_rel,
                          promoted_vals, choice.id)


def _result_from_version(mv: ModelVersion, run_id: str, model_name: str) -> FinalizeResult:
    t = mv.tags
    return FinalizeResult(run_id, model_name, str(mv.version), t.get(TAG_PROMOTED_VERSION) or None,
                          as_float(t.get(TAG_FINAL_MIOU)), as_float(t.get(TAG_FINAL_LAT)),
                          as_float(t.get(TAG_FINAL_LAT_LO)), as_float(t.get(TAG_FINAL_LAT_HI)), False,
                          t.get(T + "onnx_artifact", ""),
                          {"proxy_mIoU": as_float(t.get(TAG_PROXY_MIOU)), "latency_ms": as_float(t.get(TAG_LAT)),
                           "latency_lo": as_float(t.get(TAG_LAT_LO)), "latency_hi": as_float(t.get(TAG_LAT_HI))},
                          t.get(SETUP_PREDICTOR, ""))
