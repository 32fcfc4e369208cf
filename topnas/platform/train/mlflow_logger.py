"""MLflow for training jobs: one run per job, opened by the driver, written to by world-rank 0 only.

* The driver (:func:`open_train_run`) finds the job's run by tag ``topnas.train_run=<run name>``
  (through :func:`topnas.platform.tracking.start_or_resume_run`) or creates it - under the sweep's
  parent run when one is given - and logs the flattened config as params, the tags and the config YAML.
* World-rank 0 (:class:`RankZeroLogger`) logs loss / lr / images per second per log interval,
  ``val_mIoU`` / ``val_mAcc`` / ``val_aAcc`` per evaluation, then the final checkpoint and ONNX;
  the training loop drives it through :class:`BackgroundLogger`, on a thread of its own, so that
  importing MLflow, opening its store and every send overlap training instead of delaying it.
  Other ranks never touch MLflow (mlflow#5817). A resumed job logs into the same run; iterations
  re-run after a failure are not logged again (the first value of a step stays). A tracking server
  outage queues the values and retries with backoff; anything dropped is tagged on the run.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import shutil
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from topnas.platform import tracking
from topnas.platform.envvars import scoped_environ

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from topnas.platform.train.train_config import TrainConfig

__all__ = ["BackgroundLogger", "FINAL_ITERATION_TAG", "LOST_TAG", "STORAGE_PATH_TAG", "RankZeroLogger", "TRAIN_RUN_TAG", "close_train_run", "open_train_run", "run_tags"]

log = logging.getLogger(__name__)

TRAIN_RUN_TAG = "topnas.train_run"
LOST_TAG = "topnas.tracking_lost"
FINAL_ITERATION_TAG = "topnas.final_iteration"  # set when the job reached its last iteration
STORAGE_PATH_TAG = "topnas.storage_path"  # the job's Ray Train run folder
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit per log_batch
RUN_KEY_PREFIX = "train:"


def run_tags(cfg: TrainConfig, run_name: str) -> dict[str, str]:
    variant = cfg.variant
    return {
        TRAIN_RUN_TAG: run_name,
        "topnas.kind": "train",
        "topnas.variant_id": variant.id,
        "topnas.preset": variant.preset or "none",
        "topnas.workers": str(cfg.scaling.num_workers),
        "topnas.device": "cuda" if cfg.scaling.use_gpu else "cpu",
        "topnas.norm": cfg.resolved_norm(),
        "topnas.total_batch_size": str(cfg.total_batch_size),
    }


def open_train_run(
    cfg: TrainConfig,
    run_name: str,
    *,
    tracking_uri: str,
    parent_run_id: str | None = None,
    extra_tags: Mapping[str, str] | None = None,
) -> tuple[MlflowClient, str, bool]:
    """``(client, run_id, resumed)`` for the job ``run_name``; params, tags and config logged."""
    from mlflow.exceptions import MlflowException

    client = tracking.get_client(tracking_uri)
    if parent_run_id:
        experiment_id = client.get_run(parent_run_id).info.experiment_id  # children live beside the parent
    else:
        experiment_id = tracking.get_or_create_experiment(cfg.tracking.experiment, client=client)
    tags = {**run_tags(cfg, run_name), **dict(extra_tags or {})}
    run, resumed = tracking.start_or_resume_run(client, experiment_id, RUN_KEY_PREFIX + run_name,
                                                run_name=run_name, parent_run_id=parent_run_id, tags=tags)
    run_id = run.info.run_id
    params = tracking.flatten_params(cfg.to_dict())
    params["variant.id"] = cfg.variant.id
    params["norm.resolved"] = cfg.resolved_norm()
    params["total_batch_size"] = str(cfg.total_batch_size)
    try:
        tracking.log_params_batched(client, run_id, params)
    except MlflowException as exc:  # a resumed run whose config changed (e.g. longer schedule)
        if not resumed:
            raise
        log.warning("run %s: config differs from the logged params; keeping the first values (%s)",
                    run_id, str(exc).splitlines()[0])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train_config.yaml"
        path.write_text(cfg.to_yaml())
        client.log_artifact(run_id, str(path), "config")
    return client, run_id, resumed


def close_train_run(client: MlflowClient, run_id: str, status: str | None,
                    tags: Mapping[str, str] | None = None) -> None:
    """The tags of the job's end, then the run closed with ``status`` (``None``: left open for its owner)."""
    for k, v in (tags or {}).items():
        client.set_tag(run_id, k, str(v))
    if status is not None:
        client.set_terminated(run_id, status=status)


@contextlib.contextmanager
def _fail_fast(timeout_s: float) -> Iterator[None]:
    """One attempt per MLflow call (this logger retries itself, without blocking training for minutes).

    MLflow's HTTP client otherwise retries a refused connection 7 times with exponential backoff
    (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``_BACKOFF_FACTOR``, read per request), which stalls the
    training loop for minutes while a server is down.
    """
    with scoped_environ(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(int(max(1, timeout_s)))):
        yield


class RankZeroLogger:
    """Metric / tag / artifact logging of world-rank 0 that survives a tracking server outage.

    Every value is queued, then sent; when a send fails the queue is kept and retried with exponential backoff (``backoff_s`` doubling up to
    ``max_backoff_s``) at the next call, so training never waits on a dead server; :meth:`close`
    retries (blocking) for up to ``close_timeout_s``. At most ``max_pending`` metric values are kept;
    beyond that the oldest are dropped and counted, artifacts of a failed upload are copied aside
    (their source is usually a temporary folder). When anything was dropped or could not be sent by
    :meth:`close`, the run is tagged ``topnas.tracking_lost=<count>`` (plus
    ``topnas.tracking_lost_detail``) as soon as the server answers.

    Each (metric, step) reaches MLflow once: before sending a key for the first time, and again after
    every failed send (a send may have landed before the connection broke), the logger reads the
    steps MLflow already holds for it; queued values at those steps are skipped. So iterations
    replayed after a worker restart or a driver resume keep their first logged value.
    """

    def __init__(
        self,
        tracking_uri: str,
        run_id: str,
        *,
        max_pending: int = 100_000,
        backoff_s: float = 2.0,
        max_backoff_s: float = 120.0,
        close_timeout_s: float = 300.0,
        request_timeout_s: float = 30.0,
    ) -> None:
        self.run_id = run_id
        self.client = tracking.get_client(tracking_uri)
        self.max_pending = max(1, int(max_pending))
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self.close_timeout_s, self.request_timeout_s = float(close_timeout_s), float(request_timeout_s)
        self._metrics: deque[Any] = deque()
        self._tags: dict[str, str] = {}
        self._artifacts: list[tuple[Path, str | None]] = []
        self._spool: Path | None = None
        self._known: dict[str, set[int]] = {}  # steps MLflow holds, per metric key
        self._stale = False                    # a send failed: re-read what MLflow holds before resending
        self._failures = 0                     # consecutive failed attempts
        self._next_try = 0.0
        self._dropped = 0                      # metric values dropped by the bound
        self._lost: list[str] = []             # what close() could not deliver
        self._lost_tagged = 0
        self.skipped_replayed = 0              # queued values MLflow already had (replayed steps)

    # ----------------------------------------------------------------- public API (never raises)
    def metrics(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for k, v in values.items():
            if v is not None:
                self._metrics.append(Metric(k, float(v), now, int(step)))
        overflow = len(self._metrics) - self.max_pending
        for _ in range(max(0, overflow)):
            self._metrics.popleft()
            self._dropped += 1
        self._maybe_flush()

    def tags(self, values: Mapping[str, Any]) -> None:
        self._tags.update({k: str(v) for k, v in values.items()})
        self._maybe_flush()

    def artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._artifacts.append((Path(path), artifact_path))
        self._maybe_flush()
        # Still queued: keep a copy, the caller's file usually lives in a temporary folder.
        for i, (src, dest) in enumerate(self._artifacts):
            if self._spool is None or not src.is_relative_to(self._spool):
                self._artifacts[i] = (self._keep(src), dest)

    @property
    def pending(self) -> int:
        return len(self._metrics) + len(self._tags) + len(self._artifacts)

    @property
    def dropped(self) -> int:
        return self._dropped + len(self._lost)

    def flush(self) -> bool:
        """Try to send everything now (ignoring the backoff); True when nothing is left."""
        self._next_try = 0.0
        self._maybe_flush()
        return self.pending == 0 and self._lost_tagged == self.dropped

    def close(self, timeout_s: float | None = None) -> bool:
        """Send what is queued, retrying with backoff for up to ``timeout_s`` (default ``close_timeout_s``).

        What is still unsent then is counted as lost (tagged if the server answers). True when
        everything was delivered and nothing was dropped.
        """
        deadline = time.monotonic() + (self.close_timeout_s if timeout_s is None else float(timeout_s))
        while not self.flush():
            wait = min(self._next_try, deadline) - time.monotonic()
            if time.monotonic() >= deadline:
                break
            time.sleep(max(0.05, wait))
        if self.pending:
            self._lost += [f"metric {m.key}@{m.step}" for m in self._metrics]
            self._lost += [f"tag {k}" for k in self._tags]
            self._lost += [f"artifact {dest or ''}/{src.name}".replace("//", "/") for src, dest in self._artifacts]
            self._metrics.clear()
            self._tags.clear()
            self._artifacts.clear()
            log.warning("MLflow run %s: %d item(s) could not be sent (%s ...)", self.run_id, len(self._lost),
                        ", ".join(self._lost[:5]))
            self._next_try = 0.0
            self._maybe_flush()  # one last try to at least tag the loss
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None
        return self.dropped == 0 and self._lost_tagged == self.dropped

    # ----------------------------------------------------------------- sending
    def _maybe_flush(self) -> None:
        if time.monotonic() < self._next_try or (self.pending == 0 and self._lost_tagged == self.dropped):
            return
        try:
            with _fail_fast(self.request_timeout_s):
                self._send()
        except Exception as exc:  # noqa: BLE001 - tracking must not kill a 160k-iteration job
            self._failures += 1
            self._stale = True
            delay = min(self.backoff_s * 2 ** (self._failures - 1), self.max_backoff_s)
            self._next_try = time.monotonic() + delay
            if self._failures == 1 or self._failures % 10 == 0:
                log.warning("MLflow unreachable for run %s (%s); %d item(s) queued, retry in %.0f s "
                            "(failure %d)", self.run_id, str(exc).splitlines()[0][:200], self.pending, delay,
                            self._failures)
            return
        if self._failures:
            log.warning("MLflow reachable again for run %s after %d failed attempt(s); queue flushed",
                        self.run_id, self._failures)
        self._failures = 0

    def _send(self) -> None:
        from mlflow.entities import RunTag

        self._send_metrics()
        if self._tags:
            items = list(self._tags.items())
            for i in range(0, len(items), 100):
                chunk = items[i:i + 100]
                self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in chunk], synchronous=True)
                for k, v in chunk:
                    if self._tags.get(k) == v:
                        del self._tags[k]
        while self._artifacts:
            src, dest = self._artifacts[0]
            self.client.log_artifact(self.run_id, str(src), dest)
            self._artifacts.pop(0)
            if self._spool is not None and src.is_relative_to(self._spool):
                src.unlink(missing_ok=True)
        if self.dropped != self._lost_tagged:
            detail = (f"{self._dropped} metric value(s) dropped by the {self.max_pending}-value buffer"
                      + (f"; not sent at close: {', '.join(self._lost[:20])}" if self._lost else ""))
            self.client.log_batch(self.run_id, tags=[RunTag(LOST_TAG, str(self.dropped)),
                                                     RunTag(LOST_TAG + "_detail", detail[:4000])], synchronous=True)
            self._lost_tagged = self.dropped

    def _send_metrics(self) -> None:
        if not self._metrics:
            return
        keys = {m.key for m in self._metrics}
        for key in sorted(keys if self._stale else keys - set(self._known)):
            self._known[key] = {int(m.step) for m in self.client.get_metric_history(self.run_id, key)}
        self._stale = False
        while self._metrics:
            batch, seen = [], set()
            while self._metrics and len(batch) < MAX_METRICS_PER_BATCH:
                m = self._metrics[0]
                if m.step in self._known.get(m.key, ()) or (m.key, m.step) in seen:
                    self.skipped_replayed += 1
                else:
                    batch.append(m)
                    seen.add((m.key, m.step))
                self._metrics.popleft()
            if not batch:
                continue
            try:
                self.client.log_batch(self.run_id, metrics=batch, synchronous=True)
            except Exception:
                self._metrics.extendleft(reversed(batch))  # back in front, in order
                raise
            for m in batch:
                self._known.setdefault(m.key, set()).add(int(m.step))

    def _keep(self, src: Path) -> Path:
        if self._spool is None:
            self._spool = Path(tempfile.mkdtemp(prefix="topnas_mlflow_spool_"))
        folder = Path(tempfile.mkdtemp(dir=self._spool))
        dest = folder / src.name
        shutil.copy2(src, dest)
        return dest


class BackgroundLogger:
    """A :class:`RankZeroLogger` made and driven on a thread of its own; same calls, none of them waits.

    A job's first MLflow call in a fresh Ray Train worker costs seconds (importing MLflow, opening the
    store); a sweep trial's worker is always fresh, so on the training thread that was a fixed cost of
    every trial. Calls are queued in order; an artifact is copied at once (its source is usually a
    temporary folder the caller removes). :meth:`wait` returns once every call so far was handed
    over (the loop waits before reporting a checkpoint: what was logged before it is not lost with a
    worker that dies after it); :meth:`close` waits for the queue and the logger's own close (its
    retries included) and returns what it returns.
    """

    def __init__(self, tracking_uri: str, run_id: str, **options: Any) -> None:
        self.run_id = run_id
        self._calls: queue.SimpleQueue[tuple[str, tuple[Any, ...]]] = queue.SimpleQueue()
        self._copies = Path(tempfile.mkdtemp(prefix="topnas_mlflow_queue_"))
        self._closed: bool | None = None
        self._dropped = 0
        self._thread = threading.Thread(target=self._serve, args=(tracking_uri, run_id, options),
                                        name="topnas-mlflow", daemon=True)
        self._thread.start()

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        self._calls.put(("metrics", (dict(values), int(step))))

    def tags(self, values: Mapping[str, Any]) -> None:
        self._calls.put(("tags", (dict(values),)))

    def artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        dest = Path(tempfile.mkdtemp(dir=self._copies)) / Path(path).name
        shutil.copy2(path, dest)
        self._calls.put(("artifact", (dest, artifact_path)))

    @property
    def dropped(self) -> int:
        return self._dropped

    def wait(self) -> None:
        """Block until every call queued so far was handled (sent, or queued for retry by the logger)."""
        handled = threading.Event()
        self._calls.put(("handled", (handled,)))
        while not handled.wait(1.0) and self._thread.is_alive():
            pass

    def close(self, timeout_s: float | None = None) -> bool:
        if self._closed is None:
            self._calls.put(("close", (timeout_s,)))
            self._thread.join()
            shutil.rmtree(self._copies, ignore_errors=True)
        return bool(self._closed)

    def _serve(self, tracking_uri: str, run_id: str, options: Mapping[str, Any]) -> None:
        try:
            logger: RankZeroLogger | None = RankZeroLogger(tracking_uri, run_id, **options)
        except Exception as exc:  # noqa: BLE001 - tracking must not kill the training job
            log.warning("MLflow logging for run %s is off: %s", run_id, str(exc).splitlines()[0][:200])
            logger = None
        while True:
            name, args = self._calls.get()
            if name == "handled":
                args[0].set()
                continue
            if name == "close":
                self._closed = logger.close(*args) if logger is not None else False
                self._dropped += logger.dropped if logger is not None else 0
                return
            if logger is None:
                self._dropped += 1
                continue
            getattr(logger, name)(*args)  # never raises
