"""The lineage tags of a promotion, and how their numbers are written.

The promoted model version, the full run trained from it and the trained version all carry these
``topnas.*`` tags, so each leads back to the sweep, the trial and the predictions made at
promotion; the ``setup`` tags say what makes two trained versions comparable for ``accept``.
Numbers go into tags as text that reads back to the same float, so comparisons stay exact.
"""
from __future__ import annotations

import math
from typing import Any

__all__ = [
    "SETUP_CLASSES",
    "SETUP_DATASET",
    "SETUP_INPUT",
    "SETUP_ITERS",
    "SETUP_PREDICTOR",
    "SETUP_TAGS",
    "TAG_FINAL_LAT",
    "TAG_FINAL_LAT_HI",
    "TAG_FINAL_LAT_LO",
    "TAG_FINAL_MIOU",
    "TAG_FORCED",
    "TAG_FULL_RUN",
    "TAG_LAT",
    "TAG_LAT_HI",
    "TAG_LAT_LO",
    "TAG_MODEL_NAME",
    "TAG_ON_FRONT",
    "TAG_PREDICTOR",
    "TAG_PROMOTED_VERSION",
    "TAG_PROXY_MIOU",
    "TAG_SELECTION",
    "TAG_SIZE",
    "TAG_STAGE",
    "TAG_SWEEP",
    "TAG_SWEEP_RUN",
    "TAG_TRAIN_RUN",
    "TAG_TRIAL",
    "TAG_TRIAL_RUN",
    "TAG_VARIANT",
    "TAG_YAML",
    "T",
    "as_float",
    "tag_number",
]

# Model-version tags (lineage).
T = "topnas."
TAG_STAGE = T + "lineage_stage"          # promoted | trained
TAG_SWEEP = T + "sweep"
TAG_SWEEP_RUN = T + "sweep_run_id"
TAG_TRIAL = T + "trial_id"
TAG_TRIAL_RUN = T + "trial_run_id"
TAG_VARIANT = T + "variant_id"
TAG_SIZE = T + "size_class"
TAG_PROXY_MIOU = T + "proxy_mIoU"
TAG_LAT = T + "predicted_latency_ms"
TAG_LAT_LO = T + "predicted_latency_lo"
TAG_LAT_HI = T + "predicted_latency_hi"
TAG_SELECTION = T + "selection"
TAG_FORCED = T + "forced"
TAG_ON_FRONT = T + "on_front"
TAG_YAML = T + "experiment_yaml"
TAG_TRAIN_RUN = T + "train_run"           # planned full-run name (== the train package's tag)
TAG_PREDICTOR = T + "predictor_id"
TAG_PROMOTED_VERSION = T + "promoted_version"
TAG_FULL_RUN = T + "full_run_id"
TAG_FINAL_MIOU = T + "final_mIoU"
TAG_FINAL_LAT = T + "final_latency_ms"
TAG_FINAL_LAT_LO = T + "final_latency_lo"
TAG_FINAL_LAT_HI = T + "final_latency_hi"
TAG_MODEL_NAME = T + "model_name"
# What accept compares between two trained versions (set by finalize).
SETUP_DATASET = T + "setup.dataset"
SETUP_CLASSES = T + "setup.num_classes"
SETUP_INPUT = T + "setup.input_size"
SETUP_ITERS = T + "setup.max_iters"
SETUP_PREDICTOR = T + "setup.predictor_id"
SETUP_TAGS = {SETUP_DATASET: "dataset", SETUP_CLASSES: "number of classes", SETUP_INPUT: "input size",
              SETUP_ITERS: "iterations", SETUP_PREDICTOR: "latency predictor"}


def as_float(value: Any) -> float:
    """A tag, metric or table cell as a float; NaN when it is missing or not a number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def tag_number(value: float) -> str:
    """A float as tag text that reads back to the same float (so comparisons stay exact)."""
    v = as_float(value)
    return repr(v) if math.isfinite(v) else "nan"
