"""benchmarks/proxy_fidelity.py: the per-rung table, including mIoU against model size."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "benchmarks" / "data" / "replay_fixture-small.csv"


@pytest.fixture(scope="module")
def pf():
    spec = importlib.util.spec_from_file_location("proxy_fidelity", ROOT / "benchmarks" / "proxy_fidelity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_params_spearman_is_the_rank_correlation_of_seed_means_with_size(pf, tmp_path):
    rows = []
    for k, params in enumerate((100, 200, 300, 400)):
        for seed in (0, 1):
            rows.append(("v%d" % k, seed, 10, 0.1 * k + 0.01 * seed, 1.0, 1, params))  # bigger: better
            rows.append(("v%d" % k, seed, 20, 0.5 - 0.1 * k + 0.01 * seed, 1.0, 1, params))  # bigger: worse
    table = tmp_path / "t.csv"
    pd.DataFrame(rows, columns=["variant_id", "seed", "iteration", "val_mIoU", "latency_ms", "macs", "params"]
                 ).to_csv(table, index=False)
    assert pf.params_spearman(table) == {10: 1.0, 20: -1.0}


def test_the_shipped_table_reports_vs_params_for_every_rung(pf, tmp_path, capsys):
    out = tmp_path / "pf.json"
    assert pf.main(["--table", str(TABLE), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rungs"]
    expected = pf.params_spearman(TABLE)
    assert [r["proxy_rung"] for r in rows] == sorted(expected)
    assert all(r["vs_params"] == expected[r["proxy_rung"]] for r in rows)
    assert all(0 <= r["architecture_share"] <= 1 and r["net_ratio"] >= 0 for r in rows)
    printed = capsys.readouterr().out
    assert "vs_params" in printed and "pooled seed noise" in printed
