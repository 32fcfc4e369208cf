"""benchmarks/make_replay_table.py: the table's files and columns, and a resume that loses and repeats nothing."""
from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("make_replay_table", ROOT / "benchmarks" / "make_replay_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def keep_torch_threads():
    """The script sets torch's thread count for its process; tests share one process."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_table_files_and_a_resumed_run(tmp_path, keep_torch_threads):
    mrt = _script()
    args = ["--variants", "2", "--noise-variants", "1", "--seeds", "2", "--iterations", "4", "--rungs", "2",
            "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]
    assert mrt.main(args) == 0
    table = tmp_path / "out" / "replay_fixture-small.csv"
    rows = _rows(table)
    assert list(rows[0]) == list(mrt.COLUMNS)
    runs = {(r["variant_id"], r["seed"]) for r in rows}
    assert len(runs) == 3 and len(rows) == 3 * 2  # 1 variant x 2 seeds + 1 variant x 1 seed, 2 rungs each
    assert {r["iteration"] for r in rows} == {"2", "4"}
    variants = [json.loads(line) for line in (tmp_path / "out" / "replay_fixture-small_variants.jsonl").read_text()
                .splitlines()]
    assert {v["id"] for v in variants} == {vid for vid, _ in runs}
    meta = json.loads((tmp_path / "out" / "replay_fixture-small_meta.json").read_text())
    assert meta["rungs"] == [2, 4] and meta["seeds"] == [0, 1] and len(meta["noise_variants"]) == 1

    # a run killed after its first rung: its last row is gone; the rerun trains it again, appends only that row
    table.write_text("".join(line for line in table.read_text().splitlines(keepends=True)[:-1]))
    assert mrt.main(args) == 0
    again = _rows(table)
    assert sorted(map(tuple, (r.values() for r in again))) == sorted(map(tuple, (r.values() for r in rows)))

    # more seeds extend the table: the noise variant gets seed 2, every other variant seed 1; nothing retrained
    at = args.index("--seeds") + 1
    more = args[:at] + ["3"] + args[at + 1:] + ["--all-seeds", "2"]
    assert mrt.main(more) == 0
    grown = _rows(table)
    assert grown[:len(again)] == again
    noisy = json.loads((tmp_path / "out" / "replay_fixture-small_meta.json").read_text())["noise_variants"][0]
    added = {(r["variant_id"], r["seed"]) for r in grown[len(again):]}
    assert added == {(noisy, "2")} | {(vid, "1") for vid, _ in runs if vid != noisy}
    meta = json.loads((tmp_path / "out" / "replay_fixture-small_meta.json").read_text())
    assert meta["seeds"] == [0, 1, 2] and meta["all_seeds"] == [0, 1]
    assert [e["seeds"] for e in meta["extensions"]] == [[0, 1, 2]]
    with pytest.raises(SystemExit, match="other settings"):  # fewer seeds than the table holds: refused
        mrt.main(args[:at] + ["1"] + args[at + 1:])


def test_noise_variants_spread_over_latency():
    mrt = _script()

    class V:
        def __init__(self, i: int) -> None:
            self.id = f"v{i}"

    vs = [V(i) for i in range(10)]
    lat = {v.id: float(10 - i) for i, v in enumerate(vs)}  # v9 fastest, v0 slowest
    picked = [v.id for v in mrt.noise_variants(vs, lat, 3)]
    assert picked == ["v9", "v5", "v0"]
