"""Proxy fidelity: seed noise vs spread and Spearman from a replay table; config checks; the parent run's record."""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pytest

from topnas.errors import ConfigError
from topnas.platform.sweep import SweepConfig
from topnas.platform.sweep.fidelity import fidelity_metrics, fidelity_of, fidelity_params, measure_fidelity
from topnas.search_spaces import SearchSpace

from .conftest import SPACE, sweep_dict, write_sweep_yaml

ROOT = Path(__file__).resolve().parents[3]

# variant index -> seed -> {iteration: mIoU}; variant 0 and 1 have 3 seeds, variant 4 never finished
CURVES = {
    0: {0: {10: 0.20, 20: 0.30}, 1: {10: 0.22, 20: 0.31}, 2: {10: 0.18, 20: 0.29}},
    1: {0: {10: 0.40, 20: 0.50}, 1: {10: 0.43, 20: 0.52}, 2: {10: 0.40, 20: 0.51}},
    2: {0: {10: 0.30, 20: 0.45}},
    3: {0: {10: 0.30, 20: 0.40}},
    4: {0: {10: 0.90}},
}


def _variants(n: int):
    import random

    space, rng, found = SearchSpace.from_dict(SPACE), random.Random(0), {}
    while len(found) < n:
        v = space.sample(rng)
        found.setdefault(v.id, v)
    return list(found.values())


def write_table(folder: Path, curves=CURVES, meta: dict | None = None) -> Path:
    variants = _variants(len(curves))
    path = folder / "replay_test-small.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["variant_id", "seed", "iteration", "val_mIoU", "latency_ms", "macs", "params"])
        for i, seeds in curves.items():
            for seed, curve in seeds.items():
                for it, value in curve.items():
                    w.writerow([variants[i].id, seed, it, value, 1.0, 1, 1])
    path.with_name(path.stem + "_variants.jsonl").write_text("".join(v.to_json() + "\n" for v in variants))
    if meta is not None:
        path.with_name(path.stem + "_meta.json").write_text(json.dumps(meta))
    return path


def test_noise_spread_and_spearman_follow_their_definitions(tmp_path):
    f = measure_fidelity(write_table(tmp_path), 10)
    noise = statistics.mean([statistics.stdev([0.20, 0.22, 0.18]), statistics.stdev([0.40, 0.43, 0.40])])
    means10 = [0.20, (0.40 + 0.43 + 0.40) / 3, 0.30, 0.30]
    assert f.variants == 4 and f.noise_variants == 2 and f.seeds == 3  # the unfinished run is left out
    assert (f.proxy_rung, f.longest_rung) == (10, 20)
    assert f.seed_noise == pytest.approx(noise)
    assert f.spread == pytest.approx(statistics.stdev(means10))
    assert f.spread_to_noise == pytest.approx(statistics.stdev(means10) / noise)
    # ranks at 10: 1, 4, 2.5, 2.5 vs at 20: 1, 4, 3, 2 -> Spearman of the two rank vectors
    assert f.spearman == pytest.approx(0.9486832980505138)
    assert f.tied_at_mode == 2
    assert fidelity_metrics(f)["proxy_spread_to_noise"] == pytest.approx(f.spread_to_noise)
    # variance components: pooled within-variant variance (2 + 2 degrees of freedom); the spread of the
    # means less the noise they carry (variants with 3, 3, 1, 1 seeds)
    within = (2 * statistics.variance([0.20, 0.22, 0.18]) + 2 * statistics.variance([0.40, 0.43, 0.40])) / 4
    net = math.sqrt(statistics.variance(means10) - within * (1 / 3 + 1 / 3 + 1 + 1) / 4)
    assert f.seed_noise_pooled == pytest.approx(math.sqrt(within))
    assert f.spread_net == pytest.approx(net)
    assert f.net_ratio == pytest.approx(net / math.sqrt(within))
    assert f.architecture_share == pytest.approx(net ** 2 / (net ** 2 + within))
    assert fidelity_metrics(f)["proxy_net_ratio"] == pytest.approx(f.net_ratio)
    assert f"{f.net_ratio:.1f}x pooled seed noise" in f.components()


def test_variance_components_recover_the_noise_and_spread_a_table_was_made_with(tmp_path):
    """Simulated proxy scores: variant effects of std 0.03, seed noise of std 0.02; most variants have 2 seeds.

    The pooled noise and the net spread find both; the plain figures are off in the known directions
    (the mean of 2-seed stds is low, the spread of seed means carries noise)."""
    import numpy as np

    rng = np.random.default_rng(0)
    effects = 0.6 + 0.03 * rng.standard_normal(120)
    curves = {i: {s: {10: float(e + 0.02 * rng.standard_normal())} for s in range(6 if i < 12 else 2)}
              for i, e in enumerate(effects)}
    f = measure_fidelity(write_table(tmp_path, curves), 10)
    assert f.seed_noise_pooled == pytest.approx(0.02, rel=0.1)
    assert f.spread_net == pytest.approx(0.03, rel=0.15)
    assert f.seed_noise < 0.9 * f.seed_noise_pooled and f.spread > f.spread_net
    assert f.architecture_share == pytest.approx(0.03 ** 2 / (0.03 ** 2 + 0.02 ** 2), abs=0.1)
    # no architecture effect at all: the net spread is (about) zero, the plain ratio is not
    flat = {i: {s: {10: float(0.6 + 0.02 * rng.standard_normal())} for s in range(2)} for i in range(120)}
    g = measure_fidelity(write_table(tmp_path, flat), 10)
    assert g.net_ratio < 0.35 < g.spread_to_noise


def test_a_score_averaged_over_seeds_is_measured_on_disjoint_seed_groups(tmp_path):
    # variant 0: 4 seeds -> two pairs; variant 1: 5 seeds -> two pairs (the fifth is left out);
    # variant 2: 2 seeds -> one pair; variant 3: 1 seed -> cannot be scored by a mean of 2
    curves = {
        0: {s: {10: v, 20: v + 0.1} for s, v in enumerate([0.20, 0.30, 0.24, 0.22])},
        1: {s: {10: v, 20: v + 0.1} for s, v in enumerate([0.50, 0.40, 0.47, 0.49, 0.10])},
        2: {0: {10: 0.35, 20: 0.60}, 1: {10: 0.37, 20: 0.58}},
        3: {0: {10: 0.90, 20: 0.95}},
    }
    f = measure_fidelity(write_table(tmp_path, curves), 10, seeds_per_trial=2)
    pairs = {0: [0.25, 0.23], 1: [0.45, 0.48], 2: [0.36]}
    assert (f.variants, f.noise_variants, f.seeds, f.seeds_per_trial) == (3, 2, 5, 2)
    assert f.seed_noise == pytest.approx(statistics.mean([statistics.stdev(pairs[0]), statistics.stdev(pairs[1])]))
    assert f.spread == pytest.approx(statistics.stdev([statistics.mean(p) for p in pairs.values()]))
    assert "score = mean of 2 seeds" in f.summary()
    # one seed per score: every seed counts, as before
    one = measure_fidelity(write_table(tmp_path, curves), 10)
    assert (one.variants, one.noise_variants, one.seeds_per_trial) == (4, 3, 1)
    with pytest.raises(ConfigError) as err:  # no variant has two whole groups of 3 seeds
        measure_fidelity(write_table(tmp_path, curves), 10, seeds_per_trial=3)
    assert ">= 6 seeds" in str(err.value) and "at most 5 seeds" in str(err.value)


SPACES = {
    "space": {**SPACE, "head": {**SPACE["head"], "channels": [32]}},
    # the same architectures, trained without drop path: the table's runs say nothing about that proxy
    "regularization": {**SPACE, "transformer": {**SPACE.get("transformer", {}), "drop_path_rate": 0.0}},
}


@pytest.mark.parametrize("what, words", [
    ("rung", "evaluated at iteration 15"),
    ("space", "search space"),
    ("regularization", "drop_path_rate 0.0 and dropout_ratio 0.1"),
    ("seeds", ">= 2 seeds"),
])
def test_a_table_that_cannot_say_fails_with_one_error(tmp_path, what, words):
    curves = {i: {0: c[0]} for i, c in CURVES.items()} if what == "seeds" else CURVES
    table = write_table(tmp_path, curves)
    space = SearchSpace.from_dict(SPACES[what]) if what in SPACES else None
    with pytest.raises(ConfigError) as err:
        measure_fidelity(table, 15 if what == "rung" else 10, space)
    assert err.value.field == "proxy.fidelity" and words in str(err.value)


def _cfg(tmp_path, test_predictor, table: str, **changes) -> SweepConfig:
    data = sweep_dict(tmp_path, test_predictor, **{"proxy.iterations": 10, "proxy.fidelity": table, **changes})
    from topnas.platform.sweep import load_sweep_config

    return load_sweep_config(write_sweep_yaml(tmp_path / "cfg" / "s.yaml", data))


def test_sweep_yaml_names_a_table_relative_to_itself(tmp_path, test_predictor):
    (tmp_path / "cfg").mkdir()
    table = write_table(tmp_path)
    cfg = _cfg(tmp_path, test_predictor, "../replay_test-small.csv")
    assert cfg.proxy.fidelity == str(table.resolve())
    assert fidelity_of(cfg) == measure_fidelity(table, 10)
    assert SweepConfig.from_dict(cfg.to_dict()).proxy.fidelity == str(table.resolve())  # the saved config


@pytest.mark.parametrize("meta, words", [
    ({"space": "another-space"}, "search space 'test-small'"),
    ({"space": "test-small", "proxy": {"crop_size": [96, 96]}}, "proxy.crop_size"),
])
def test_a_table_of_another_sweep_fails_at_load(tmp_path, test_predictor, meta, words):
    (tmp_path / "cfg").mkdir()
    write_table(tmp_path, meta=meta)
    with pytest.raises(ConfigError) as err:
        _cfg(tmp_path, test_predictor, "../replay_test-small.csv")
    assert err.value.field == "proxy.fidelity" and words in str(err.value)


def test_the_parent_run_logs_the_measured_fidelity(tmp_path, test_predictor):
    from topnas.platform import tracking
    from topnas.platform.sweep import estimates
    from topnas.platform.sweep.runner import _create_parent

    (tmp_path / "cfg").mkdir()
    table = write_table(tmp_path)
    cfg = _cfg(tmp_path, test_predictor, "../replay_test-small.csv")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.get_client(uri)
    state = _create_parent(cfg, client, uri, estimates.predictor_info(cfg.latency.predictor))
    run = client.get_run(state.parent_run_id)
    expected = measure_fidelity(table, 10)
    assert run.data.metrics["proxy_spread_to_noise"] == pytest.approx(expected.spread_to_noise)
    assert run.data.metrics["proxy_seed_noise"] == pytest.approx(expected.seed_noise)
    assert run.data.metrics["proxy_spearman"] == pytest.approx(expected.spearman)
    assert run.data.metrics["proxy_spread_net"] == pytest.approx(expected.spread_net)
    assert run.data.metrics["proxy_seed_noise_pooled"] == pytest.approx(expected.seed_noise_pooled)
    assert run.data.params["proxy.fidelity.proxy_rung"] == "10"
    assert run.data.params["proxy.fidelity.exact"] == "false"  # a rung of longer runs, no reference
    assert run.data.params["proxy.fidelity.reference"] == "none"
    assert json.loads((cfg.sweep_dir / "proxy_fidelity.json").read_text())["spread"] == pytest.approx(expected.spread)


def test_the_demo_figure_is_computed_from_the_shipped_table():
    """The demo prints fidelity_of(demo config): recomputed here from the CSV rows by hand."""
    from topnas.platform.sweep import load_sweep_config

    cfg = load_sweep_config(ROOT / "experiments" / "sweep_demo_fixture.yaml")
    f = fidelity_of(cfg)
    assert f is not None and f.proxy_rung == cfg.proxy.iterations
    rows = list(csv.DictReader(open(cfg.proxy.fidelity)))
    longest = max(int(r["iteration"]) for r in rows)
    done = {(r["variant_id"], r["seed"]) for r in rows if int(r["iteration"]) == longest}
    at: dict[str, list[float]] = {}
    for r in rows:
        if int(r["iteration"]) == f.proxy_rung and (r["variant_id"], r["seed"]) in done:
            at.setdefault(r["variant_id"], []).append(float(r["val_mIoU"]))
    noise = statistics.mean(statistics.stdev(v) for v in at.values() if len(v) >= 2)
    spread = statistics.stdev(statistics.mean(v) for v in at.values())
    assert f.variants == len(at)
    assert f.spread_to_noise == pytest.approx(spread / noise)
    within = sum((len(v) - 1) * statistics.variance(v) for v in at.values() if len(v) >= 2) / sum(
        len(v) - 1 for v in at.values())
    net = math.sqrt(max(0.0, spread ** 2 - within * statistics.mean(1 / len(v) for v in at.values())))
    assert f.net_ratio == pytest.approx(net / math.sqrt(within))
    assert f.exact == (longest == f.proxy_rung)  # the demo's table: runs of exactly its proxy
    if cfg.proxy.fidelity_reference:  # ranked against the same variants' longest training
        from scipy.stats import spearmanr

        ref = list(csv.DictReader(open(cfg.proxy.fidelity_reference)))
        ref_longest = max(int(r["iteration"]) for r in ref)
        long_at: dict[str, list[float]] = {}
        for r in ref:
            if int(r["iteration"]) == ref_longest:
                long_at.setdefault(r["variant_id"], []).append(float(r["val_mIoU"]))
        shared = sorted(set(at) & set(long_at))
        assert f.longest_rung == ref_longest and f.reference_variants == len(shared)
        expected = spearmanr([statistics.mean(at[v]) for v in shared], [statistics.mean(long_at[v]) for v in shared])
        assert f.spearman == pytest.approx(expected.statistic)
    assert math.isfinite(f.spearman)


# runs that END at the proxy budget (10): the same variants as CURVES, annealed, so other values
EXACT = {
    0: {0: {5: 0.10, 10: 0.25}, 1: {5: 0.11, 10: 0.27}, 2: {5: 0.09, 10: 0.24}},
    1: {0: {5: 0.20, 10: 0.45}, 1: {5: 0.21, 10: 0.47}},
    2: {0: {5: 0.15, 10: 0.40}},
    3: {0: {5: 0.16, 10: 0.30}},
}


def test_an_exact_table_is_ranked_against_its_reference(tmp_path):
    (tmp_path / "exact").mkdir()
    reference = write_table(tmp_path)  # rungs 10, 20
    table = write_table(tmp_path / "exact", EXACT)  # runs of 10 iterations
    alone = measure_fidelity(table, 10)
    assert alone.exact and math.isnan(alone.spearman)  # nothing longer in the table to rank against
    f = measure_fidelity(table, 10, reference=reference)
    assert f.exact and f.reference == str(reference) and f.reference_variants == 4
    assert f.longest_rung == 20
    assert f.seed_noise == pytest.approx(statistics.mean([statistics.stdev([0.25, 0.27, 0.24]),
                                                          statistics.stdev([0.45, 0.47])]))
    # proxy means 0.2533, 0.46, 0.40, 0.30 -> ranks 1 4 3 2; reference at 20: 0.30, 0.51, 0.45, 0.40 -> 1 4 3 2
    assert f.spearman == pytest.approx(1.0)
    assert not measure_fidelity(reference, 10).exact
    assert "runs ending there" in f.summary() and "Spearman vs 20 iterations 1.00;" in f.summary()


def test_a_reference_that_cannot_rank_the_table_fails_with_one_error(tmp_path):
    (tmp_path / "exact").mkdir()
    table = write_table(tmp_path / "exact", EXACT)
    short = write_table(tmp_path, {i: {0: {10: 0.1 * i}} for i in range(4)})  # no longer than the proxy
    with pytest.raises(ConfigError) as err:
        measure_fidelity(table, 10, reference=short)
    assert err.value.field == "proxy.fidelity_reference" and "longer than 10 iterations" in str(err.value)


def test_sweep_yaml_names_a_reference_relative_to_itself(tmp_path, test_predictor):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "exact").mkdir()
    reference = write_table(tmp_path)
    table = write_table(tmp_path / "exact", EXACT)
    cfg = _cfg(tmp_path, test_predictor, "../exact/replay_test-small.csv",
               **{"proxy.fidelity_reference": "../replay_test-small.csv"})
    assert cfg.proxy.fidelity_reference == str(reference.resolve())
    f = fidelity_of(cfg)
    assert f == measure_fidelity(table, 10, reference=reference.resolve())
    assert fidelity_params(f)["proxy.fidelity.exact"] == "true"
    assert fidelity_params(f)["proxy.fidelity.reference"] == "replay_test-small.csv"
    with pytest.raises(ConfigError) as err:  # a reference with no table to rank
        _cfg(tmp_path, test_predictor, None, **{"proxy.fidelity_reference": "../replay_test-small.csv"})
    assert err.value.field == "proxy.fidelity_reference" and "unless proxy.fidelity" in str(err.value)


def test_front_resolution_compares_the_fronts_mIoU_span_with_the_seed_noise():
    from topnas.platform.sweep.fidelity import front_resolution

    close = front_resolution([0.9007, 0.9011, 0.9007], 0.0048)
    assert close.startswith("the front's 3 members span 0.0004 mIoU = 0.1x the proxy's seed noise 0.0048")
    assert "within the noise" in close
    apart = front_resolution([0.80, 0.90, float("nan")], 0.01)
    assert apart == "the front's 2 members span 0.1000 mIoU = 10.0x the proxy's seed noise 0.0100"
    assert front_resolution([0.9], 0.0048) is None  # one member: no order to judge
    assert front_resolution([0.8, 0.9], float("nan")) is None


def test_load_fidelity_reads_back_what_the_sweep_recorded(tmp_path):
    from topnas.platform.sweep.fidelity import load_fidelity

    table = write_table(tmp_path)
    measured = measure_fidelity(table, 10)
    path = tmp_path / "proxy_fidelity.json"
    assert load_fidelity(path) is None
    path.write_text(json.dumps({**measured.to_dict(), "a_key_from_a_newer_version": 1}))
    assert load_fidelity(path).to_dict() == pytest.approx(measured.to_dict(), nan_ok=True)
    for damaged in ("{not json", json.dumps({"table": "t.csv"}), "[]"):  # a file it cannot read only loses the note
        path.write_text(damaged)
        assert load_fidelity(path) is None
