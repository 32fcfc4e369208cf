"""benchmarks/probes/tiny_space_sweep.yaml: the one architecture it trains lies below the demo space.

The README's "capacity does not bind" argument compares this variant with the 48 demo-space variants of
the shipped tables; it only holds while the probe's variant is smaller and faster than every one of them.
"""
from __future__ import annotations

import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "benchmarks" / "probes" / "tiny_space_sweep.yaml"
DEMO_TABLE = ROOT / "benchmarks" / "data" / "demo_proxy_4class_slide" / "replay_fixture-small.csv"


def test_the_probe_variant_is_smaller_and_faster_than_every_demo_space_variant():
    from topnas.platform.sweep import load_sweep_config
    from topnas.platform.sweep.estimates import complexity_of, load_predictor, predict

    probe = load_sweep_config(PROBE)
    demo = load_sweep_config(ROOT / "experiments" / "sweep_demo_fixture.yaml")
    import random

    assert probe.space.size == 1
    tiny = probe.space.sample(random.Random(0))
    assert tiny.id == "tf-f211d3e026"  # the id the README's figures name
    # the same task and proxy as the demo: only the space differs
    assert probe.to_dict()["proxy"]["fixture"] == demo.to_dict()["proxy"]["fixture"]
    assert probe.proxy.iterations == demo.proxy.iterations
    assert not demo.space.contains(tiny)

    with DEMO_TABLE.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len({r["variant_id"] for r in rows}) == 48
    latency = predict(load_predictor(probe.latency.predictor), tiny).latency_ms
    params = complexity_of(tiny)["params"]
    assert latency < min(float(r["latency_ms"]) for r in rows)
    assert 4 * params < min(int(r["params"]) for r in rows)
