"""Promotion against a hand-made sweep record (pareto.csv + MLflow parent/child runs), no sweep code.

Trials (val_mIoU, predicted latency ms):

    A tiny preset   0.30  10   front
    B sampled       0.40  20   front  <- knee
    C base preset   0.45  40   front
    D small preset  0.35  25   dominated by B
    G sampled 448   0.20  30   dominated by A and B
    E sampled       failed
    F sampled       infeasible (never trained)
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from topnas.errors import ConfigError

pd = pytest.importorskip("pandas")
pytest.importorskip("mlflow")

from topnas.platform import promote as P  # noqa: E402
from topnas.platform.latency.predictor import PACKAGED  # noqa: E402
from topnas.platform.promote import pricing  # noqa: E402
from topnas.platform.pareto_plots import COLUMNS  # noqa: E402
from topnas.search_spaces import default_space, preset_variant  # noqa: E402

SWEEP = "handmade"
PREDICTOR_ID = pricing.predictor_id(PACKAGED / "snapdragon865_tnn_1core.json")
_EXPORTED: dict[str, object] = {}  # ONNX file stem -> the variant it was "exported" from (see graph_reader)


@pytest.fixture(autouse=True)
def graph_reader(monkeypatch):
    """Price a fake run's ONNX file as the kernels of the variant it stands for.

    The fake full runs carry a one-node ONNX file named after the variant; the real ONNX -> kernels
    reader is exercised by test_finalize_prices_a_real_export.
    """
    from topnas.platform.latency.kernels import kernels_from_config

    monkeypatch.setattr(pricing, "_graph_kernels_reader",
                        lambda: (lambda path: kernels_from_config(_EXPORTED[Path(path).stem])))


def _rows():
    space = default_space()
    b, g, e, f = (space.sample(random.Random(s)) for s in (0, 1, 5, 2))
    tiny, small, base = (preset_variant(n) for n in ("tiny", "small", "base"))
    spec = [
        ("A", tiny, "completed", 0.30, 10.0),
        ("B", b, "completed", 0.40, 20.0),
        ("C", base, "completed", 0.45, 40.0),
        ("D", small, "completed", 0.35, 25.0),
        ("G", g, "completed", 0.20, 30.0),
        ("E", e, "failed", math.nan, 15.0),
        ("F", f, "infeasible", math.nan, 80.0),
    ]
    return spec


@pytest.fixture(scope="module")
def sweep_env(tmp_path_factory):
    """A runs folder with sweeps/handmade/pareto.csv and the matching MLflow parent + child runs."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("promote")
    runs = root / "runs"
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("TOPNAS_HOME", str(runs))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("topnas-sweeps", artifact_location=(root / "mlartifacts").as_uri())
    parent = client.create_run(exp, run_name=SWEEP, tags={"topnas.sweep": SWEEP, "topnas.kind": "sweep",
                                                          "topnas.predictor_id": PREDICTOR_ID})
    pid = parent.info.run_id
    client.log_artifact(pid, str(PACKAGED / "snapdragon865_tnn_1core.json"), "config")  # as the sweep does
    rows, variants = [], {}
    for key, v, status, miou, lat in _rows():
        child = client.create_run(exp, run_name=f"trial-{key}", tags={
            "mlflow.parentRunId": pid, "topnas.sweep": SWEEP, "topnas.kind": "sweep_trial",
            "topnas.trial_id": f"trial_{key}", "topnas.variant_id": v.id, "topnas.status": status})
        cid = child.info.run_id
        client.log_metric(cid, "latency_ms", lat)
        if not math.isnan(miou):
            client.log_metric(cid, "val_mIoU", miou)
        client.set_terminated(cid)
        rows.append({"trial_id": f"trial_{key}", "variant_id": v.id, "status": status, "val_mIoU": miou,
                     "latency_ms": lat, "latency_lo": lat * 0.9, "latency_hi": lat * 1.1, "params": 1e6,
                     "macs": 1e9, "run_id": cid, "preset": v.preset or "", "config": v.to_json(),
                     "pareto": False})
        variants[key] = (v, cid)
    folder = runs / "sweeps" / SWEEP
    folder.mkdir(parents=True)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df.to_csv(folder / "pareto.csv", index=False)
    csv = root / "pareto.csv"
    df.to_csv(csv, index=False)
    client.log_artifact(pid, str(csv))
    client.set_terminated(pid)
    yield {"root": root, "runs": runs, "uri": uri, "client": client, "parent": pid, "variants": variants,
           "experiment": exp}
    mp.undo()


@pytest.fixture
def record(sweep_env):
    return P.load_sweep(SWEEP, tracking_uri=sweep_env["uri"])


# ----------------------------------------------------------------------------- loading + selection
def test_load_sweep_recomputes_front_and_finds_parent(record, sweep_env):
    assert record.parent_run_id == sweep_env["parent"]
    assert record.source.endswith("pareto.csv")
    front = sorted(record.front["trial_id"])
    assert front == ["trial_A", "trial_B", "trial_C"]


def test_load_sweep_from_parent_artifact_when_no_folder(sweep_env, tmp_path, monkeypatch):
    monkeypatch.setenv("TOPNAS_HOME", str(tmp_path / "elsewhere"))  # no sweep folder there
    rec = P.load_sweep(SWEEP, tracking_uri=sweep_env["uri"])
    assert rec.source == f"runs:/{sweep_env['parent']}/pareto.csv"
    assert sorted(rec.front["trial_id"]) == ["trial_A", "trial_B", "trial_C"]


def test_unknown_sweep_names_the_known_ones(sweep_env):
    with pytest.raises(ConfigError, match="handmade"):
        P.load_sweep("nope", tracking_uri=sweep_env["uri"])


def test_knee_selection(record):
    sel = P.select_trial(record, knee=True)
    assert (sel.trial_id, sel.rule, sel.on_front, sel.forced) == ("trial_B", "knee", True, False)


@pytest.mark.parametrize("budget, expected", [(25, "trial_B"), (12, "trial_A"), (40, "trial_C"), (1000, "trial_C")])
def test_max_latency_selection(record, budget, expected):
    sel = P.select_trial(record, max_latency_ms=budget)
    assert sel.trial_id == expected and sel.on_front
    assert sel.value("latency_ms") <= budget


def test_max_latency_below_the_fastest_front_member_is_refused(record):
    with pytest.raises(P.PromotionRefused, match=r"<= 5 ms; the fastest is trial trial_A"):
        P.select_trial(record, max_latency_ms=5)


def test_off_front_trial_is_refused_naming_its_dominator(record):
    with pytest.raises(P.PromotionRefused) as err:
        P.select_trial(record, trial="trial_D")
    msg = str(err.value)
    assert "not on the Pareto front" in msg and "dominated by trial trial_B" in msg and "--force" in msg
    assert err.value.dominated_by == ("trial_B",)
    with pytest.raises(P.PromotionRefused) as err:
        P.select_trial(record, trial="trial_G")
    assert set(err.value.dominated_by) == {"trial_A", "trial_B"}


def test_force_promotes_an_off_front_trial(record):
    sel = P.select_trial(record, trial="trial_D", force=True)
    assert sel.forced and not sel.on_front and sel.dominated_by == ("trial_B",)


def test_failed_trial_refused_unless_forced(record):
    with pytest.raises(P.PromotionRefused, match="status is failed"):
        P.select_trial(record, trial="trial_E")
    assert P.select_trial(record, trial="trial_E", force=True).forced


def test_trial_found_by_variant_id_and_run_id(record, sweep_env):
    v, run_id = sweep_env["variants"]["C"]
    assert P.select_trial(record, trial=v.id).trial_id == "trial_C"
    assert P.select_trial(record, trial=run_id).trial_id == "trial_C"
    with pytest.raises(ConfigError, match="front members"):
        P.select_trial(record, trial="trial_Z")


def test_exactly_one_rule(record):
    with pytest.raises(ConfigError, match="exactly one"):
        P.select_trial(record, knee=True, max_latency_ms=10)
    with pytest.raises(ConfigError, match="exactly one"):
        P.select_trial(record)


# ----------------------------------------------------------------------------- size class + YAML
@pytest.mark.parametrize("name", ["tiny", "small", "base"])
def test_presets_are_their_own_size_class(name):
    sc = P.size_class(preset_variant(name))
    assert sc.name == name and sc.exact_preset
    assert sc.params == P.PRESET_COMPLEXITY[name][0]


def test_sampled_variant_gets_the_nearest_preset():
    v = default_space().sample(random.Random(0))
    sc = P.size_class(v)
    assert sc.name == min(sc.distances, key=sc.distances.get) and not sc.exact_preset


@pytest.mark.parametrize("trial, size, lr", [("trial_A", "tiny", 3e-4), ("trial_C", "base", 1.2e-4),
                                              ("trial_D", "small", 1.2e-4)])
def test_promoted_yaml_is_variant_plus_official_recipe(record, tmp_path, trial, size, lr):
    from topnas.platform.train.train_config import load_config

    sel = P.select_trial(record, trial=trial, force=True)
    sc = P.size_class(sel.variant)
    assert sc.name == size
    path = P.write_experiment(P.build_experiment(sel, sc), tmp_path / "x.yaml")
    cfg = load_config(path)
    assert cfg.model.preset is None and cfg.variant.id == sel.variant_id
    assert cfg.optimizer.lr == pytest.approx(lr)
    assert cfg.optimizer.type == "AdamW" and cfg.optimizer.betas == (0.9, 0.999)
    assert cfg.optimizer.weight_decay == pytest.approx(0.01)
    assert cfg.optimizer.custom_keys["head"] == {"lr_mult": 10.0}
    s = cfg.schedule
    assert (s.policy, s.power, s.min_lr, s.warmup, s.warmup_iters, s.max_iters) == ("poly", 1.0, 0.0, "linear",
                                                                                    1500, 160_000)
    assert s.warmup_ratio == pytest.approx(1e-6)
    assert (cfg.runtime.eval_interval, cfg.runtime.checkpoint_interval) == (16_000, 16_000)
    assert cfg.data.crop_size == (512, 512) and cfg.data.img_scale == (2048, 512)
    assert cfg.data.samples_per_gpu == 2 and cfg.scaling.num_workers == 8 and cfg.total_batch_size == 16
    assert cfg.model.num_classes == 150
    # every promoted variant starts from its size class's ImageNet checkpoint, sliced to fit
    assert cfg.model.init == "imagenet_nearest"
    assert Path(cfg.model.pretrained).name == {"tiny": "topformer-T-224-66.2.pth", "small": "topformer-S-224-72.3.pth",
                                               "base": "topformer-B-224-75.3.pth"}[size]


def test_promoted_yaml_of_a_448_variant_uses_the_448_crop(record, tmp_path):
    from topnas.platform.train.train_config import load_config

    sel = P.select_trial(record, trial="trial_G", force=True)
    assert sel.variant.input_size == (448, 448)
    cfg_raw = P.build_experiment(sel, P.size_class(sel.variant))
    assert cfg_raw["name"] == f"{sel.variant_id}_448x448_160k_ade20k"
    cfg = load_config(P.write_experiment(cfg_raw, tmp_path / "g.yaml"))
    assert cfg.data.crop_size == (448, 448) and cfg.data.img_scale == (2048, 448)
    assert cfg.variant.id == sel.variant_id


def test_scale_down_keeps_the_recipe(record, tmp_path):
    from topnas.platform.train.train_config import load_config

    sel = P.select_trial(record, knee=True)
    full = P.write_experiment(P.build_experiment(sel, P.size_class(sel.variant)),
                              tmp_path / f"{P.experiment_stem(sel.variant)}.yaml")
    small = P.write_experiment(P.scale_down_experiment(full, max_iters=40), tmp_path / "small.yaml")
    big, cfg = load_config(full), load_config(small)
    assert cfg.optimizer == big.optimizer
    assert (cfg.schedule.policy, cfg.schedule.power, cfg.schedule.warmup) == ("poly", 1.0, "linear")
    assert cfg.schedule.max_iters == 40 and cfg.schedule.warmup_iters == 1
    assert cfg.data.fixture is not None and cfg.model.num_classes == cfg.data.fixture.classes
    assert cfg.scaling.use_gpu is False and cfg.data.crop_size != (512, 512)
    assert cfg.variant.model.replace(num_classes=150) == big.variant.model
    assert (cfg.model.init, cfg.model.pretrained) == ("scratch", None)  # the fixture has no checkpoint


# ----------------------------------------------------------------------------- registry
def test_promote_writes_yaml_and_registers_challenger_with_lineage(record, sweep_env, tmp_path):
    client = sweep_env["client"]
    sel = P.select_trial(record, knee=True)
    promo = P.promote(sel, record, model_name="m-lineage", out_dir=tmp_path)
    assert promo.yaml_path == tmp_path / f"{sel.variant_id}_512x512_160k_ade20k.yaml"
    assert promo.yaml_path.read_text().startswith("# Promoted from sweep handmade: trial trial_B, rule knee")
    mv = client.get_model_version_by_alias("m-lineage", "challenger")
    assert str(mv.version) == promo.version == "1"
    _, trial_run = sweep_env["variants"]["B"]
    assert mv.run_id == trial_run and mv.source.endswith("/promotion")
    t = mv.tags
    assert t["topnas.sweep"] == SWEEP and t["topnas.sweep_run_id"] == sweep_env["parent"]
    assert t["topnas.trial_id"] == "trial_B" and t["topnas.trial_run_id"] == trial_run
    assert t["topnas.variant_id"] == sel.variant_id and t["topnas.lineage_stage"] == "promoted"
    assert float(t["topnas.proxy_mIoU"]) == pytest.approx(0.40)
    assert float(t["topnas.predicted_latency_ms"]) == pytest.approx(20.0)
    assert float(t["topnas.predicted_latency_lo"]) == pytest.approx(18.0)
    assert float(t["topnas.predicted_latency_hi"]) == pytest.approx(22.0)
    assert t["topnas.selection"] == "knee" and t["topnas.forced"] == "false"
    assert t["topnas.predictor_id"] == PREDICTOR_ID
    assert t["topnas.train_run"] == promo.run_name
    names = {f.path for f in client.list_artifacts(trial_run, "promotion")}
    assert {"promotion/variant.yaml", "promotion/selection.json", f"promotion/{promo.yaml_path.name}"} <= names
    assert not hasattr(mv, "current_stage") or mv.current_stage in (None, "None")  # no stages


def test_cli_refuses_off_front_and_force_registers(sweep_env, tmp_path, capsys):
    from topnas.platform.cli import main

    base = ["promote", "select", SWEEP, "--tracking-uri", sweep_env["uri"], "--out-dir", str(tmp_path),
            "--model-name", "m-cli"]
    assert main(base + ["--trial", "trial_D"]) == 2
    err = capsys.readouterr().err
    assert "not on the Pareto front" in err and "trial_B" in err
    assert not list(tmp_path.glob("*.yaml"))
    assert main(base + ["--trial", "trial_D", "--force"]) == 0
    out = capsys.readouterr().out
    assert "FORCED" in out and "registered m-cli v1, alias challenger" in out and "topnas promote run --yaml " in out
    mv = sweep_env["client"].get_model_version_by_alias("m-cli", "challenger")
    assert mv.tags["topnas.forced"] == "true" and mv.tags["topnas.on_front"] == "false"
    assert main(base + ["--max-latency-ms", "12"]) == 0
    assert sweep_env["client"].get_model_version_by_alias("m-cli", "challenger").tags["topnas.trial_id"] == "trial_A"


def test_cli_needs_a_selection_rule(sweep_env, capsys):
    from topnas.platform.cli import main

    assert main(["promote", "--sweep", SWEEP, "--tracking-uri", sweep_env["uri"], "--no-launch"]) == 2
    assert "--knee" in capsys.readouterr().err


# ----------------------------------------------------------------------------- finalize + champion
def _fake_full_run(sweep_env, promo, miou: float, input_size=None, change=None) -> str:
    """What a finished full run leaves in MLflow: tags, val_mIoU history, config and ONNX artifacts.

    ``change(cfg) -> cfg`` edits the trained config first (another dataset, schedule, ...).
    """
    import onnx
    from onnx import TensorProto, helper

    from topnas.platform.train.train_config import load_config

    client = sweep_env["client"]
    cfg = load_config(promo.train_yaml)
    if change is not None:
        cfg = change(cfg)
    _EXPORTED[cfg.variant.id] = cfg.variant
    h, w = input_size or cfg.variant.input_size
    exp = client.get_experiment_by_name("topnas-promoted") or None
    exp_id = exp.experiment_id if exp else client.create_experiment(
        "topnas-promoted", artifact_location=(sweep_env["root"] / "mlartifacts-full").as_uri())
    run = client.create_run(exp_id, run_name=promo.run_name, tags={
        "topnas.train_run": promo.run_name, "topnas.model_name": promo.model_name,
        "topnas.promoted_version": promo.version, "topnas.final_iteration": "100"})
    rid = run.info.run_id
    for step, value in ((50, miou / 2), (100, miou)):
        client.log_metric(rid, "val_mIoU", value, step=step)
    folder = sweep_env["root"] / f"art-{rid}"
    (folder / "config").mkdir(parents=True)
    (folder / "config" / "train_config.yaml").write_text(cfg.to_yaml())
    (folder / "onnx").mkdir()
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, h, w])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, h, w])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), folder / "onnx" / f"{cfg.variant.id}.onnx")
    client.log_artifacts(rid, str(folder))
    client.set_terminated(rid, "FINISHED")
    return rid


@pytest.fixture
def promoted(record, tmp_path):
    def make(model_name: str, **pick):
        sel = P.select_trial(record, **(pick or {"knee": True}))
        return P.promote(sel, record, model_name=model_name, out_dir=tmp_path)
    return make


def test_finalize_logs_final_metrics_beside_the_promoted_ones(sweep_env, promoted):
    from topnas.platform.latency.predictor import packaged_predictor

    client = sweep_env["client"]
    promo = promoted("m-final")
    rid = _fake_full_run(sweep_env, promo, 0.5)
    res = P.finalize(rid, tracking_uri=sweep_env["uri"], model_name="m-final")
    expected = packaged_predictor().predict(promo.selection.variant)
    assert res.final_miou == pytest.approx(0.5) and res.latency_ms == pytest.approx(expected.ms)
    assert res.predictor_id == PREDICTOR_ID  # exactly the sweep's predictor
    m = client.get_run(rid).data.metrics
    assert m["final_val_mIoU"] == pytest.approx(0.5)
    assert m["final_latency_ms"] == pytest.approx(expected.ms)
    assert m["final_latency_lo"] == pytest.approx(expected.lo) and m["final_latency_hi"] == pytest.approx(expected.hi)
    assert m["promoted_proxy_mIoU"] == pytest.approx(0.40) and m["promoted_latency_ms"] == pytest.approx(20.0)
    assert m["promoted_latency_lo"] == pytest.approx(18.0) and m["promoted_latency_hi"] == pytest.approx(22.0)
    mv = client.get_model_version_by_alias("m-final", "challenger")
    assert str(mv.version) == res.version == "2" and mv.run_id == rid
    assert mv.tags["topnas.lineage_stage"] == "trained" and mv.tags["topnas.promoted_version"] == "1"
    assert mv.tags["topnas.full_run_id"] == rid and mv.tags["topnas.trial_id"] == "trial_B"
    assert float(mv.tags["topnas.final_mIoU"]) == pytest.approx(0.5)
    assert mv.tags["topnas.setup.predictor_id"] == PREDICTOR_ID and mv.tags["topnas.setup.input_size"] == "512x512"
    # idempotent: finalizing again keeps the version
    again = P.finalize(rid, tracking_uri=sweep_env["uri"], model_name="m-final")
    assert again.version == "2" and again.predictor_id == PREDICTOR_ID
    summary = json.loads(Path(client.download_artifacts(rid, "promotion/finalize.json", str(sweep_env["root"]))
                              ).read_text())
    assert summary["onnx"] == f"onnx/{promo.selection.variant_id}.onnx"


def test_finalize_rejects_an_export_of_another_size(sweep_env, promoted):
    promo = promoted("m-badonnx")
    rid = _fake_full_run(sweep_env, promo, 0.5, input_size=(256, 256))
    with pytest.raises(ConfigError, match="onnx input"):
        P.finalize(rid, tracking_uri=sweep_env["uri"], model_name="m-badonnx")


def test_champion_moves_only_on_a_non_dominated_result(sweep_env, promoted):
    client = sweep_env["client"]
    uri, name = sweep_env["uri"], "m-champ"

    first = _fake_full_run(sweep_env, promoted(name), 0.50)
    d1 = P.accept(first, tracking_uri=uri, model_name=name)
    assert d1.moved and d1.previous is None and "no champion yet" in d1.reason
    champion_v = d1.champion
    assert str(client.get_model_version_by_alias(name, "champion").version) == champion_v

    # same variant (same latency), lower mIoU: dominated -> champion stays
    worse = _fake_full_run(sweep_env, promoted(name), 0.45)
    d2 = P.accept(worse, tracking_uri=uri, model_name=name)
    assert not d2.moved and d2.champion == champion_v and "kept champion" in d2.reason and "dominates" in d2.reason
    assert str(client.get_model_version_by_alias(name, "champion").version) == champion_v
    assert str(client.get_model_version_by_alias(name, "challenger").version) == d2.candidate  # challenger moved

    # the tiny preset: lower mIoU but faster -> not dominated -> champion moves
    faster = _fake_full_run(sweep_env, promoted(name, max_latency_ms=12), 0.30)
    d3 = P.accept(faster, tracking_uri=uri, model_name=name)
    assert d3.moved and d3.previous == champion_v and "neither dominates" in d3.reason
    assert str(client.get_model_version_by_alias(name, "champion").version) == d3.candidate

    # accepting the champion again is a no-op
    d4 = P.accept(faster, tracking_uri=uri, model_name=name)
    assert not d4.moved and d4.champion == d3.candidate

    # a re-run that reproduces the champion exactly (same mIoU, same export): a tie keeps the champion
    rerun = _fake_full_run(sweep_env, promoted(name, max_latency_ms=12), 0.30)
    d5 = P.accept(rerun, tracking_uri=uri, model_name=name)
    assert d5.candidate != d3.candidate
    assert not d5.moved and d5.champion == d3.candidate and "ties it" in d5.reason
    assert str(client.get_model_version_by_alias(name, "champion").version) == d3.candidate


def test_cli_accept_says_which_it_kept(sweep_env, promoted, capsys):
    from topnas.platform.cli import main

    uri, name = sweep_env["uri"], "m-cli-accept"
    good = _fake_full_run(sweep_env, promoted(name), 0.6)
    bad = _fake_full_run(sweep_env, promoted(name), 0.1)
    assert main(["promote", "--accept", good, "--tracking-uri", uri, "--model-name", name]) == 0
    assert "champion moved" in capsys.readouterr().out
    assert main(["promote", "--accept", bad, "--tracking-uri", uri, "--model-name", name]) == 0
    out = capsys.readouterr().out
    assert "champion kept" in out and "it dominates" in out


def _version(tags, version="7"):
    from types import SimpleNamespace

    return SimpleNamespace(tags=tags, version=version)


@pytest.fixture
def shifted_sweep(sweep_env, tmp_path):
    """A sweep run that logged its own predictor (the packaged one + 100 ms) under config/, as sweeps do."""
    from topnas.platform.latency.predictor import packaged_predictor

    client = sweep_env["client"]
    shifted = packaged_predictor()
    shifted.intercept_ms += 100.0
    path = shifted.save(tmp_path / "config" / "my_device.json")
    (tmp_path / "config" / "sweep.yaml").write_text("name: other\n")
    run = client.create_run(sweep_env["experiment"], run_name="other-sweep", tags={"topnas.sweep": "other"})
    client.log_artifacts(run.info.run_id, str(tmp_path / "config"), "config")
    return run.info.run_id, path, pricing.predictor_id(path)


def test_finalize_uses_exactly_the_predictor_the_sweep_recorded(sweep_env, shifted_sweep):
    from topnas.platform.latency.predictor import packaged_predictor

    client = sweep_env["client"]
    run_id, path, pid = shifted_sweep
    variant = preset_variant("tiny")
    choice = pricing.load_predictor(client, _version({"topnas.sweep_run_id": run_id, "topnas.predictor_id": pid}), None)
    assert choice.id == pid and choice.source == f"runs:/{run_id}/config/my_device.json"
    assert choice.predictor.predict(variant).ms == pytest.approx(packaged_predictor().predict(variant).ms + 100.0)
    # an explicit predictor wins (file or packaged name), whatever the sweep recorded
    assert pricing.load_predictor(client, None, str(path)).id == pid
    assert pricing.load_predictor(client, None, "snapdragon865_tnn_1core").id == PREDICTOR_ID


def test_finalize_stops_when_the_recorded_predictor_is_missing(sweep_env, shifted_sweep):
    client = sweep_env["client"]
    run_id, _, _ = shifted_sweep
    # the sweep priced with a predictor whose file is not among its artifacts (not the +100 ms one)
    with pytest.raises(ConfigError) as err:
        pricing.load_predictor(client, _version({"topnas.sweep_run_id": run_id,
                                            "topnas.predictor_id": "my_device-0123456789"}), None)
    msg = str(err.value)
    assert "\n" not in msg and "my_device-0123456789" in msg and run_id in msg and "pass --predictor" in msg
    # no recorded predictor id / not promoted at all: no silent packaged default either
    with pytest.raises(ConfigError, match=r"records no sweep predictor \(tag topnas.predictor_id\).*--predictor"):
        pricing.load_predictor(client, _version({"topnas.sweep_run_id": run_id}), None)
    with pytest.raises(ConfigError, match="not promoted from a sweep.*--predictor"):
        pricing.load_predictor(client, None, None)
    # the sweep run is gone from this tracking store
    with pytest.raises(ConfigError, match=r"cannot read sweep run 0123abcd.*pass --predictor") as err:
        pricing.load_predictor(client, _version({"topnas.sweep_run_id": "0123abcd", "topnas.predictor_id": "x-1"}),
                               None)
    assert "\n" not in str(err.value)


def test_recorded_predictor_path_is_used_only_while_it_is_the_same_file(sweep_env, tmp_path):
    """A sweep run without the artifact: its param predictor.path, if the bytes still hash to the id."""
    from topnas.platform.latency.predictor import packaged_predictor

    client = sweep_env["client"]
    path = packaged_predictor().save(tmp_path / "dev.json")
    pid = pricing.predictor_id(path)
    run = client.create_run(sweep_env["experiment"], run_name="no-artifacts")
    client.log_param(run.info.run_id, "predictor.path", str(path))
    version = _version({"topnas.sweep_run_id": run.info.run_id, "topnas.predictor_id": pid})
    assert pricing.load_predictor(client, version, None).source == str(path)
    changed = packaged_predictor()
    changed.intercept_ms += 1.0
    changed.save(path)
    with pytest.raises(ConfigError, match=r"dev.json \(another file now\)"):
        pricing.load_predictor(client, version, None)
    path.unlink()
    with pytest.raises(ConfigError, match=r"dev.json \(missing\)"):
        pricing.load_predictor(client, version, None)


def test_explicit_predictor_must_exist_and_parse(sweep_env, tmp_path):
    client = sweep_env["client"]
    with pytest.raises(ConfigError, match="--predictor: got 'nope'.*packaged name"):
        pricing.load_predictor(client, None, "nope")
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="--predictor.*cannot read it") as err:
        pricing.load_predictor(client, None, str(bad))
    assert "\n" not in str(err.value)


def test_cli_finalize_without_a_recorded_predictor_is_one_line(sweep_env, capsys, monkeypatch):
    from topnas.platform.cli import main

    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    client = sweep_env["client"]
    exp = client.create_experiment("hand-trained")
    run = client.create_run(exp, run_name="by-hand")
    client.log_metric(run.info.run_id, "val_mIoU", 0.3, step=10)
    client.set_terminated(run.info.run_id, "FINISHED")
    folder = sweep_env["root"] / f"hand-{run.info.run_id}"
    (folder / "onnx").mkdir(parents=True)
    (folder / "onnx" / "x.onnx").write_bytes(b"")
    client.log_artifacts(run.info.run_id, str(folder))
    rc = main(["promote", "--finalize", run.info.run_id, "--tracking-uri", sweep_env["uri"]])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--predictor" in err[0] and "not promoted from a sweep" in err[0]
    assert "Traceback" not in "".join(err)


# ----------------------------------------------------------------------------- the export is priced, not the config
def test_finalize_refuses_without_a_graph_reader(sweep_env, promoted, monkeypatch):
    """No ONNX -> kernels reader: the check fails; the config's prediction is never passed off as the export's."""
    promo = promoted("m-noreader")
    rid = _fake_full_run(sweep_env, promo, 0.5)
    monkeypatch.setattr(pricing, "_graph_kernels_reader", lambda: None)
    with pytest.raises(ConfigError, match="final latency.*onnx_kernels"):
        P.finalize(rid, tracking_uri=sweep_env["uri"], model_name="m-noreader")
    assert "final_latency_ms" not in sweep_env["client"].get_run(rid).data.metrics


def test_finalize_prices_the_graph_not_the_config(sweep_env, promoted, monkeypatch):
    """The export's kernels decide: a graph that differs from the config gets its own price."""
    from topnas.platform.latency.kernels import kernels_from_config
    from topnas.platform.latency.predictor import packaged_predictor

    promo = promoted("m-graph")
    rid = _fake_full_run(sweep_env, promo, 0.5)
    bigger = preset_variant("base")
    monkeypatch.setattr(pricing, "_graph_kernels_reader", lambda: (lambda path: kernels_from_config(bigger)))
    res = P.finalize(rid, tracking_uri=sweep_env["uri"], model_name="m-graph")
    pred = packaged_predictor()
    assert res.latency_ms == pytest.approx(pred.predict(bigger).ms)
    m = sweep_env["client"].get_run(rid).data.metrics
    assert m["final_latency_ms"] == pytest.approx(pred.predict(bigger).ms)
    assert m["config_latency_ms"] == pytest.approx(pred.predict(promo.selection.variant).ms)
    assert m["final_latency_ms"] != pytest.approx(m["config_latency_ms"])


def test_finalize_prices_a_real_export(sweep_env, promoted, monkeypatch, tmp_path):
    """The package's reader on a real export of a searched variant: the export's own kernels, priced.

    A full run whose ONNX file is a real export of its variant gets the predictor's price of that
    graph (equal to the config's kernels: the exporter and the kernel model agree).
    """
    from topnas.platform.latency.onnx_graph import onnx_kernels
    from topnas.platform.latency.predictor import packaged_predictor
    from topnas.topformer.export import export_onnx

    monkeypatch.undo()  # the package's own reader, not the fixture's stand-in
    promo = promoted("m-real-export")
    rid = _fake_full_run(sweep_env, promo, 0.5)
    client = sweep_env["client"]
    from topnas.platform.train.train_config import load_config

    cfg = load_config(promo.train_yaml)
    path = export_onnx(cfg.variant.build(norm="BN"), tmp_path / "onnx" / f"{cfg.variant.id}.onnx",
                       cfg.variant.input_size)
    client.log_artifact(rid, str(path), "onnx")  # the real export replaces the one-node stand-in
    res = P.finalize(rid, tracking_uri=sweep_env["uri"], model_name="m-real-export")
    pred = packaged_predictor()
    assert res.latency_ms == pytest.approx(pred.predict_kernels(onnx_kernels(path)).ms)
    assert res.latency_ms == pytest.approx(pred.predict(cfg.variant).ms, rel=1e-6)


def test_finalize_refuses_a_graph_without_kernels(sweep_env, promoted, monkeypatch):
    """The fake run's one-node Identity graph holds no kernel: no price, rather than the intercept."""
    monkeypatch.undo()
    promo = promoted("m-empty-graph")
    rid = _fake_full_run(sweep_env, promo, 0.5)
    with pytest.raises(ConfigError, match="final latency.*no kernel"):
        P.finalize(rid, tracking_uri=sweep_env["uri"], model_name="m-empty-graph")


# ----------------------------------------------------------------------------- accept compares like with like
def _other(**sections):
    """``change`` for _fake_full_run: replace fields of config sections, e.g. schedule={"max_iters": 80_000}."""
    import dataclasses

    def change(cfg):
        return dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name), **fields)
                                           for name, fields in sections.items()})
    return change


@pytest.mark.parametrize("change, what", [
    (_other(schedule={"max_iters": 80_000}), "iterations: champion 160000, candidate 80000"),
    (_other(model={"num_classes": 171}), "number of classes: champion 150, candidate 171"),
    (_other(data={"root": "/data/cityscapes"}), "dataset: champion ade:validation, candidate cityscapes:validation"),
])
def test_accept_refuses_runs_trained_differently(sweep_env, promoted, change, what):
    uri, name = sweep_env["uri"], f"m-cmp-{what.split(':')[0].replace(' ', '-')}"
    champ = _fake_full_run(sweep_env, promoted(name), 0.40, change=_other(data={"root": "/data/ade"}))
    assert P.accept(champ, tracking_uri=uri, model_name=name).moved
    cand = _fake_full_run(sweep_env, promoted(name), 0.90,
                          change=lambda c: change(_other(data={"root": "/data/ade"})(c)))
    with pytest.raises(P.PromotionRefused) as err:
        P.accept(cand, tracking_uri=uri, model_name=name)
    assert what in str(err.value) and "--force" in str(err.value)
    client = sweep_env["client"]
    assert client.get_model_version_by_alias(name, "champion").run_id == champ
    d = P.accept(cand, tracking_uri=uri, model_name=name, force=True)
    assert d.moved and "FORCED" in d.reason and what in d.reason
    assert what in client.get_model_version(name, d.candidate).tags["topnas.accept_forced"]


def test_accept_refuses_another_predictor_and_input_size(sweep_env, promoted, capsys, monkeypatch):
    from topnas.platform.cli import main

    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    uri, name = sweep_env["uri"], "m-cmp-pred"
    champ = _fake_full_run(sweep_env, promoted(name), 0.40)
    assert P.accept(champ, tracking_uri=uri, model_name=name).moved
    # trial_G is a 448x448 variant; priced with the local ORT predictor
    cand = _fake_full_run(sweep_env, promoted(name, trial="trial_G", force=True), 0.9)
    base = ["promote", "--accept", cand, "--tracking-uri", uri, "--model-name", name]
    assert main(base + ["--predictor", "local_cpu_ort"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input size: champion 512x512, candidate 448x448" in err[0]
    assert f"latency predictor: champion {PREDICTOR_ID}, candidate local_cpu_ort-" in err[0]
    assert main(base + ["--force"]) == 0
    assert "FORCED" in capsys.readouterr().out


def test_ray_job_submission_names_the_interpreter_and_passes_tracking(record, sweep_env, tmp_path, monkeypatch):
    """What goes to JobSubmissionClient.submit_job (a fake client: no cluster needed here)."""
    import sys

    import ray.job_submission

    calls = {}

    class FakeClient:
        def __init__(self, address):
            calls["address"] = address

        def submit_job(self, **kwargs):
            calls.update(kwargs)
            return kwargs["submission_id"]

    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", FakeClient)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    work = tmp_path / "checkout"
    promo = P.promote(P.select_trial(record, knee=True), record, model_name="m-job", out_dir=work / "experiments" / "promoted")
    res = P.submit_ray_job(promo, address="http://127.0.0.1:8265", working_dir=work,
                           env={"EXTRA": "1"})
    assert res.mode == "ray-job" and res.job_id == calls["submission_id"] and calls["address"] == "http://127.0.0.1:8265"
    entry = calls["entrypoint"].split()
    assert entry[:4] == [sys.executable, "-m", "topnas", "promote"]
    assert entry[entry.index("--run-full") + 1] == f"experiments/promoted/{promo.yaml_path.name}"
    assert entry[entry.index("--model-version") + 1] == promo.version
    assert entry[entry.index("--run-name") + 1] == promo.run_name
    env = calls["runtime_env"]["env_vars"]
    assert env["MLFLOW_TRACKING_URI"] == sweep_env["uri"] and env["RAY_AUTH_MODE"] == "token"
    assert env["TOPNAS_HOME"] == str(sweep_env["runs"]) and env["EXTRA"] == "1"
    assert calls["runtime_env"]["working_dir"] == str(work) and ".venv" in calls["runtime_env"]["excludes"]
    mv = sweep_env["client"].get_model_version_by_alias("m-job", "challenger")
    assert mv.tags["topnas.ray_job_id"] == res.job_id
    # a remote cluster gets the interpreter and tracking URI it names, and no TOPNAS_HOME of this machine
    P.submit_ray_job(promo, address="http://10.0.0.5:8265", working_dir=work, python="/opt/venv/bin/python",
                     tracking_uri="http://mlflow:5000")
    assert calls["entrypoint"].startswith("/opt/venv/bin/python -m topnas promote --run-full")
    assert calls["runtime_env"]["env_vars"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "TOPNAS_HOME" not in calls["runtime_env"]["env_vars"]


@pytest.mark.parametrize("noise, knee, widest, kept", [
    (0.06, "trial_B", "trial_B", 2),  # C beats B by 0.05 <= 0.06: not worth its 20 ms
    (0.20, "trial_A", "trial_A", 1),  # every gain within the noise: the fastest member
    (0.01, "trial_B", "trial_C", 3),  # every gain above the noise: the plain rules
])
def test_selection_does_not_pay_latency_for_mIoU_gains_within_the_proxys_seed_noise(record, noise, knee, widest,
                                                                                      kept):
    import dataclasses

    # the front: A (0.30, 10 ms), B (0.40, 20 ms), C (0.45, 40 ms)
    noisy = dataclasses.replace(record, seed_noise=noise)
    by_knee = P.select_trial(noisy, knee=True)
    by_budget = P.select_trial(noisy, max_latency_ms=1000)
    assert (by_knee.trial_id, by_budget.trial_id) == (knee, widest)
    words = f"(front thinned at the proxy's seed noise, {noise:.4f} mIoU: {kept} of 3 members kept)"
    assert by_knee.rule == f"knee {words}" and by_budget.rule == f"max_latency_ms<=1000 {words}"


def test_load_sweep_finds_the_seed_noise_in_the_folder_then_on_the_parent_run(record, sweep_env):
    import json
    from types import SimpleNamespace

    from topnas.platform.sweep.reader import _seed_noise

    assert record.seed_noise is None  # this sweep measured none
    fidelity_file = sweep_env["runs"] / "sweeps" / SWEEP / "proxy_fidelity.json"
    fidelity_file.write_text(json.dumps({"table": "t.csv", "proxy_rung": 420, "longest_rung": 960, "variants": 48,
                                         "noise_variants": 6, "seeds": 4, "seed_noise": 0.0048, "spread": 0.0076,
                                         "spread_to_noise": 1.58, "spearman": 0.7, "tied_at_mode": 2,
                                         "mean_mIoU": 0.897}))
    try:
        assert P.load_sweep(SWEEP, tracking_uri=sweep_env["uri"]).seed_noise == pytest.approx(0.0048)
    finally:
        fidelity_file.unlink()

    def client(metrics):
        return SimpleNamespace(get_run=lambda run_id: SimpleNamespace(data=SimpleNamespace(metrics=metrics)))

    assert _seed_noise(None, client({"proxy_seed_noise": 0.011}), "parent") == pytest.approx(0.011)
    assert _seed_noise(None, client({}), "parent") is None
    assert _seed_noise(None, client({"proxy_seed_noise": 0.011}), None) is None
