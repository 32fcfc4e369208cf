"""`topnas sweep` rejects bad input before Ray starts; `topnas pareto show` reads a sweep folder."""
from __future__ import annotations

import pytest

from topnas.platform.cli import main
from topnas.platform.sweep import Ledger, TrialRecord
from topnas.platform.sweep.layout import SweepState

from .conftest import sweep_dict, write_sweep_yaml


@pytest.mark.parametrize("change, message", [
    ({"sampler.name": "grid"}, "sampler.name: got 'grid'; allowed: ['gp', 'nsga2', 'random', 'tpe']"),
    ({"proxy.workers_per_trial": 0}, "proxy.workers_per_trial"),
    ({"latency.budget_ms": 1.0}, "latency.budget_ms: got 1.0"),
    ({"scheduler": {"name": "hyperband"}}, "scheduler.name: got 'hyperband'; allowed: ['fifo', 'asha', 'moasha']"),
    ({"scheduler": {"name": "moasha"}}, "scheduler.name"),  # one evaluation per trial: nothing to compare
    ({"surprise": True}, "unknown key(s) ['surprise']"),
])
def test_invalid_sweep_yaml_is_rejected_before_ray_starts(tmp_path, test_predictor, capsys, change, message):
    import ray

    path = write_sweep_yaml(tmp_path / "bad.yaml", sweep_dict(tmp_path, test_predictor, **change))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert not ray.is_initialized()
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "mlflow.db").exists()


def test_resume_needs_an_existing_sweep(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TOPNAS_HOME", str(tmp_path))
    assert main(["sweep", "--resume", "ghost"]) == 2
    assert "sweep: got 'ghost'" in capsys.readouterr().err
    assert main(["sweep"]) == 2


def test_print_config(tmp_path, test_predictor, capsys):
    path = write_sweep_yaml(tmp_path / "ok.yaml", sweep_dict(tmp_path, test_predictor))
    assert main(["sweep", str(path), "--set", "num_samples=3", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "num_samples: 3" in out and "# sweep folder" in out


def test_pareto_show_sorts_and_filters(tmp_path, capsys):
    folder = tmp_path / "s"
    ledger = Ledger(folder)
    rows = [("a", "completed", 0.30, 20.0), ("b", "completed", 0.20, 10.0), ("c", "completed", 0.10, 30.0),
            ("d", "early_stopped", 0.5, 5.0)]
    for tid, status, miou, lat in rows:
        ledger.append(TrialRecord(trial_id=tid, variant_id=f"tf-{tid}", status=status, val_mIoU=miou,
                                  latency_ms=lat, latency_lo=lat - 1, latency_hi=lat + 1, params=10, macs=20,
                                  run_id=f"r{tid}"))
    SweepState("s", "parent", "1", "sqlite:///x", {"val_mIoU": 0.0, "latency_ms": 40.0}, "p").save(folder)
    assert main(["pareto", "show", str(folder), "--sort", "val_mIoU"]) == 0
    out = capsys.readouterr().out
    assert out.index("tf-a") < out.index("tf-b") and "tf-c" not in out and "tf-d" not in out
    assert "hypervolume 8" in out  # 0.2 x (40 - 10) + (0.3 - 0.2) x (40 - 20) against (0, 40 ms)
    assert main(["pareto", "show", str(folder), "--all"]) == 0
    out = capsys.readouterr().out
    assert all(f"tf-{t}" in out for t in "abcd") and out.index("tf-b") < out.index("tf-a")


def test_pareto_show_says_whether_the_fronts_mIoU_order_is_above_the_proxys_seed_noise(tmp_path, capsys):
    import dataclasses
    import json

    from topnas.platform.sweep.fidelity import Fidelity

    folder = tmp_path / "s"
    ledger = Ledger(folder)
    for tid, miou, lat in [("a", 0.9011, 24.0), ("b", 0.9007, 20.0), ("c", 0.8800, 30.0)]:
        ledger.append(TrialRecord(trial_id=tid, variant_id=f"tf-{tid}", status="completed", val_mIoU=miou,
                                  latency_ms=lat, latency_lo=lat - 1, latency_hi=lat + 1, params=10, macs=20,
                                  run_id=f"r{tid}"))
    SweepState("s", "parent", "1", "sqlite:///x", {"val_mIoU": 0.0, "latency_ms": 40.0}, "p").save(folder)
    assert main(["pareto", "show", str(folder)]) == 0
    assert "seed noise" not in capsys.readouterr().out  # no fidelity recorded: nothing to compare with

    noise = Fidelity(table="t.csv", proxy_rung=420, longest_rung=960, variants=48, noise_variants=6, seeds=4,
                     seed_noise=0.0048, spread=0.0076, spread_to_noise=1.58, spearman=0.7, tied_at_mode=2,
                     mean_mIoU=0.897)
    (folder / "proxy_fidelity.json").write_text(json.dumps(dataclasses.asdict(noise)))
    assert main(["pareto", "show", str(folder)]) == 0
    out = capsys.readouterr().out
    # the front is a (0.9011, 24 ms) and b (0.9007, 20 ms): 0.0004 apart, a twelfth of the noise
    assert "the front's 2 members span 0.0004 mIoU = 0.1x the proxy's seed noise 0.0048" in out
    assert "within the noise" in out
