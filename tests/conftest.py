"""Shared fixtures. Tests that start real processes are marked ``integration``."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

# `tests.helpers` is importable whether or not `tests/` is a package or pytest runs from the root.
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.helpers.mlflow_server import mlflow_server  # noqa: E402


@pytest.fixture(scope="session")
def mlflow_server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a real, lean ``mlflow server`` shared by the session."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow_server")) as uri:
        yield uri


@pytest.fixture(scope="module")
def embedded_ray() -> Iterator[None]:
    """An embedded 2-CPU Ray for a module's tests (left alone when one is already connected)."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=True)
    yield
    if started:
        ray.shutdown()
