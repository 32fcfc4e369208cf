"""run_training shuts down the Ray it started, and only that one.

A Ray left running until the process exits keeps forwarding its workers' log lines after the
command's console has handed the terminal back (the demo's last screen ended in Ray Train
checkpoint lines). Ray itself is faked here: what is under test is who shuts it down, and when.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from topnas.platform.train import trainer


class FakeRay:
    def __init__(self, up: bool) -> None:
        self.up = up
        self.calls: list[str] = []

    def is_initialized(self) -> bool:
        return self.up

    def init(self, address=None, **_):
        self.calls.append(f"init {address}")
        self.up = True

    def shutdown(self) -> None:
        self.calls.append("shutdown")
        self.up = False


@pytest.fixture
def fake(monkeypatch, request):
    import ray

    from topnas.platform import raywatch

    fr = FakeRay(up=request.param)

    class Watch:
        def release(self) -> None:
            fr.calls.append("release")

    def start_local_ray(**_):
        fr.calls.append("start_local_ray")
        fr.up = True
        return Watch()

    for name in ("is_initialized", "init", "shutdown"):
        monkeypatch.setattr(ray, name, getattr(fr, name))
    monkeypatch.setattr(raywatch, "start_local_ray", start_local_ray)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return fr


def _fit(make_config, tmp_path: Path):
    cfg = make_config()
    return trainer._fit(cfg, cfg.name, tmp_path, tmp_path / cfg.name, None, None, ())


@pytest.mark.parametrize("fake", [False], indirect=True)
@pytest.mark.parametrize("fails", [False, True])
def test_a_local_ray_it_started_is_shut_down_after_the_run(fake, fails, make_config, tmp_path, monkeypatch):
    def fit_on_ray(*args):
        fake.calls.append("fit")
        assert fake.up
        if fails:
            raise RuntimeError("worker died")
        return "result"

    monkeypatch.setattr(trainer, "_fit_on_ray", fit_on_ray)
    if fails:
        with pytest.raises(RuntimeError, match="worker died"):
            _fit(make_config, tmp_path)
    else:
        assert _fit(make_config, tmp_path) == "result"
    assert fake.calls == ["start_local_ray", "fit", "shutdown", "release"]
    assert not fake.up


@pytest.mark.parametrize("fake", [False], indirect=True)
def test_a_cluster_it_connected_to_is_left_by_disconnecting(fake, make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    monkeypatch.setattr(trainer, "_fit_on_ray", lambda *a: fake.calls.append("fit"))
    _fit(make_config, tmp_path)
    assert fake.calls == ["init None", "fit", "shutdown"]


@pytest.mark.parametrize("fake", [True], indirect=True)
def test_a_ray_someone_else_started_stays_up(fake, make_config, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "_fit_on_ray", lambda *a: fake.calls.append("fit"))
    _fit(make_config, tmp_path)
    assert fake.calls == ["fit"]
    assert fake.up
