"""The MLflow registered model of promoted variants: versions, the aliases, the lineage tags.

Registry aliases, not the deprecated stages: ``challenger`` points at the latest promotion (or its
trained version), ``champion`` at the accepted one. :func:`promote` writes the promoted YAML
(:mod:`~topnas.platform.promote.recipe`) and registers it as a version whose ``source`` is the
trial run's ``promotion/`` folder, so the registry links back to the trial.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from topnas.platform import tracking
from topnas.platform.promote.lineage import (
    TAG_FORCED,
    TAG_LAT,
    TAG_LAT_HI,
    TAG_LAT_LO,
    TAG_ON_FRONT,
    TAG_PREDICTOR,
    TAG_PROXY_MIOU,
    TAG_SELECTION,
    TAG_SIZE,
    TAG_STAGE,
    TAG_SWEEP,
    TAG_SWEEP_RUN,
    TAG_TRAIN_RUN,
    TAG_TRIAL,
    TAG_TRIAL_RUN,
    TAG_VARIANT,
    TAG_YAML,
    T,
    tag_number,
)
from topnas.platform.promote.recipe import (
    FULL_EXPERIMENT,
    SizeClass,
    build_experiment,
    experiments_dir,
    promotion_header,
    recipe_path,
    scale_down_experiment,
    size_class,
    write_experiment,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from topnas.platform.promote.selection import Selection
    from topnas.platform.sweep.reader import SweepRecord

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_MODEL_NAME",
    "PROMOTION_ARTIFACT",
    "Promotion",
    "ensure_registered_model",
    "promote",
    "register_challenger",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "topformer-ade20k"
CHALLENGER = "challenger"
CHAMPION = "champion"
PROMOTED_SUBDIR = "promoted"        # under experiments/: where promoted YAMLs go by default
PROMOTION_ARTIFACT = "promotion"    # the artifact folder of a promotion (and of finalize's summary)


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    """Create registered model ``name`` unless it exists (promote and finalize both add versions)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            name, tags={"topnas.task": "ade20k-semantic-segmentation"},
            description="TopFormer variants promoted from topnas sweeps. Aliases: challenger (latest "
                        "promotion), champion (accepted). Lineage in version tags topnas.*")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _lineage_tags(selection: Selection, record: SweepRecord, size: SizeClass, yaml_path: Path,
                  train_run: str, predictor_id: str) -> dict[str, str]:
    return {
        TAG_STAGE: "promoted",
        TAG_SWEEP: record.name,
        TAG_SWEEP_RUN: record.parent_run_id or "",
        TAG_TRIAL: selection.trial_id,
        TAG_TRIAL_RUN: selection.run_id,
        TAG_VARIANT: selection.variant_id,
        TAG_SIZE: size.name,
        TAG_PROXY_MIOU: tag_number(selection.value("val_mIoU")),
        TAG_LAT: tag_number(selection.value("latency_ms")),
        TAG_LAT_LO: tag_number(selection.value("latency_lo")),
        TAG_LAT_HI: tag_number(selection.value("latency_hi")),
        TAG_SELECTION: selection.rule,
        TAG_FORCED: str(selection.forced).lower(),
        TAG_ON_FRONT: str(selection.on_front).lower(),
        TAG_YAML: str(yaml_path),
        TAG_TRAIN_RUN: train_run,
        TAG_PREDICTOR: predictor_id,
    }


def register_challenger(
    client: MlflowClient,
    model_name: str,
    selection: Selection,
    record: SweepRecord,
    yaml_path: Path,
    size: SizeClass,
    train_run: str,
) -> ModelVersion:
    """Log the promotion folder, create a model version from it and point alias ``challenger`` at it.

    The folder (``variant.yaml``, the promoted experiment YAML, ``selection.json``) goes to the
    trial's run as ``promotion/`` (to the sweep's parent run as ``promotions/<variant-id>/`` when
    the trial has no run); the version's ``source`` is that artifact URI and its ``run_id`` the
    run holding it, so the registry links back to the trial.
    """
    ensure_registered_model(client, model_name)
    predictor_id = ""
    if record.parent_run_id:
        predictor_id = client.get_run(record.parent_run_id).data.tags.get("topnas.predictor_id", "")
    tags = _lineage_tags(selection, record, size, yaml_path, train_run, predictor_id)
    holder, artifact_path = _promotion_holder(client, selection, record)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        selection.variant.save(folder / "variant.yaml")
        (folder / yaml_path.name).write_text(yaml_path.read_text())
        summary = {"sweep": record.name, "trial_id": selection.trial_id, "rule": selection.rule,
                   "forced": selection.forced, "on_front": selection.on_front,
                   "dominated_by": list(selection.dominated_by),
                   "size_class": dataclasses.asdict(size), "tags": tags,
                   "row": {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                           for k, v in selection.row.items()}}
        (folder / "selection.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
        client.log_artifacts(holder, str(folder), artifact_path)
    source = f"{client.get_run(holder).info.artifact_uri.rstrip('/')}/{artifact_path}"
    description = (f"{selection.variant_id} promoted from sweep {record.name} (trial {selection.trial_id}, "
                   f"{selection.rule}); size class {size.name}; not trained yet")
    mv = client.create_model_version(model_name, source=source, run_id=holder, tags=tags,
                                     description=description)
    client.set_registered_model_alias(model_name, CHALLENGER, mv.version)
    return client.get_model_version(model_name, mv.version)


def _promotion_holder(client: MlflowClient, selection: Selection, record: SweepRecord) -> tuple[str, str]:
    from mlflow.exceptions import MlflowException

    if selection.run_id:
        try:
            client.get_run(selection.run_id)
            return selection.run_id, PROMOTION_ARTIFACT
        except MlflowException:
            log.warning("trial run %s not found at %s; logging the promotion elsewhere",
                        selection.run_id, record.tracking_uri)
    if record.parent_run_id:
        return record.parent_run_id, f"promotions/{selection.variant_id}"
    exp = tracking.get_or_create_experiment(FULL_EXPERIMENT, client=client)
    run = client.create_run(exp, run_name=f"promotion-{selection.variant_id}",
                            tags={"topnas.kind": "promotion", TAG_SWEEP: record.name})
    client.set_terminated(run.info.run_id)
    return run.info.run_id, PROMOTION_ARTIFACT


@dataclass(frozen=True)
class Promotion:
    """What :func:`promote` left behind (files and registry), before any training."""

    selection: Selection
    sweep: str
    size: SizeClass
    yaml_path: Path
    train_yaml: Path               # the YAML the full run trains (== yaml_path unless scaled down)
    model_name: str
    version: str
    run_name: str                  # planned MLflow / Ray Train run name of the full run
    tracking_uri: str
    scaled_down: bool = False


def promote(
    selection: Selection,
    record: SweepRecord,
    *,
    model_name: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    scale_down: bool | str = False,
    max_iters: int | None = None,
) -> Promotion:
    """Write the promoted YAML (and a scaled-down one when asked), register the challenger version."""
    model_name = model_name or _model_name_from(record) or DEFAULT_MODEL_NAME
    size = size_class(selection.variant)
    out = Path(out_dir) if out_dir else experiments_dir() / PROMOTED_SUBDIR
    recipe = recipe_path(size.name)
    config = build_experiment(selection, size)
    target = out / f"{config['name']}.yaml"
    yaml_path = write_experiment(config, target, promotion_header(selection, record, size, recipe, target))
    train_yaml = yaml_path
    if scale_down:
        small = scale_down_experiment(yaml_path, scale_down if isinstance(scale_down, str) else None,
                                      max_iters=max_iters)
        note = (f"# Scaled-down run of {yaml_path.name}: same variant, optimizer and lr schedule shape;\n"
                f"# dataset, crop, workers and iterations from the fixture ({small['schedule']['max_iters']} it).\n")
        train_yaml = write_experiment(small, out / f"{small['name']}.yaml", note)
    run_name = f"{Path(train_yaml).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    client = tracking.get_client(record.tracking_uri)
    mv = register_challenger(client, model_name, selection, record, yaml_path, size, run_name)
    if train_yaml != yaml_path:
        client.set_model_version_tag(model_name, mv.version, T + "train_yaml", str(train_yaml))
    return Promotion(selection=selection, sweep=record.name, size=size, yaml_path=yaml_path,
                     train_yaml=Path(train_yaml), model_name=model_name, version=str(mv.version),
                     run_name=run_name, tracking_uri=record.tracking_uri, scaled_down=bool(scale_down))


def _model_name_from(record: SweepRecord) -> str | None:
    section = (record.config or {}).get("tracking") or {}
    for key in ("registered_model", "model_name"):
        if isinstance(section.get(key), str) and section[key].strip():
            return section[key].strip()
    return None
