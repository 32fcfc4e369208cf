"""Pricing a full run's ONNX export with exactly the latency predictor its sweep used.

Latencies from different predictors are never mixed: the predictor is found by the id the sweep
recorded (file stem + sha256 prefix) or given explicitly, and the exported graph's own kernels are
priced, never the config's prediction in its place.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from topnas.errors import ConfigError
from topnas.platform.promote.lineage import TAG_PREDICTOR, TAG_SWEEP_RUN

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

__all__ = ["PredictorChoice", "load_predictor", "onnx_artifact", "onnx_input_hw", "predictor_id", "price_onnx"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictorChoice:
    """The latency predictor finalize prices with, its identity (``<stem>-<sha256[:10]>``) and origin."""

    predictor: Any = field(repr=False)
    id: str
    source: str


def predictor_id(path: Path) -> str:
    """A predictor file's identity, ``<stem>-<sha256[:10]>``: what a sweep records and finalize matches."""
    import hashlib

    return f"{path.stem}-{hashlib.sha256(path.read_bytes()).hexdigest()[:10]}"


def _predictor_file(path: Path, what: str) -> PredictorChoice:
    from topnas.platform.latency.predictor import LatencyPredictor

    try:
        return PredictorChoice(LatencyPredictor.load(path), predictor_id(path), what)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError("--predictor", str(path), "a latency predictor JSON file (see `topnas latency fit`)",
                          hint=f"cannot read it: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") \
            from None


def load_predictor(client: MlflowClient, promoted: ModelVersion | None, predictor: str | None) -> PredictorChoice:
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
                    if predictor_id(local) == recorded:
                        return _predictor_file(local, f"runs:/{sweep_run}/{rel}")
                recorded_path = client.get_run(sweep_run).data.params.get("predictor.path") or ""
            except (MlflowException, OSError) as exc:
                raise ConfigError("--predictor", None, f"the sweep's predictor {recorded}",
                                  hint=f"cannot read sweep run {sweep_run} ({str(exc).splitlines()[0][:200]}); "
                                       f"{how}") from None
            looked.append(f"artifacts of sweep run {sweep_run} ({', '.join(names) or 'no config/*.json'})")
            if recorded_path:
                p = Path(recorded_path)
                if p.is_file() and predictor_id(p) == recorded:
                    return _predictor_file(p, recorded_path)
                looked.append(f"{recorded_path} ({'another file now' if p.is_file() else 'missing'})")
        else:
            looked.append(f"the promoted version {promoted.version} names no sweep run (tag {TAG_SWEEP_RUN})")
    raise ConfigError("--predictor", None, f"the sweep's predictor {recorded}",
                      hint=f"not found: looked in {'; '.join(looked)}; {how}")


def onnx_artifact(client: MlflowClient, run_id: str) -> str:
    """The path of the run's exported model among its artifacts (``onnx/*.onnx``)."""
    files = [f.path for f in client.list_artifacts(run_id, "onnx") if f.path.endswith(".onnx")]
    if not files:
        tags = client.get_run(run_id).data.tags
        raise ConfigError("run", run_id, "a finished full run with an onnx/*.onnx artifact",
                          hint=tags.get("topnas.onnx_error", "the training job logged no ONNX export"))
    return sorted(files)[0]


def onnx_input_hw(path: str) -> tuple[int, int] | None:
    """``(height, width)`` of the exported graph's input, when the graph fixes them."""
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
