"""MLflow helpers shared by train, sweep and promote: URIs, experiments, params, run reuse.

Layout we build on: one parent run per sweep, one child run per trial tagged
``mlflow.parentRunId``, each run found again on resume by a ``topnas.run_key`` tag instead of
being duplicated. Everything goes through :class:`mlflow.MlflowClient` with an explicit tracking
URI, so no fluent global state is needed (and Ray workers can do the same).

Example::

    client = get_client()                        # explicit > $MLFLOW_TRACKING_URI > runs/mlflow.db
    exp = get_or_create_experiment("sweep-demo", client=client)
    parent, resumed = start_or_resume_run(client, exp, run_key="sweep:demo", run_name="demo")
    log_params_batched(client, parent.info.run_id, flatten_params({"train": {"lr": 3e-4}}))

``import mlflow`` takes ~1.4 s, so it happens inside the functions that need it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping
from urllib.parse import unquote, urlparse

from topnas.errors import ConfigError
from topnas.platform import paths

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

__all__ = [
    "GIT_COMMIT_TAG",
    "MAX_PARAMS_PER_BATCH",
    "MAX_PARAM_KEY_LENGTH",
    "MAX_PARAM_VALUE_LENGTH",
    "EXPERIMENT_KIND_TAG",
    "MODEL_TRAINING_KIND",
    "PARENT_RUN_TAG",
    "RUN_KEY_TAG",
    "UI_MODE_QUERY",
    "default_artifact_location",
    "find_run_by_tag",
    "flatten_params",
    "get_client",
    "get_or_create_experiment",
    "git_commit",
    "log_params_batched",
    "resolve_tracking_uri",
    "start_or_resume_run",
]

log = logging.getLogger(__name__)

# Limits of MLflow 3.17 (mlflow.utils.validation): MAX_PARAM_VAL_LENGTH, MAX_ENTITY_KEY_LENGTH,
# MAX_PARAMS_TAGS_PER_BATCH.
MAX_PARAM_VALUE_LENGTH = 6000
MAX_PARAM_KEY_LENGTH = 250
MAX_PARAMS_PER_BATCH = 100

RUN_KEY_TAG = "topnas.run_key"
# The experiment type MLflow 3's UI reads from an experiment tag (the value its "Machine learning"
# choice writes), so topnas experiments open as model training, not as GenAI apps (traces first).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
# MLflow 3.17's UI picks its mode from this URL parameter (default: GenAI) before any experiment tag.
UI_MODE_QUERY = "workflowType=machine_learning"
PARENT_RUN_TAG = "mlflow.parentRunId"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
_TRUNCATED = "...[truncated]"


def absolute_sqlite_uri(uri: str) -> str:
    """``sqlite:///rel.db`` -> absolute: Ray workers run in another working directory."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and uri != prefix + ":memory:":
        return prefix + str(Path(uri[len(prefix):]).absolute())
    return uri


def check_reachable(uri: str, field: str = "tracking.uri", timeout_s: float = 5.0) -> None:
    """Fail early, in one line naming ``field``, when an http(s) tracking server does not answer.

    MLflow's client would otherwise retry a refused connection for minutes and end in a traceback,
    after the command had already written its run folder. Any HTTP answer counts as reachable;
    only a connection failure or timeout does not. Non-HTTP URIs (sqlite, file) are not checked.
    """
    import urllib.error
    import urllib.request

    if not str(uri).startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(str(uri).rstrip("/") + "/health", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # the server answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(field, uri, "a reachable MLflow tracking server", hint=(
            f"no answer within {timeout_s:g} s ({reason}); start it (`mlflow server --host ... --port ...`) "
            "or point tracking.uri / $MLFLOW_TRACKING_URI at a running one")) from None


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<runs>/mlflow.db``."""
    if uri:
        return str(uri)
    return paths.default_tracking_uri()


def get_client(tracking_uri: str | None = None) -> MlflowClient:
    """An :class:`mlflow.MlflowClient` on :func:`resolve_tracking_uri` (registry URI the same)."""
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def default_artifact_location(tracking_uri: str, experiment_name: str) -> str | None:
    """Where a new experiment's artifacts go when none is given.

    For a local SQLite store: ``<folder of the .db>/mlartifacts/<experiment>`` (MLflow's own
    default would be ``./mlruns`` under whatever directory the process runs in). For a tracking
    server: ``None``, so the server's ``--artifacts-destination`` applies.
    """
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite":
        return None
    db_path = unquote(tracking_uri[len("sqlite:///"):])
    if not db_path or db_path == ":memory:":
        return None
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment_name).strip("_") or "experiment"
    return (Path(db_path).resolve().parent / "mlartifacts" / slug).as_uri()


def get_or_create_experiment(
    name: str,
    artifact_location: str | None = None,
    *,
    client: MlflowClient | None = None,
    tracking_uri: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """The id of experiment ``name``, created (with ``tags``) if it does not exist.

    Created as a model-training experiment (:data:`EXPERIMENT_KIND_TAG` =
    :data:`MODEL_TRAINING_KIND`, unless ``tags`` says otherwise); an existing experiment without
    that tag gets it, one with another kind keeps it. Safe when several processes race to create
    it. A deleted experiment of that name raises :class:`ConfigError` rather than being silently
    restored.
    """
    from mlflow.exceptions import MlflowException

    if not isinstance(name, str) or not name.strip():
        raise ConfigError("experiment", name, "a non-empty experiment name")
    client = client or get_client(tracking_uri)
    existing = client.get_experiment_by_name(name)
    if existing is None:
        location = artifact_location or default_artifact_location(client.tracking_uri, name)
        try:
            return client.create_experiment(name, artifact_location=location,
                                            tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND, **dict(tags or {})})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            existing = client.get_experiment_by_name(name)  # another process won the race
            if existing is None:
                raise
    if existing.lifecycle_stage == "deleted":
        raise ConfigError("experiment", name, "an active experiment",
                          hint="it is deleted: `mlflow experiments restore` it or pick another name")
    if EXPERIMENT_KIND_TAG not in existing.tags:  # made by an older topnas or by hand
        client.set_experiment_tag(existing.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    return existing.experiment_id


def flatten_params(
    nested: Mapping[str, Any] | Any,
    sep: str = ".",
    max_length: int = MAX_PARAM_VALUE_LENGTH,
) -> dict[str, str]:
    """Flatten a nested config into MLflow params ``{"train.lr": "0.0003", ...}``.

    Dicts (and dataclasses) recurse; lists/tuples become JSON text (``"[[3, 1, 16, 1]]"``);
    other values ``str()``. Values longer than ``max_length`` are cut and end in
    ``"...[truncated]"``. Raises :class:`ConfigError` for two inputs flattening to one key or a
    key longer than MLflow allows.
    """
    if dataclasses.is_dataclass(nested) and not isinstance(nested, type):
        nested = dataclasses.asdict(nested)
    if not isinstance(nested, Mapping):
        raise ConfigError("params", type(nested).__name__, "a mapping or a dataclass instance")
    if max_length <= len(_TRUNCATED):
        raise ConfigError("max_length", max_length, f"an int > {len(_TRUNCATED)}")
    out: dict[str, str] = {}
    _flatten_into(out, nested, "", sep, max_length)
    return out


def log_params_batched(
    client: MlflowClient,
    run_id: str,
    params: Mapping[str, Any],
    batch_size: int = MAX_PARAMS_PER_BATCH,
) -> int:
    """Log ``params`` in ``log_batch`` calls of at most ``batch_size`` (MLflow's limit: 100).

    Values are ``str()``-ed. Re-logging an identical value (a resumed run) is accepted by MLflow;
    a different value for an existing key raises its ``MlflowException``. Returns the count.
    """
    from mlflow.entities import Param

    if not 1 <= batch_size <= MAX_PARAMS_PER_BATCH:
        raise ConfigError("batch_size", batch_size, f"1..{MAX_PARAMS_PER_BATCH}")
    items = [Param(str(k), str(v)) for k, v in params.items()]
    for start in range(0, len(items), batch_size):
        client.log_batch(run_id, params=items[start:start + batch_size], synchronous=True)
    return len(items)


def find_run_by_tag(
    client: MlflowClient,
    experiment_ids: Iterable[str],
    key: str,
    value: str,
) -> Run | None:
    """The active run whose tag ``key`` equals ``value`` (oldest if several), else ``None``."""
    from mlflow.entities import ViewType

    experiment_ids = [str(e) for e in ([experiment_ids] if isinstance(experiment_ids, str) else experiment_ids)]
    if not experiment_ids:
        raise ConfigError("experiment_ids", experiment_ids, "at least one experiment id")
    if "`" in key or not key:
        raise ConfigError("key", key, "a non-empty tag key without backticks")
    value = str(value)
    quote = "'" if "'" not in value else '"'
    if quote in value:
        raise ConfigError("value", value, "a tag value without both ' and \" quotes")
    runs = client.search_runs(
        experiment_ids,
        filter_string=f"tags.`{key}` = {quote}{value}{quote}",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=10,
        order_by=["attributes.start_time ASC"],
    )
    if not runs:
        return None
    if len(runs) > 1:
        log.warning("%d runs carry tag %s=%s; reusing the oldest, %s", len(runs), key, value,
                    runs[0].info.run_id)
    return runs[0]


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The ``HEAD`` commit of the repository holding ``cwd`` (default: this package), or None."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = proc.stdout.strip()
    return sha if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", sha) else None


def start_or_resume_run(
    client: MlflowClient,
    experiment_id: str,
    run_key: str,
    *,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> tuple[Run, bool]:
    """Reuse the run tagged ``topnas.run_key=run_key`` or create it; returns ``(run, resumed)``.

    A new run gets ``run_key``, ``tags``, the git commit (when known) and, for a child,
    ``mlflow.parentRunId``. A found run is set back to RUNNING and gets ``tags`` again; a found
    run with a different parent raises :class:`ConfigError` (two sweeps sharing a key).
    Activate it for fluent logging with ``mlflow.start_run(run_id=run.info.run_id)``.
    """
    if not run_key:
        raise ConfigError("run_key", run_key, "a non-empty key unique within the experiment")
    existing = find_run_by_tag(client, [experiment_id], RUN_KEY_TAG, run_key)
    if existing is not None:
        run_id = existing.info.run_id
        found_parent = existing.data.tags.get(PARENT_RUN_TAG)
        if parent_run_id and found_parent != parent_run_id:
            raise ConfigError("run_key", run_key, f"a key unique to parent run {parent_run_id}",
                              hint=f"run {run_id} with this key has parent {found_parent}")
        if existing.info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        for k, v in (tags or {}).items():
            client.set_tag(run_id, k, str(v))
        return client.get_run(run_id), True
    all_tags: dict[str, str] = {k: str(v) for k, v in (tags or {}).items()}
    all_tags[RUN_KEY_TAG] = run_key
    if parent_run_id:
        all_tags[PARENT_RUN_TAG] = parent_run_id
    sha = git_commit()
    if sha and GIT_COMMIT_TAG not in all_tags:
        all_tags[GIT_COMMIT_TAG] = sha
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    return run, False


# --------------------------------------------------------------------------- internals


def _flatten_into(out: dict[str, str], node: Mapping[str, Any], prefix: str, sep: str, max_length: int) -> None:
    for raw_key, value in node.items():
        key = f"{prefix}{sep}{raw_key}" if prefix else str(raw_key)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, Mapping) and value:
            _flatten_into(out, value, key, sep, max_length)
            continue
        if len(key) > MAX_PARAM_KEY_LENGTH:
            raise ConfigError("params", key, f"keys of at most {MAX_PARAM_KEY_LENGTH} characters")
        if key in out:
            raise ConfigError("params", key, "unique flattened keys", hint=f"two entries flatten to {key!r}")
        out[key] = _truncate(_to_text(value), max_length)


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, Mapping)):
        try:
            return json.dumps(value, default=str)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def _truncate(text: str, max_length: int) -> str:
    if len(text) <= max_length:
        return text
    return text[: max_length - len(_TRUNCATED)] + _TRUNCATED
