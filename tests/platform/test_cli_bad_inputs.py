"""Bad input, everywhere: each case goes through the real CLI and must fail early and cleanly.

For every case: a non-zero exit, exactly one stderr line that names the field (or file) at fault,
no traceback, nothing started (Ray not initialised, no child process left), nothing written (the
run folder and the case's own folder are byte-for-byte what they were). The commands run in this
process through :func:`topnas.platform.cli.main` with stderr captured; two of them also as a real
subprocess, to see the exact stderr a user sees.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.mlflow_server import free_port
from topnas.platform.cli import main
from topnas.platform.raywatch import descendants
from topnas.platform.sweep.fidelity import FIDELITY_KEYS

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(p for p in (ROOT / "experiments").rglob("*.yaml") if "promoted" not in p.parts)


# ----------------------------------------------------------------------------- the world the cases see
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A run folder with a finished-looking sweep, an MLflow store, and bad files next to good ones."""
    from topnas.platform import tracking
    from topnas.platform.sweep.layout import SweepState
    from topnas.platform.sweep.ledger import Ledger, TrialRecord

    root = tmp_path_factory.mktemp("bad_inputs")
    runs = root / "runs"
    (runs / "sweeps").mkdir(parents=True)
    uri = f"sqlite:///{runs / 'mlflow.db'}"
    client = tracking.get_client(uri)
    exp = tracking.get_or_create_experiment("bad-inputs", client=client)
    parent = client.create_run(exp, run_name="s_ok", tags={"topnas.sweep": "s_ok", "topnas.kind": "sweep"})
    client.set_terminated(parent.info.run_id)

    sweep = yaml.safe_load((ROOT / "experiments" / "sweep_demo_fixture.yaml").read_text())
    ok = runs / "sweeps" / "s_ok"
    ok.mkdir()
    sweep["name"] = "s_ok"
    for key in FIDELITY_KEYS:  # paths relative to the demo YAML's folder
        sweep["proxy"].pop(key, None)
    (ok / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    SweepState("s_ok", parent.info.run_id, exp, uri, {"val_mIoU": 0.0, "latency_ms": 200.0}, "pid",
                 status="finished").save(ok)
    ledger = Ledger(ok)
    for tid, miou, ms in (("tA", 0.30, 50.0), ("tB", 0.20, 60.0), ("tC", 0.40, 40.0)):  # tA, tB dominated
        ledger.append(TrialRecord(trial_id=tid, variant_id=f"tf-{tid}", status="completed", val_mIoU=miou,
                                    iteration=120, latency_ms=ms, latency_lo=ms * 0.9, latency_hi=ms * 1.1,
                                    run_id=f"{tid}run", optuna_trial=0))
    for name, content in (("s_empty_state", ""), ("s_bad_state", "{not json")):
        folder = runs / "sweeps" / name
        folder.mkdir()
        (folder / "state.json").write_text(content)
        sweep["name"] = name
        (folder / "sweep.yaml").write_text(yaml.safe_dump(sweep))
        (folder / "trials.jsonl").write_text((ok / "trials.jsonl").read_text())

    files = root / "files"
    files.mkdir()
    (files / "broken.yaml").write_text("name: [unclosed\n  proxy: {\n")
    (files / "corrupt.pth").write_bytes(b"this is not a torch checkpoint")
    header = ("variant_id,pass_index,run_index,median_ms,mean_ms,min_ms,timestamp,governor,device,runtime,"
              "threads,core,input_h,input_w,config\n")
    cfg = json.dumps({"preset": "tiny"}).replace('"', '""')
    for name, value in (("negative", "-3.0"), ("nan", "nan"), ("missing", "")):
        (files / f"calib_{name}.csv").write_text(
            header + f'tf-x,0,0,{value},{value},{value},2026-01-01,performance,d,ort,1,0,512,512,"{cfg}"\n')
    variant = {"name": "impossible", "input_size": [512, 512], "model": {"preset": "tiny", "num_classes": 150,
                                                                       "embed_out_indice": [9, 1]}}
    (files / "impossible_variant.yaml").write_text(yaml.safe_dump(variant))
    return {"root": root, "runs": runs, "files": files, "uri": uri, "exp": exp,
            "parent": parent.info.run_id, "dead": f"http://127.0.0.1:{free_port()}"}


def _bad_yaml(world, source: Path, key_path: list[str] | None) -> Path:
    """A copy of an experiment file with one unknown key (top level, or under ``key_path``)."""
    data = yaml.safe_load(source.read_text())
    node = data
    for k in key_path or []:
        node = node[k]
    node["bogus_key"] = 1
    out = world["files"] / f"unknown_{'_'.join(key_path or ['top'])}_{source.name}"
    # _base_ entries are resolved relative to the file: keep them pointing at the real bases
    if "_base_" in data:
        bases = data["_base_"] if isinstance(data["_base_"], list) else [data["_base_"]]
        data["_base_"] = [str((source.parent / b).resolve()) for b in bases]
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def _command_for(path: Path) -> str:
    return "sweep" if yaml.safe_load(path.read_text()).get("search_space") is not None or \
        "sweep" in path.name else "train"


# ----------------------------------------------------------------------------- the cases
# argv templates: {files}, {uri}, {dead} (a port nothing listens on), {exp:<path>}, {unknown:<path>:<key>}
# (a copy of an experiment file with `bogus_key` at the top level or under <key>),
# {beside:<base path>} (a train YAML using that base with `bogus_key` in each of its sections).
SWEEP_YAML = "{exp:experiments/sweep_demo_fixture.yaml}"
TINY_FIXTURE = "{exp:experiments/demo_tiny_fixture.yaml}"


def _specs() -> list[tuple[str, list[str], str]]:
    cases: list[tuple[str, list[str], str]] = [
        ("sweep: broken YAML", ["sweep", "{files}/broken.yaml"], "broken.yaml"),
        ("train: broken YAML", ["train", "{files}/broken.yaml"], "broken.yaml"),
        ("train: missing YAML", ["train", "{files}/nope.yaml"], "nope.yaml"),
        ("sweep: bad --set syntax", ["sweep", SWEEP_YAML, "--set", "seed"], "--set"),
        ("sweep: impossible search space", ["sweep", SWEEP_YAML, "--set", "search_space.stages=[]"], "stages"),
        ("sweep: num_samples 0", ["sweep", SWEEP_YAML, "--set", "num_samples=0"], "num_samples"),
        ("sweep: --num-cpus 0", ["sweep", SWEEP_YAML, "--num-cpus", "0"], "--num-cpus"),
        ("sweep: unreachable tracking URI", ["sweep", SWEEP_YAML, "--set", "tracking.uri={dead}"], "tracking.uri"),
        ("sweep: missing dataset, no fixture", ["sweep", SWEEP_YAML, "--set", "proxy.dataset={files}/no_data",
                                                "--set", "proxy.fixture=null"], "no_data"),
        ("sweep --resume: unknown sweep", ["sweep", "--resume", "no_such_sweep"], "no_such_sweep"),
        ("sweep --resume: empty state.json", ["sweep", "--resume", "s_empty_state"], "state.json"),
        ("sweep --resume: corrupt state.json", ["sweep", "--resume", "s_bad_state"], "state.json"),
        ("pareto show: unknown sweep", ["pareto", "show", "no_such_sweep"], "no_such_sweep"),
        ("pareto show: empty state.json", ["pareto", "show", "s_empty_state"], "state.json"),
        ("pareto show: corrupt state.json", ["pareto", "show", "s_bad_state"], "state.json"),
        ("train: missing dataset folder", ["train", "{exp:experiments/topformer_tiny_512x512_160k_ade20k.yaml}",
                                           "--set", "model.pretrained=null", "--set", "data.root={files}/no_ade"],
         "no_ade"),
        ("train: corrupt checkpoint", ["train", TINY_FIXTURE, "--set", "model.pretrained={files}/corrupt.pth"],
         "corrupt.pth"),
        ("train: unreachable tracking URI", ["train", TINY_FIXTURE, "--set", "tracking.uri={dead}"], "tracking.uri"),
        ("train: impossible variant", ["train", TINY_FIXTURE, "--set", "model.preset=null", "--set",
                                       "model.variant={files}/impossible_variant.yaml"], "embed_out_indice"),
        ("model summary: impossible variant", ["model", "summary", "--variant", "{files}/impossible_variant.yaml"],
         "embed_out_indice"),
        ("model summary: unknown preset", ["model", "summary", "--preset", "huge"], "--preset"),
        ("export: corrupt checkpoint", ["export", "--preset", "tiny", "--checkpoint", "{files}/corrupt.pth", "-o",
                                        "{files}/out.onnx"], "corrupt.pth"),
        ("export: impossible shape", ["export", "--preset", "tiny", "--shape", "0", "512", "-o", "{files}/o.onnx"],
         "input_size"),
        ("data fixture: 1 class", ["data", "fixture", "--out", "{files}/fx", "--classes", "1"], "classes"),
        ("data check: missing folder", ["data", "check", "--root", "{files}/no_ade"], "no_ade"),
        ("latency fit: negative latency", ["latency", "fit", "--calib", "{files}/calib_negative.csv", "--out",
                                           "{files}/p.json"], "median_ms"),
        ("latency fit: NaN latency", ["latency", "fit", "--calib", "{files}/calib_nan.csv", "--out",
                                      "{files}/p.json"], "median_ms"),
        ("latency fit: missing latency", ["latency", "fit", "--calib", "{files}/calib_missing.csv", "--out",
                                          "{files}/p.json"], "median_ms"),
        ("latency measure: missing space", ["latency", "measure", "--variants", "{files}/nospace.yaml", "-n", "3",
                                            "--device", "local", "--out", "{files}/c.csv"], "--variants"),
        ("latency predict: unknown predictor", ["latency", "predict", "--predictor", "no_such_predictor",
                                                "--preset", "tiny"], "predictor"),
        ("promote: unknown sweep", ["promote", "--sweep", "no_such_sweep", "--knee", "--no-launch"], "no_such_sweep"),
        ("promote: trial not on the front", ["promote", "--sweep", "s_ok", "--trial", "tA", "--no-launch",
                                             "--tracking-uri", "{uri}"], "tA"),
        ("promote: accept an unknown run", ["promote", "--accept", "0123456789abcdef0123456789abcdef",
                                            "--model-name", "m", "--tracking-uri", "{uri}"],
         "0123456789abcdef0123456789abcdef"),
        ("promote: accept with unreachable tracking URI", ["promote", "--accept", "0123456789abcdef",
                                                           "--model-name", "m", "--tracking-uri", "{dead}"],
         "--tracking-uri"),
        ("promote select: corrupt state.json", ["promote", "select", "s_bad_state", "--knee"], "state.json"),
        ("ui: unknown sweep", ["ui", "no_such_sweep"], "no_such_sweep"),
        ("ui: corrupt state.json", ["ui", "s_bad_state"], "state.json"),
    ]
    for path in EXPERIMENTS:
        rel = str(path.relative_to(ROOT))
        if path.parent.name == "_base_":
            cases.append((f"train: unknown key beside {rel}", ["train", f"{{beside:{rel}}}"], "bogus_key"))
            continue
        cmd = _command_for(path)
        cases.append((f"{cmd}: unknown top-level key in {rel}", [cmd, f"{{unknown:{rel}:}}"], "bogus_key"))
        data = yaml.safe_load(path.read_text())
        nested = "proxy" if cmd == "sweep" else "data" if "data" in data else "model" if "model" in data else ""
        if nested:
            cases.append((f"{cmd}: unknown key under {nested} in {rel}", [cmd, f"{{unknown:{rel}:{nested}}}"],
                          "bogus_key"))
    return cases


def _materialize(world, argv: list[str]) -> list[str]:
    out = []
    for a in argv:
        a = a.replace("{files}", str(world["files"])).replace("{uri}", world["uri"]).replace("{dead}", world["dead"])
        if a.startswith("{exp:"):
            a = str(ROOT / a[5:-1])
        elif a.startswith("{unknown:"):
            rel, key = a[9:-1].split(":")
            a = str(_bad_yaml(world, ROOT / rel, [key] if key else None))
        elif a.startswith("{beside:"):
            base = ROOT / a[8:-1]
            data = {"_base_": [str(base)], "model": {"preset": "tiny", "num_classes": 150}}
            data.update({k: {**(v if isinstance(v, dict) else {}), "bogus_key": 1}
                         for k, v in yaml.safe_load(base.read_text()).items()})
            path = world["files"] / f"unknown_beside_{base.name}"
            path.write_text(yaml.safe_dump(data))
            a = str(path)
        out.append(a)
    return out


def _tree(*folders: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for folder in folders:
        for p in folder.rglob("*"):
            if p.is_file():
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
            else:
                out[str(p)] = (-1, 0)
    return out


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
    return rc, err.getvalue()


CASES = _specs()


def test_at_least_25_bad_inputs():
    assert len(CASES) >= 25
    assert len({c[0] for c in CASES}) == len(CASES)
    assert {"sweep", "train", "pareto", "promote", "latency", "model", "export", "data"} <= {c[1][0] for c in CASES}
    named = " ".join(c[0] for c in CASES)
    assert all(str(p.relative_to(ROOT)) in named for p in EXPERIMENTS), "an experiment file is not covered"


@pytest.mark.parametrize("name, argv, field", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, argv, field, world, monkeypatch):
    argv = _materialize(world, argv)  # files written before the snapshot below
    monkeypatch.setenv("TOPNAS_HOME", str(world["runs"]))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["uri"])
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    before = _tree(world["runs"], world["files"])
    children = set(descendants(os.getpid()))
    rc, err = _run(argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc != 0, f"{name}: exit 0"
    assert "Traceback" not in err, f"{name}: traceback\n{err}"
    assert len(lines) == 1, f"{name}: {len(lines)} stderr lines\n{err}"
    assert field in lines[0], f"{name}: the error does not name {field!r}: {lines[0]}"
    assert lines[0].startswith(f"topnas {argv[0]}: error: "), lines[0]
    if "ray" in sys.modules:
        import ray

        assert not ray.is_initialized(), f"{name}: Ray was started"
    assert set(descendants(os.getpid())) <= children, f"{name}: a process was left running"
    assert _tree(world["runs"], world["files"]) == before, f"{name}: something was written"


@pytest.mark.parametrize("argv, field", [
    (["pareto", "show", "s_empty_state"], "state.json"),
    (["latency", "fit", "--calib", "{files}/calib_nan.csv", "--out", "{files}/p.json"], "median_ms"),
])
def test_a_real_process_prints_one_line(world, argv, field):
    env = {**os.environ, "TOPNAS_HOME": str(world["runs"]), "MLFLOW_TRACKING_URI": world["uri"]}
    argv = [a.replace("{files}", str(world["files"])) for a in argv]
    res = subprocess.run([sys.executable, "-m", "topnas", *argv], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode != 0 and len(lines) == 1 and field in lines[0], res.stderr
