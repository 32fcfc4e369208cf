"""Promotion: pick a variant from a sweep's Pareto front and give it the full 160k ADE20K training.

One promotion, start to end (registry aliases, not the deprecated stages; the full run re-prices
its own export, because proxy rank is not full-training rank)::

    sweep front ──select──> experiments/promoted/<variant-id>_512x512_160k_ade20k.yaml
         │                  (the variant + the official recipe of its size class)
         └──register──> model version vN (source: the trial run's ``promotion/`` folder),
                        alias ``challenger``, lineage tags (sweep run, trial run, predicted latency
                        and interval, proxy mIoU)
    launch (local, or a Ray job through the Jobs API) ──> ``topnas promote --run-full <yaml>``:
         run_training(...)  then  finalize(run):
             final val_mIoU + the predicted latency of the run's ONNX export, logged on the full
             run beside the promoted predictions; model version vN+1 (source: the full run's
             artifacts) takes alias ``challenger``
    topnas promote --accept <run> ──> alias ``champion`` moves to vN+1 only when the current
         champion does not dominate it (final mIoU vs latency)

The finalize step is a function the full-training job calls itself (``--run-full`` = train, then
finalize, in one process), and also a command of its own (``topnas promote --finalize <run>``) for a
full run started by hand with ``topnas train``. No deprecated registry stages anywhere: aliases and
tags only.

Example::

    record = load_sweep("demo_fixture")
    sel = select_trial(record, knee=True)
    promo = promote(sel, record)                  # YAML + registry, no launch
    res = launch_local(promo)                     # or submit_ray_job(promo, address=...)
    accept(res.mlflow_run_id)                     # champion, unless the current one dominates it
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import re
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import yaml

from topnas.errors import ConfigError, TopnasError
from topnas.platform import pareto as _pareto
from topnas.platform import paths, tracking
from topnas.platform.objectives import OBJECTIVES

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from topnas.search_spaces import Variant

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_MODEL_NAME",
    "OBJECTIVES",
    "PRESET_COMPLEXITY",
    "AcceptDecision",
    "FinalizeResult",
    "LaunchResult",
    "Promotion",
    "PredictorChoice",
    "PromotionRefused",
    "Selection",
    "SweepRecord",
    "SizeClass",
    "accept",
    "build_experiment",
    "experiment_stem",
    "experiments_dir",
    "finalize",
    "find_full_run",
    "full_run_command",
    "launch_local",
    "load_sweep",
    "price_onnx",
    "promote",
    "recipe_path",
    "register_challenger",
    "run_full_training",
    "run_setup",
    "scale_down_experiment",
    "select_trial",
    "setup_differences",
    "size_class",
    "submit_ray_job",
    "write_experiment",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "topformer-ade20k"
CHALLENGER = "challenger"
CHAMPION = "champion"
PROMOTED_SUBDIR = "promoted"
PROMOTION_ARTIFACT = "promotion"
FULL_EXPERIMENT = "topnas-promoted"
OFFICIAL_ITERS = 160_000
OFFICIAL_WARMUP = 1500

# Params and fvcore MACs of the official presets at 512x512 with 150 classes (`topnas model summary
# --preset NAME` prints them).
PRESET_COMPLEXITY: dict[str, tuple[int, float]] = {
    "tiny": (1_389_654, 0.5761e9),
    "small": (3_034_662, 1.1676e9),
    "base": (5_062_646, 1.8202e9),
}
# The lr rule of the official configs (train issue): TopFormer-T 3e-4, S and B 1.2e-4.
LR_BY_SIZE = {"tiny": 3e-4, "small": 1.2e-4, "base": 1.2e-4}

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

_NOT_ON_FRONT = ("{what} is not on the Pareto front of sweep {sweep}: {why}. Promote a front member "
                 "(`topnas pareto show {sweep}`), or pass --force to promote it anyway.")


class PromotionRefused(TopnasError):
    """The chosen trial may not be promoted (off the front, or not a completed trial) without --force."""

    def __init__(self, message: str, dominated_by: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.dominated_by = tuple(dominated_by)


# ============================================================================= the sweep record
@dataclass(frozen=True)
class SweepRecord:
    """A finished (or running) sweep as promotion sees it: its trials and its MLflow parent run.

    ``trials`` follows the :mod:`topnas.platform.pareto_plots` column contract, ``pareto``
    recomputed here from ``status`` / ``val_mIoU`` / ``latency_ms`` (never trusted from the file).
    """

    name: str
    trials: pd.DataFrame = field(repr=False)
    tracking_uri: str
    parent_run_id: str | None = None
    experiment_id: str | None = None
    folder: Path | None = None
    source: str = ""                       # where the trials came from (file or artifact)
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # the sweep YAML, when found

    @property
    def front(self) -> pd.DataFrame:
        return self.trials[self.trials["pareto"]]


def _sweeps_root(storage: str | os.PathLike[str] | None) -> Path:
    return paths.sweeps_root(storage)


def _sweep_folder(sweep: str, storage: str | os.PathLike[str] | None) -> Path | None:
    candidate = Path(sweep)
    if candidate.is_dir() and any((candidate / f).exists() for f in
                                  ("pareto.csv", "state.json", "trials.jsonl", "pareto")):
        return candidate.absolute()
    folder = _sweeps_root(storage) / sweep
    return folder if folder.is_dir() else None


def _read_trials_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    text_cols = {c: str for c in ("trial_id", "variant_id", "status", "run_id", "preset", "config")}
    df = pd.read_csv(path, dtype=text_cols, keep_default_na=True)
    for c in ("run_id", "preset", "config"):
        if c in df.columns:
            df[c] = df[c].fillna("")
    return df


def load_sweep(
    sweep: str,
    *,
    tracking_uri: str | None = None,
    storage: str | os.PathLike[str] | None = None,
) -> SweepRecord:
    """Find sweep ``sweep`` (a name under ``<runs>/sweeps``, a sweep folder, or only in MLflow).

    Trials come from, in order: ``<folder>/pareto.csv``, ``<folder>/pareto/pareto.csv``, the
    folder's ``trials.jsonl`` ledger, or the parent run's ``pareto.csv`` artifact. The parent run is
    the one in ``state.json``, else the run tagged ``topnas.sweep=<name>`` without a parent.
    Tracking URI: ``tracking_uri`` > ``$MLFLOW_TRACKING_URI`` > ``state.json`` > the local store.
    """
    from topnas.platform.pareto_plots import add_pareto_column, check_columns

    folder = _sweep_folder(str(sweep), storage)
    name = str(sweep)
    state: dict[str, Any] = {}
    config: dict[str, Any] = {}
    if folder is not None:
        name = folder.name
        if (folder / "state.json").is_file():
            state = json.loads((folder / "state.json").read_text())
            name = state.get("name") or name
        for cfg_name in ("sweep.yaml", "config/sweep.yaml"):
            if (folder / cfg_name).is_file():
                config = yaml.safe_load((folder / cfg_name).read_text()) or {}
                break
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or state.get("tracking_uri") \
        or paths.default_tracking_uri()
    client = tracking.get_client(uri)

    parent_id, experiment_id = state.get("parent_run_id"), state.get("experiment_id")
    if not parent_id:
        parent = _find_parent_run(client, name)
        if parent is not None:
            parent_id, experiment_id = parent.info.run_id, parent.info.experiment_id

    trials, source = None, ""
    if folder is not None:
        for rel in ("pareto.csv", "pareto/pareto.csv"):
            if (folder / rel).is_file():
                trials, source = _read_trials_csv(folder / rel), str(folder / rel)
                break
        if trials is None and (folder / "trials.jsonl").is_file():
            from topnas.platform.sweep.ledger import Ledger, frame  # the sweep's own ledger

            trials, source = frame(Ledger(folder).records()), str(folder / "trials.jsonl")
    if trials is None and parent_id:
        trials, source = _trials_from_parent(client, parent_id)
    if trials is None:
        root = _sweeps_root(storage)
        known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise ConfigError("--sweep", name, known or f"a sweep under {root} or an MLflow run tagged "
                          f"topnas.sweep=<name> at {uri}", hint="no pareto.csv, trial ledger or parent run found")
    check_columns(trials, ("trial_id", "variant_id", "status", "val_mIoU", "latency_ms", "latency_lo",
                           "latency_hi", "run_id", "config"))
    trials = add_pareto_column(trials.reset_index(drop=True))
    return SweepRecord(name=name, trials=trials, tracking_uri=uri, parent_run_id=parent_id,
                       experiment_id=experiment_id, folder=folder, source=source, config=config)


def _find_parent_run(client: MlflowClient, name: str):
    from mlflow.entities import ViewType

    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    if not experiments or "'" in name:
        return None
    runs = client.search_runs(experiments, filter_string=f"tags.`topnas.sweep` = '{name}'",
                              run_view_type=ViewType.ACTIVE_ONLY, max_results=500,
                              order_by=["attributes.start_time ASC"])
    parents = [r for r in runs if tracking.PARENT_RUN_TAG not in r.data.tags]
    return parents[0] if parents else None


def _trials_from_parent(client: MlflowClient, parent_id: str) -> tuple[pd.DataFrame | None, str]:
    names = {f.path for f in client.list_artifacts(parent_id)}
    rel = next((p for p in ("pareto.csv", "pareto/pareto.csv") if p in names or
                p.split("/")[0] in names), None)
    if rel is None:
        return None, ""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(parent_id, rel, tmp)
        except Exception:  # noqa: BLE001 - "pareto/" without the csv
            return None, ""
        return _read_trials_csv(Path(local)), f"runs:/{parent_id}/{rel}"


# ============================================================================= selection
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
        return _float(self.row.get(column))


def _float(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def _num(value: float) -> str:
    """A float as tag text that reads back to the same float (so comparisons stay exact)."""
    v = _float(value)
    return repr(v) if math.isfinite(v) else "nan"


def _describe_row(row: Mapping[str, Any]) -> str:
    return (f"trial {row['trial_id']} (variant {row['variant_id']}: mIoU {_float(row.get('val_mIoU')):.4f}, "
            f"{_float(row.get('latency_ms')):.2f} ms)")


def _dominators(df: pd.DataFrame, row: Mapping[str, Any]) -> pd.DataFrame:
    """Front members that dominate ``row`` (no worse in both objectives, better in one), best mIoU first.

    Every dominated point is dominated by at least one front member, so this is never empty for a
    completed trial off the front.
    """
    m, lat = _float(row.get("val_mIoU")), _float(row.get("latency_ms"))
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
        best = within.sort_values(["val_mIoU", "latency_ms", "trial_id"], ascending=[False, True, True]).iloc[0]
        return _selection(best, f"max_latency_ms<={budget:g}", on_front=True)
    points = _pareto.points_from_records(front.to_dict("records"), OBJECTIVES)
    kp = _pareto.knee_point(points, OBJECTIVES)
    row = front[front["trial_id"] == kp.id].iloc[0]
    return _selection(row, "knee", on_front=True)


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
            math.isfinite(_float(row["val_mIoU"])) and math.isfinite(_float(row["latency_ms"]))):
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


# ============================================================================= size class + recipe
@dataclass(frozen=True)
class SizeClass:
    """Which official recipe a variant gets: the preset nearest in (log params, log MACs)."""

    name: str                 # tiny | small | base
    params: int               # at 150 classes
    macs: int                 # at 512x512, 150 classes
    distances: dict[str, float]
    exact_preset: bool = False


def size_class(variant: Variant) -> SizeClass:
    """The nearest preset by params and MACs, both counted at 150 classes and 512x512 (log distance).

    A variant equal to a preset's architecture gets that preset. Counting uses the model issue's
    FLOP counter (one model build, ~1 s).
    """
    params, macs = _complexity_150_512(variant.model.replace(num_classes=150, norm="BN"))
    dist = {name: math.hypot(math.log(params / p), math.log(macs / m))
            for name, (p, m) in PRESET_COMPLEXITY.items()}
    preset = variant.preset
    name = preset if preset in PRESET_COMPLEXITY else min(dist, key=dist.get)
    return SizeClass(name, params, macs, dist, exact_preset=preset is not None)


@functools.lru_cache(maxsize=64)
def _complexity_150_512(cfg: Any) -> tuple[int, int]:
    from topnas.topformer.complexity import count_complexity

    cx = count_complexity(cfg, (512, 512))
    return cx.params, cx.macs


def experiments_dir() -> Path:
    """``experiments/`` of this checkout (beside the package), else of the working directory."""
    beside = Path(__file__).resolve().parents[2] / "experiments"
    if beside.is_dir():
        return beside
    here = Path.cwd() / "experiments"
    if here.is_dir():
        return here
    raise ConfigError("experiments", str(beside), "a checkout with experiments/*.yaml (the official recipes)")


def recipe_path(size: str) -> Path:
    path = experiments_dir() / f"topformer_{size}_512x512_160k_ade20k.yaml"
    if not path.is_file():
        raise ConfigError("size class", size, sorted(PRESET_COMPLEXITY), hint=f"{path} is missing")
    return path


def experiment_stem(variant: Variant) -> str:
    h, w = variant.input_size
    return f"{variant.id}_{h}x{w}_160k_ade20k"


def build_experiment(
    selection: Selection,
    size: SizeClass,
    *,
    num_classes: int = 150,
    experiment: str = FULL_EXPERIMENT,
) -> dict[str, Any]:
    """The promoted training config (raw mapping): the variant plus the size class's 160k recipe.

    Every section except ``model``, ``name`` and ``tracking.experiment`` is the composed official
    file (``experiments/topformer_<size>_512x512_160k_ade20k.yaml`` with its ``_base_`` files), so
    the lr rule comes with it (tiny 3e-4, small/base 1.2e-4). A variant at another input size gets
    the crop and scales of that size (as the official 448x448 config). The backbone starts from the
    size class's official ImageNet checkpoint (``model.pretrained`` of the recipe) with
    ``model.init: imagenet_nearest``: a searched variant inherits sliced weights from it (leading
    channels, first blocks of a stage, leading heads), a preset loads it whole, so the 160k result
    compares with the official TopFormer-T/S/B.
    """
    from topnas.platform.train.config import compose_yaml

    raw = compose_yaml(recipe_path(size.name))
    raw.pop("name", None)
    variant = selection.variant
    model = dict(raw.get("model") or {})
    inline = variant.to_dict()
    inline.pop("id", None)
    inline.pop("name", None)
    # model.num_classes / model.norm of the training config govern; the inline copy agrees with them
    inline["model"] = {k: v for k, v in inline["model"].items() if k != "norm"}
    inline["model"]["num_classes"] = num_classes
    model.update({"preset": None, "variant": inline, "num_classes": num_classes, "init": "imagenet_nearest"})
    if not model.get("pretrained"):
        raise ConfigError(f"{recipe_path(size.name).name}:model.pretrained", None,
                          "the official ImageNet checkpoint of the recipe")
    data = dict(raw.get("data") or {})
    h, w = variant.input_size
    if (h, w) != tuple(data.get("crop_size", (512, 512))):
        data["crop_size"] = [h, w]
        data["img_scale"] = [2048, min(h, w)]
        data["test_img_scale"] = [2048, min(h, w)]
    lr = LR_BY_SIZE[size.name]
    optimizer = dict(raw.get("optimizer") or {})
    if not math.isclose(float(optimizer.get("lr", lr)), lr, rel_tol=1e-9):
        raise ConfigError(f"{recipe_path(size.name).name}:optimizer.lr", optimizer.get("lr"), [lr],
                          hint="the official lr rule: tiny 3e-4, small/base 1.2e-4")
    optimizer["lr"] = lr
    out: dict[str, Any] = {"name": experiment_stem(variant), "model": model, "data": data,
                           "optimizer": optimizer}
    for section in ("schedule", "runtime", "scaling"):
        if section in raw:
            out[section] = raw[section]
    tracking_section = dict(raw.get("tracking") or {})
    tracking_section["experiment"] = experiment
    out["tracking"] = tracking_section
    return out


def _header(selection: Selection, record: SweepRecord, size: SizeClass, recipe: Path, path: Path) -> str:
    lat = (selection.value("latency_ms"), selection.value("latency_lo"), selection.value("latency_hi"))
    lines = [
        f"Promoted from sweep {record.name}: trial {selection.trial_id}, rule {selection.rule}"
        + (" (FORCED: off the Pareto front)" if selection.forced else "") + f", {time.strftime('%Y-%m-%d %H:%M')}.",
        f"Variant {selection.variant_id} at {selection.variant.input_size[0]}x{selection.variant.input_size[1]}: "
        f"proxy mIoU {selection.value('val_mIoU'):.4f}, predicted latency {lat[0]:.2f} ms "
        f"[{lat[1]:.2f}, {lat[2]:.2f}].",
        f"Size class {size.name}: {size.params / 1e6:.2f} M params, {size.macs / 1e9:.3f} GMACs at 512x512 "
        f"(150 classes); recipe {recipe.name} (lr {LR_BY_SIZE[size.name]:g}).",
        f"Train it: topnas train {_display_path(path)}   (registry + finalize: `topnas promote --run-full`)",
    ]
    return "".join(f"# {line}\n" for line in lines)


def _display_path(path: Path) -> str:
    try:
        return str(Path(path).absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class _Dumper(yaml.SafeDumper):
    pass


def _flow_lists(dumper: yaml.SafeDumper, data: list) -> Any:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


_Dumper.add_representer(list, _flow_lists)
_Dumper.add_representer(tuple, _flow_lists)


def write_experiment(config: Mapping[str, Any], path: str | os.PathLike[str], header: str = "") -> Path:
    """Write a training YAML and check it loads as a :class:`TrainConfig` (raises ConfigError if not)."""
    from topnas.platform.train.config import load_config

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = header + yaml.dump(dict(config), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=110)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    try:
        load_config(tmp)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def scale_down_experiment(
    promoted_yaml: str | os.PathLike[str],
    fixture_yaml: str | os.PathLike[str] | None = None,
    *,
    max_iters: int | None = None,
) -> dict[str, Any]:
    """A scaled-down copy of a promoted config: same variant, optimizer and schedule shape, on the fixture.

    From ``fixture_yaml`` (default ``experiments/demo_tiny_fixture.yaml``) it takes the dataset
    (``data``: root, fixture, crop and scales, batch), ``model.num_classes`` / ``norm``, the workers
    (``scaling``), the intervals (``runtime``) and ``schedule.max_iters`` (or ``max_iters``); the
    warm-up keeps its share of the run (1500 of 160k). lr, betas, weight decay, head lr x10 and the
    poly decay stay the official ones. ``model.pretrained`` / ``model.init`` come from the fixture
    file (no checkpoint there: ``init: scratch``). The result ``_base_``-s the promoted file.
    """
    from topnas.platform.train.config import compose_yaml

    promoted_yaml = Path(promoted_yaml)
    fixture_yaml = Path(fixture_yaml) if fixture_yaml else experiments_dir() / "demo_tiny_fixture.yaml"
    small = compose_yaml(fixture_yaml)
    base = compose_yaml(promoted_yaml)
    iters = int(max_iters or (small.get("schedule") or {}).get("max_iters") or 300)
    if iters <= 0:
        raise ConfigError("--max-iters", max_iters, "a positive number of iterations")
    full_iters = int((base.get("schedule") or {}).get("max_iters", OFFICIAL_ITERS))
    full_warmup = int((base.get("schedule") or {}).get("warmup_iters", OFFICIAL_WARMUP))
    warmup = max(1, round(full_warmup * iters / full_iters))
    small_model = small.get("model") or {}
    runtime = dict(small.get("runtime") or {})
    interval = min(int(runtime.get("eval_interval", iters)), iters)
    out: dict[str, Any] = {
        "_base_": [promoted_yaml.name],
        "name": promoted_yaml.stem.replace("_160k_ade20k", "") + f"_{iters}it_fixture",
        "model": {"num_classes": int(small_model.get("num_classes", 5)),
                  "norm": small_model.get("norm", "BN"), "pretrained": small_model.get("pretrained"),
                  # the fixture's own choice; without a checkpoint it trains from scratch, and says so
                  "init": small_model.get("init") or ("imagenet_nearest" if small_model.get("pretrained")
                                                      else "scratch")},
        "data": small.get("data") or {},
        "schedule": {"max_iters": iters, "warmup_iters": min(warmup, iters)},
        "runtime": {"log_interval": min(int(runtime.get("log_interval", 20)), iters),
                    "eval_interval": interval, "checkpoint_interval": interval},
        "scaling": small.get("scaling") or {},
    }
    return out


# ============================================================================= registry
def _ensure_registered_model(client: MlflowClient, name: str) -> None:
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
    def num(v: float) -> str:
        return _num(v)

    return {
        TAG_STAGE: "promoted",
        TAG_SWEEP: record.name,
        TAG_SWEEP_RUN: record.parent_run_id or "",
        TAG_TRIAL: selection.trial_id,
        TAG_TRIAL_RUN: selection.run_id,
        TAG_VARIANT: selection.variant_id,
        TAG_SIZE: size.name,
        TAG_PROXY_MIOU: num(selection.value("val_mIoU")),
        TAG_LAT: num(selection.value("latency_ms")),
        TAG_LAT_LO: num(selection.value("latency_lo")),
        TAG_LAT_HI: num(selection.value("latency_hi")),
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
    _ensure_registered_model(client, model_name)
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


# ============================================================================= promote
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
    yaml_path = write_experiment(config, target, _header(selection, record, size, recipe, target))
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


# ============================================================================= launch
@dataclass(frozen=True)
class LaunchResult:
    mode: str                        # "local" | "ray-job"
    run_name: str
    command: str
    job_id: str | None = None
    address: str | None = None
    mlflow_run_id: str | None = None
    finalized: FinalizeResult | None = None


def full_run_command(promotion: Promotion, python: str, yaml_arg: str) -> list[str]:
    """The full-training entrypoint: train, then finalize, in one process."""
    return [python, "-m", "topnas", "promote", "--run-full", yaml_arg, "--run-name", promotion.run_name,
            "--model-name", promotion.model_name, "--model-version", promotion.version]


def launch_local(promotion: Promotion, *, predictor: str | None = None) -> LaunchResult:
    """Run the full training in this process (Ray Train on a local Ray), then :func:`finalize`."""
    cmd = " ".join(shlex.quote(c) for c in full_run_command(promotion, sys.executable, str(promotion.train_yaml)))
    result = run_full_training(promotion.train_yaml, run_name=promotion.run_name, model_name=promotion.model_name,
                               model_version=promotion.version, tracking_uri=promotion.tracking_uri,
                               predictor=predictor)
    return LaunchResult("local", promotion.run_name, cmd, mlflow_run_id=result.run_id, finalized=result)


_LOCAL_HOSTS = re.compile(r"^(https?://)?(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/?$")


def submit_ray_job(
    promotion: Promotion,
    *,
    address: str,
    python: str | None = None,
    tracking_uri: str | None = None,
    env: Mapping[str, str] | None = None,
    working_dir: str | os.PathLike[str] | None = None,
) -> LaunchResult:
    """Submit the full training as a Ray job (``JobSubmissionClient(address).submit_job``).

    The job runs ``<python> -m topnas promote --run-full <yaml> ...`` in a copy of ``working_dir``
    (default: the checkout; ``.gitignore``-d paths such as ``.venv`` and ``runs`` stay behind); a
    YAML inside it is passed by relative path, one outside by absolute path (right for a cluster on
    this machine or on a shared file system). ``python`` is the interpreter on the cluster nodes (a
    bare ``python`` in a job resolves to the system one); default this process's interpreter, right
    for a local cluster. ``env`` reaches the job: ``MLFLOW_TRACKING_URI`` (``tracking_uri``, as the
    cluster sees the server), ``RAY_AUTH_MODE`` when set here, and for a cluster on this machine
    ``TOPNAS_HOME`` (so ``{runs}`` paths mean the same folder).
    """
    from ray.job_submission import JobSubmissionClient

    working_dir = Path(working_dir) if working_dir else experiments_dir().parent
    yaml_abs = Path(promotion.train_yaml).resolve()
    try:
        yaml_arg = str(yaml_abs.relative_to(working_dir.resolve()))
    except ValueError:  # e.g. --out-dir elsewhere: fine when the cluster shares this file system
        yaml_arg = str(yaml_abs)
        if not _LOCAL_HOSTS.match(address.strip()):
            log.warning("%s is outside the job's working_dir %s: the job reads it by absolute path, so the "
                        "cluster nodes must share this file system", yaml_abs, working_dir)
    python = python or os.environ.get("TOPNAS_CLUSTER_PYTHON") or sys.executable
    env_vars = {"MLFLOW_TRACKING_URI": tracking_uri or promotion.tracking_uri, "RAY_USAGE_STATS_ENABLED": "0"}
    if os.environ.get("RAY_AUTH_MODE"):
        env_vars["RAY_AUTH_MODE"] = os.environ["RAY_AUTH_MODE"]
    if _LOCAL_HOSTS.match(address.strip()):
        env_vars["TOPNAS_HOME"] = str(paths.runs_root())
    env_vars.update({str(k): str(v) for k, v in (env or {}).items()})
    entry = full_run_command(promotion, python, yaml_arg)
    entrypoint = " ".join(shlex.quote(c) for c in entry)
    client = JobSubmissionClient(address)
    job_id = client.submit_job(
        entrypoint=entrypoint,
        submission_id=f"topnas-promote-{promotion.selection.variant_id}-v{promotion.version}-{int(time.time())}",
        runtime_env={"working_dir": str(working_dir),
                     "excludes": [".venv", "runs", ".git", "**/__pycache__", ".hypothesis", ".pytest_cache",
                                  "*.onnx", "mlruns", "mlflow.db"],
                     "env_vars": env_vars},
        metadata={"topnas.model": promotion.model_name, "topnas.version": promotion.version,
                  "topnas.run_name": promotion.run_name},
    )
    tracking.get_client(promotion.tracking_uri).set_model_version_tag(
        promotion.model_name, promotion.version, T + "ray_job_id", job_id)
    return LaunchResult("ray-job", promotion.run_name, entrypoint, job_id=job_id, address=address)


def find_full_run(tracking_uri: str, run_name: str, timeout_s: float = 0.0, poll_s: float = 2.0) -> str | None:
    """The MLflow run id of full run ``run_name`` (tag ``topnas.train_run``), waiting up to ``timeout_s``."""
    from mlflow.entities import ViewType

    client = tracking.get_client(tracking_uri)
    deadline = time.monotonic() + timeout_s
    while True:
        exps = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
        if exps:
            runs = client.search_runs(exps, filter_string=f"tags.`{TAG_TRAIN_RUN}` = '{run_name}'", max_results=1)
            if runs:
                return runs[0].info.run_id
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll_s)


# ============================================================================= full run + finalize
@dataclass(frozen=True)
class FinalizeResult:
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


def run_full_training(
    yaml_path: str | os.PathLike[str],
    *,
    run_name: str,
    model_name: str,
    model_version: str,
    tracking_uri: str | None = None,
    predictor: str | None = None,
) -> FinalizeResult:
    """The full-training job: :func:`~topnas.platform.train.run_training` then :func:`finalize`.

    The run is tagged with its model version and lineage; ``resume="auto"`` continues the run's
    checkpoints if the job is re-submitted with the same name.
    """
    from topnas.platform.train import load_config, run_training

    uri = tracking.resolve_tracking_uri(tracking_uri)
    client = tracking.get_client(uri)
    mv = client.get_model_version(model_name, str(model_version))
    # The variant id the training package tags is that of the trained config (its num_classes may
    # differ from the sweep's): the sweep's id goes on the run as topnas.promoted_variant_id.
    lineage = {(T + "promoted_variant_id" if k == TAG_VARIANT else k): v for k, v in mv.tags.items()
               if k.startswith(T) and k not in (TAG_STAGE, TAG_TRAIN_RUN)}
    lineage.update({TAG_MODEL_NAME: model_name, TAG_PROMOTED_VERSION: str(model_version), "topnas.kind": "promoted_full"})
    cfg = load_config(yaml_path)
    result = run_training(cfg, run_name=run_name, resume="auto", tracking_uri=uri, extra_tags=lineage)
    if not result.mlflow_run_id:
        raise ConfigError("tracking.enabled", False, [True], hint="a promoted run must be tracked in MLflow")
    return finalize(result.mlflow_run_id, tracking_uri=uri, model_name=model_name, predictor=predictor)


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


@dataclass(frozen=True)
class PredictorChoice:
    """The latency predictor finalize prices with, its identity (``<stem>-<sha256[:10]>``) and origin."""

    predictor: Any = field(repr=False)
    id: str
    source: str


def _predictor_id(path: Path) -> str:
    import hashlib

    return f"{path.stem}-{hashlib.sha256(path.read_bytes()).hexdigest()[:10]}"


def _predictor_file(path: Path, what: str) -> PredictorChoice:
    from topnas.platform.latency.predictor import LatencyPredictor

    try:
        return PredictorChoice(LatencyPredictor.load(path), _predictor_id(path), what)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError("--predictor", str(path), "a latency predictor JSON file (see `topnas latency fit`)",
                          hint=f"cannot read it: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") \
            from None


def _load_predictor(client: MlflowClient, promoted: ModelVersion | None, predictor: str | None) -> PredictorChoice:
    """Exactly the predictor the sweep priced the promoted variant with, or ``predictor`` when given.

    The promoted version records the sweep's predictor id (``topnas.predictor_id``, the file stem
    plus the first 10 hex of its sha256) and the sweep's run; the file is looked up, in order, among
    the sweep run's ``config/*.json`` artifacts and at the path the sweep recorded (param
    ``predictor.path``), and used only when its bytes hash to the recorded id. Anything else stops
    with an error naming what is missing: latencies from different predictors are never mixed.
    """
    from mlflow.exceptions import MlflowException

    from topnas.platform.latency.predictor import PACKAGED

    if predictor:
        path = Path(predictor)
        if not path.is_file():
            path = PACKAGED / f"{predictor}.json"
            if not path.is_file():
                known = sorted(p.stem for p in PACKAGED.glob("*.json"))
                raise ConfigError("--predictor", predictor, f"a predictor JSON file or a packaged name {known}")
        choice = _predictor_file(path, f"--predictor {predictor}")
        recorded = (promoted.tags.get(TAG_PREDICTOR) if promoted else "") or ""
        if recorded and recorded != choice.id:
            log.warning("--predictor %s (%s) is not the sweep's predictor %s: the final latency is not comparable "
                        "with the promoted one", predictor, choice.id, recorded)
        return choice
    how = "pass --predictor <the predictor JSON the sweep used, or a packaged name>"
    if promoted is None:
        raise ConfigError("--predictor", None, "a latency predictor",
                          hint=f"the run was not promoted from a sweep (no model version records its predictor); {how}")
    recorded = promoted.tags.get(TAG_PREDICTOR) or ""
    sweep_run = promoted.tags.get(TAG_SWEEP_RUN) or ""
    if not recorded:
        raise ConfigError("--predictor", None, "a latency predictor",
                          hint=f"promoted version {promoted.version} records no sweep predictor "
                               f"(tag {TAG_PREDICTOR}); {how}")
    looked: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        if sweep_run:
            try:
                names = [f.path for f in client.list_artifacts(sweep_run, "config") if f.path.endswith(".json")]
                for rel in names:
                    local = Path(client.download_artifacts(sweep_run, rel, tmp))
                    if _predictor_id(local) == recorded:
                        return _predictor_file(local, f"runs:/{sweep_run}/{rel}")
                recorded_path = client.get_run(sweep_run).data.params.get("predictor.path") or ""
            except (MlflowException, OSError) as exc:
                raise ConfigError("--predictor", None, f"the sweep's predictor {recorded}",
                                  hint=f"cannot read sweep run {sweep_run} ({str(exc).splitlines()[0][:200]}); "
                                       f"{how}") from None
            looked.append(f"artifacts of sweep run {sweep_run} ({', '.join(names) or 'no config/*.json'})")
            if recorded_path:
                p = Path(recorded_path)
                if p.is_file() and _predictor_id(p) == recorded:
                    return _predictor_file(p, recorded_path)
                looked.append(f"{recorded_path} ({'another file now' if p.is_file() else 'missing'})")
        else:
            looked.append(f"the promoted version {promoted.version} names no sweep run (tag {TAG_SWEEP_RUN})")
    raise ConfigError("--predictor", None, f"the sweep's predictor {recorded}",
                      hint=f"not found: looked in {'; '.join(looked)}; {how}")


def _onnx_artifact(client: MlflowClient, run_id: str) -> str:
    files = [f.path for f in client.list_artifacts(run_id, "onnx") if f.path.endswith(".onnx")]
    if not files:
        tags = client.get_run(run_id).data.tags
        raise ConfigError("run", run_id, "a finished full run with an onnx/*.onnx artifact",
                          hint=tags.get("topnas.onnx_error", "the training job logged no ONNX export"))
    return sorted(files)[0]


def _onnx_input_hw(path: str) -> tuple[int, int] | None:
    import onnx

    model = onnx.load(path, load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    values = [d.dim_value for d in dims]
    return (values[2], values[3]) if len(values) == 4 and all(values[2:]) else None


def _graph_kernels_reader():
    """The latency package's ONNX graph -> kernel list reader (a seam: tests substitute it)."""
    from topnas.platform.latency.onnx_graph import onnx_kernels

    return onnx_kernels


def price_onnx(choice: PredictorChoice, onnx_path: str | os.PathLike[str], what: str = "") -> Any:
    """The predictor's :class:`Prediction` for the exported graph itself (its own kernels, not the config).

    Refuses (``ConfigError``), rather than fall back to the config's prediction, when the graph
    cannot be read into kernels or the predictor cannot price one of its kernel types.
    """
    reader = _graph_kernels_reader()
    if reader is None:
        raise ConfigError("final latency", what or str(onnx_path),
                          "the exported ONNX graph priced by the graph-generic predictor",
                          hint="no ONNX graph -> kernels reader (topnas.platform.latency.onnx_graph.onnx_kernels); "
                               "finalize will not report the config's prediction as the export's")
    if not hasattr(choice.predictor, "predict_kernels"):
        raise ConfigError("--predictor", choice.source, "a predictor that prices kernel lists (predict_kernels)")
    kernels = list(reader(os.fspath(onnx_path)))
    if not kernels:
        raise ConfigError("final latency", what or str(onnx_path), "an exported TopFormer graph",
                          hint="the ONNX graph holds no kernel to price")
    return choice.predictor.predict_kernels(kernels)


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
    :func:`_load_predictor`; never a fallback) and, beside them, ``promoted_proxy_mIoU``,
    ``promoted_latency_ms`` / ``_lo`` / ``_hi`` and ``config_latency_ms`` (the same predictor on the
    run's config, so a gap between config and export shows); plus ``promotion/finalize.json``.
    Then registers version vN+1 (source: the run's artifacts, with the lineage tags, the final
    numbers and the run's setup, :func:`run_setup`, that :func:`accept` compares) and moves alias
    ``challenger`` to it. Idempotent: a run finalized before keeps its version.
    """
    from mlflow.entities import Metric

    from topnas.platform.train.config import TrainConfig

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
    onnx_rel = _onnx_artifact(client, run_id)
    choice = _load_predictor(client, promoted, predictor)
    with tempfile.TemporaryDirectory() as tmp:
        cfg_local = client.download_artifacts(run_id, "config/train_config.yaml", tmp)
        cfg = TrainConfig.from_yaml_text(Path(cfg_local).read_text())
        onnx_local = client.download_artifacts(run_id, onnx_rel, tmp)
        hw = _onnx_input_hw(onnx_local)
        variant = cfg.variant
        if hw is not None and tuple(hw) != tuple(variant.input_size):
            raise ConfigError("onnx input", list(hw), [list(variant.input_size)],
                              hint="the exported graph does not match the run's variant")
        pred = price_onnx(choice, onnx_local, onnx_rel)
    config_pred = choice.predictor.predict(variant)
    setup = run_setup(cfg, choice.id)
    step = int(run.data.tags.get("topnas.final_iteration") or 0)
    ptags = promoted.tags if promoted else {}
    promoted_vals = {k: _float(ptags.get(t)) for k, t in (("proxy_mIoU", TAG_PROXY_MIOU), ("latency_ms", TAG_LAT),
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

    _ensure_registered_model(client, model_name)
    tags = {k: v for k, v in ptags.items() if k.startswith(T)}
    tags.update({TAG_STAGE: "trained", TAG_FULL_RUN: run_id, TAG_FINAL_MIOU: _num(final_miou),
                 TAG_FINAL_LAT: _num(pred.ms), TAG_FINAL_LAT_LO: _num(pred.lo),
                 TAG_FINAL_LAT_HI: _num(pred.hi), TAG_PROMOTED_VERSION: str(promoted.version) if promoted else "",
                 T + "trained_variant_id": variant.id, T + "onnx_artifact": onnx_rel, **setup})
    description = (f"{ptags.get(TAG_VARIANT, variant.id)} after the full run {run.info.run_name}: "
                   f"mIoU {final_miou:.4f}, predicted {pred.ms:.2f} ms [{pred.lo:.2f}, {pred.hi:.2f}]")
    mv = client.create_model_version(model_name, source=run.info.artifact_uri, run_id=run_id, tags=tags,
                                     description=description)
    client.set_registered_model_alias(model_name, CHALLENGER, mv.version)
    return FinalizeResult(run_id, model_name, str(mv.version), str(promoted.version) if promoted else None,
                          final_miou, pred.ms, pred.lo, pred.hi, pred.out_of_range, onnx_rel,
                          promoted_vals, choice.id)


def setup_differences(champion: Mapping[str, str], candidate: Mapping[str, str]) -> list[str]:
    """``"<what>: champion X, candidate Y"`` for each :func:`run_setup` tag that differs (or is unrecorded)."""
    out = []
    for tag, what in SETUP_TAGS.items():
        a, b = champion.get(tag), candidate.get(tag)
        if a != b:
            out.append(f"{what}: champion {a if a is not None else 'not recorded'}, "
                       f"candidate {b if b is not None else 'not recorded'}")
    return out


def _result_from_version(mv: ModelVersion, run_id: str, model_name: str) -> FinalizeResult:
    t = mv.tags
    return FinalizeResult(run_id, model_name, str(mv.version), t.get(TAG_PROMOTED_VERSION) or None,
                          _float(t.get(TAG_FINAL_MIOU)), _float(t.get(TAG_FINAL_LAT)), _float(t.get(TAG_FINAL_LAT_LO)),
                          _float(t.get(TAG_FINAL_LAT_HI)), False, t.get(T + "onnx_artifact", ""),
                          {"proxy_mIoU": _float(t.get(TAG_PROXY_MIOU)), "latency_ms": _float(t.get(TAG_LAT)),
                           "latency_lo": _float(t.get(TAG_LAT_LO)), "latency_hi": _float(t.get(TAG_LAT_HI))},
                          t.get(SETUP_PREDICTOR, ""))


# ============================================================================= accept
@dataclass(frozen=True)
class AcceptDecision:
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
    ``topnas.final_mIoU`` / ``topnas.final_latency_ms``). A run not finalized yet is finalized first.
    No champion yet: the candidate becomes champion. Refused (:class:`PromotionRefused`) when the two
    runs differ in dataset, number of classes, input size, iterations or latency predictor
    (:func:`run_setup`), naming each difference, unless ``force``; a forced move is tagged
    ``topnas.accept_forced`` on the new champion version.
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
    old = (_float(current.tags.get(TAG_FINAL_MIOU)), _float(current.tags.get(TAG_FINAL_LAT)))
    describe_old = f"v{current.version} (mIoU {old[0]:.4f}, {old[1]:.2f} ms)"
    describe_new = f"v{fin.version} (mIoU {new[0]:.4f}, {new[1]:.2f} ms)"
    if all(math.isfinite(x) for x in old):
        points = [_pareto.ParetoPoint("champion", {"val_mIoU": old[0], "latency_ms": old[1]}),
                  _pareto.ParetoPoint("candidate", {"val_mIoU": new[0], "latency_ms": new[1]})]
        flags = {f.id: f.pareto for f in _pareto.pareto_flags(points, OBJECTIVES)}
        if not flags["candidate"]:
            return AcceptDecision(name, fin.version, str(current.version), str(current.version), False,
                                  f"kept champion {describe_old}: it dominates {describe_new}{note}")
        why = "it dominates the champion" if not flags["champion"] else "neither dominates the other"
    else:
        why = "the champion has no final mIoU / latency to compare"
    client.set_registered_model_alias(name, CHAMPION, fin.version)
    return AcceptDecision(name, fin.version, str(current.version), fin.version, True,
                          f"champion moved from {describe_old} to {describe_new}: {why}{note}")
