"""Few-shot transfer, phone predictor and plan, on slices of the real ARM phone data."""
from __future__ import annotations

import json
from collections import Counter
import subprocess
import sys
from pathlib import Path

import pytest

from topnas.errors import ConfigError
from topnas.platform.latency.arch_table import read_arch_table
from topnas.platform.latency.fewshot import evaluate
from topnas.platform.latency.spaces import fbnet, nb201

ARM = Path(__file__).resolve().parent / "data" / "arm_latency"  # slices of the public tables (MIT)
TOPNAS = str(Path(sys.executable).with_name("topnas"))
KEYS = ("spearman_mean", "spearman_min", "kendall_mean", "within10_mean", "mape_mean", "flops_spearman_mean",
        "scratch_spearman_mean", "shots", "repeats", "n_eval")


def _slice(tmp_path: Path, name: str, n: int) -> Path:
    lines = (ARM / f"{name}.csv").read_text().splitlines()
    out = tmp_path / f"{name}.csv"
    out.write_text("\n".join(lines[: n + 1]) + "\n")
    return out


@pytest.fixture(scope="module")
def slices(tmp_path_factory):
    d = tmp_path_factory.mktemp("arm")
    return {dev: _slice(d, f"nb201_{dev}", 1000) for dev in ("pixel3", "samsung_a50", "samsung_s7", "essential_ph_1")}


def test_evaluate_cli_json_keys_and_beats_flops(slices):
    cmd = [TOPNAS, "latency", "evaluate", "--space", "nb201",
           "--target", str(slices["pixel3"]), "--source", str(slices["samsung_a50"]), str(slices["samsung_s7"]),
           str(slices["essential_ph_1"]), "--shots", "10", "--repeats", "4", "--seed", "1", "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    for k in KEYS:
        assert k in out
    assert out["shots"] == 10 and out["repeats"] == 4
    assert out["n_eval"] == 1000 - 10 - out["n_degenerate_excluded"]
    assert -1 <= out["spearman_min"] <= out["spearman_mean"] <= 1
    assert 0 <= out["within10_mean"] <= 1 and out["mape_mean"] > 0
    assert out["spearman_mean"] > out["flops_spearman_mean"]
    # Pixel 3's pipeline removes dead computations; the others run the full graph
    assert out["source_conventions"] == {"samsung_a50": "full_graph", "samsung_s7": "full_graph",
                                         "essential_ph_1": "full_graph"}


def test_degenerate_rows_are_excluded_and_counted(slices):
    t = read_arch_table(slices["pixel3"], "nb201")
    n_deg = sum(nb201.is_degenerate(a) for a in t.archs)
    r = evaluate(t, [read_arch_table(slices["samsung_a50"], "nb201")], shots=5, repeats=1)
    assert r["n_degenerate_excluded"] == n_deg > 0


def test_prune_dead_removes_only_unreachable_edges():
    arch = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"   # node 1 never reaches node 3
    full, pruned = Counter(nb201.kernels(arch)), Counter(nb201.kernels(arch, prune_dead=True))
    assert not pruned - full                     # pruning only removes kernels
    removed = full - pruned
    convs = [k for k in removed.elements() if k.type == "conv"]
    assert len(convs) == 15 and all(k.kernel_size == 3 and k.stride == 1 for k in convs)  # the dead edge, 15 cells
    assert {k.type for k in removed.elements()} <= {"conv", "elementwise"}
    assert nb201.is_degenerate("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert not fbnet.is_degenerate("|".join(["skip"] * 22))


BAD = [
    ("wrong header", "arch,ms\n", "header"),
    ("non-numeric", "arch,latency_ms\n{a},fast\n", "latency_ms"),
    ("non-positive", "arch,latency_ms\n{a},-3\n", "latency_ms"),
    ("nan", "arch,latency_ms\n{a},nan\n", "latency_ms"),
    ("unknown arch", "arch,latency_ms\n|bogus~0|+|x|,3\n", "arch"),
    ("duplicate", "arch,latency_ms\n{a},3\n{a},4\n", "duplicate of row 2"),
]


@pytest.mark.parametrize("name,text,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_tables_fail_with_one_line(tmp_path, name, text, needle):
    a = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    p = tmp_path / "t.csv"
    p.write_text(text.format(a=a))
    with pytest.raises(ConfigError) as e:
        read_arch_table(p, "nb201")
    msg = str(e.value)
    assert "\n" not in msg and needle in msg and str(p) in msg


def test_other_space_source_and_small_target_and_shots(tmp_path, slices):
    fb = _slice(tmp_path, "fbnet_samsung_a50", 50)
    with pytest.raises(ConfigError, match="pass --space fbnet"):
        read_arch_table(fb, "nb201")
    target = read_arch_table(slices["pixel3"], "nb201")
    other = read_arch_table(fb, "fbnet")
    with pytest.raises(ConfigError, match="same space"):
        evaluate(target, [other], shots=10, repeats=1)
    small = read_arch_table(_slice(tmp_path, "nb201_samsung_s7", 15), "nb201")
    with pytest.raises(ConfigError, match="shots \\+ 10"):
        evaluate(small, [target], shots=10, repeats=1)
    with pytest.raises(ConfigError, match="shots"):
        evaluate(target, [small], shots=1, repeats=1)


def test_evaluate_cli_bad_shots_is_one_line(slices):
    res = subprocess.run([TOPNAS, "latency", "evaluate", "--space", "nb201",
                          "--target", str(slices["pixel3"]), "--shots", "1"], capture_output=True, text=True)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr and "--shots" in res.stderr


def test_packaged_phone_predictor_provenance_and_mix_flag():
    from topnas.platform.latency.predictor import packaged_predictor
    from topnas.search_spaces import Variant, preset_variant

    p = packaged_predictor("snapdragon865_tnn_1core")
    sources = p.calibration["sources"]
    kinds = {s["kind"] for s in sources}
    assert any(s["kind"] == "measured" and s["role"] == "relative kernel costs" for s in sources)
    assert sum(1 for s in sources if s["role"] == "relative kernel costs") == 7     # the 7 public phone tables
    assert any("figures" in k for k in kinds)
    for s in sources:
        assert {"device", "runtime", "points", "kind"} <= set(s)
    tiny = preset_variant("tiny", (512, 512))
    assert not p.predict(tiny).out_of_range
    # far outside: attention everywhere (token grid at stride 1, deep transformer) -> mix flag fires
    far = Variant(tiny.model.replace(c2t_stride=1, depths=8), (512, 512))
    pred = p.predict(far)
    assert pred.out_of_range and any("share of" in r for r in pred.reasons)
    assert pred.lo < pred.ms < pred.hi


def test_host_predictor_alone_is_a_prior(slices):
    from topnas.platform.latency.predictor import packaged_predictor

    target = read_arch_table(slices["samsung_a50"], "nb201")
    r = evaluate(target, [], shots=10, repeats=2, host=packaged_predictor("local_cpu_ort"))
    assert r["sources"] == ["host"] and r["n_eval"] > 900
    assert 0.5 < r["spearman_mean"] <= 1


def test_plan_starts_from_presets_and_beats_random_picks():
    import random

    import numpy as np

    from topnas.platform.latency.plan import mix_matrix, plan_variants
    from topnas.platform.latency.predictor import packaged_predictor
    from topnas.search_spaces import default_space

    space, pred = default_space(), packaged_predictor()
    chosen = plan_variants(space, n=8, pool=60, seed=3, predictor=pred)
    assert len({v.id for v in chosen}) == 8
    assert chosen[0].name in ("tiny", "small", "base")   # the presets come first

    def logdet(vs):
        X = mix_matrix(vs, pred)
        return np.linalg.slogdet(X.T @ X + 1e-3 * np.eye(X.shape[1]))[1]

    rng = random.Random(3)
    randoms = [[space.sample(rng) for _ in range(8)] for _ in range(5)]
    # same standardisation for every set: score each set inside the union of all candidates
    union = chosen + [v for vs in randoms for v in vs]
    X = mix_matrix(union, pred)
    def ld(idx):
        M = X[idx]
        return np.linalg.slogdet(M.T @ M + 1e-3 * np.eye(X.shape[1]))[1]
    best_random = max(ld(list(range(8 + 8 * i, 16 + 8 * i))) for i in range(5))
    assert ld(list(range(8))) > best_random
