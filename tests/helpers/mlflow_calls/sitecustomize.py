"""Test-only: record some ``MlflowClient`` calls of every Python process that has this folder on its path.

A test puts this folder first on ``PYTHONPATH`` and names a file in ``$TOPNAS_TEST_MLFLOW_CALLS``;
the sweep driver and every Ray worker it starts (they inherit the environment) then append one JSON
line per ``create_run`` / ``update_run`` / ``set_terminated`` / ``log_artifact`` call: which process
(pid, and whether it is a Ray worker), which run, what status or file. Python imports
``sitecustomize`` at start-up; the client is patched only when a process imports it.
"""
from __future__ import annotations

import os
import sys

_FILE = os.environ.get("TOPNAS_TEST_MLFLOW_CALLS")


def _record(**entry):
    import json

    entry.update(pid=os.getpid(), ray_worker="default_worker" in " ".join(sys.argv[:1]) or "ray::" in
                 " ".join(sys.argv[:1]))
    line = json.dumps(entry, default=str) + "\n"
    fd = os.open(_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _patch(cls):
    create, update, terminate, artifact = cls.create_run, cls.update_run, cls.set_terminated, cls.log_artifact

    def create_run(self, experiment_id, *args, **kwargs):
        run = create(self, experiment_id, *args, **kwargs)
        _record(call="create_run", run_id=run.info.run_id, tags=dict(run.data.tags))
        return run

    def update_run(self, run_id, status=None, *args, **kwargs):
        _record(call="update_run", run_id=run_id, status=status)
        return update(self, run_id, status, *args, **kwargs)

    def set_terminated(self, run_id, status=None, *args, **kwargs):
        _record(call="set_terminated", run_id=run_id, status=status or "FINISHED")
        return terminate(self, run_id, status, *args, **kwargs)

    def log_artifact(self, run_id, local_path, artifact_path=None):
        _record(call="log_artifact", run_id=run_id, file=os.path.basename(str(local_path)))
        return artifact(self, run_id, local_path, artifact_path)

    cls.create_run, cls.update_run, cls.set_terminated, cls.log_artifact = (create_run, update_run, set_terminated,
                                                                            log_artifact)


class _Hook:
    """Patch ``mlflow.tracking.client.MlflowClient`` right after the module is first executed."""

    TARGET = "mlflow.tracking.client"

    def find_spec(self, name, path, target=None):
        if name != self.TARGET:
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _patch(module.MlflowClient)

        spec.loader.exec_module = exec_module
        return spec


if _FILE:
    sys.meta_path.insert(0, _Hook())
