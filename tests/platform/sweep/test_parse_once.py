"""The sweep config is parsed once per process: `topnas sweep --resume` reads the saved config and
hands that object on (run_sweep does not parse it again to compare, nor does the check before Ray
rebuild its training config)."""
from __future__ import annotations

import pytest

from topnas.platform.cli import main
from topnas.platform.sweep import runner
from topnas.platform.sweep.sweep_config import SweepConfig

from .conftest import sweep_dict, write_sweep_yaml


@pytest.mark.parametrize("with_yaml", [False, True])
def test_resume_parses_the_sweep_config_once(tmp_path, test_predictor, monkeypatch, with_yaml):
    import ray

    path = write_sweep_yaml(tmp_path / "t_sweep.yaml", sweep_dict(tmp_path, test_predictor, num_samples=2))
    fitted: list[tuple[SweepConfig, bool]] = []
    monkeypatch.setattr(runner, "_fit", lambda cfg, state, tracker, predictor_id, resume: fitted.append((cfg, resume)))
    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # no Ray: what is counted happens before it
    assert main(["sweep", str(path)]) == 0  # the sweep folder, its state and parent run

    parses: list[str | None] = []
    parse = SweepConfig.from_dict.__func__

    def counted(cls, data, *, source=None):
        parses.append(source)
        return parse(cls, data, source=source)

    monkeypatch.setattr(SweepConfig, "from_dict", classmethod(counted))
    built = []
    train_config = SweepConfig.train_config
    monkeypatch.setattr(SweepConfig, "train_config", lambda self, *a, **k: built.append(a) or train_config(self, *a, **k))
    folder = tmp_path / "sweeps" / "t_sweep"
    assert main(["sweep", *([str(path)] if with_yaml else []), "--resume", str(folder)]) == 0
    assert parses == [str(folder / "sweep.yaml")]
    assert len(built) == 1  # the training config checked before Ray: built with the parse, reused after
    cfg, resume = fitted[-1]
    assert resume and cfg.source == str(folder / "sweep.yaml")
