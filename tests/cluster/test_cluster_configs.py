"""cluster/: the launcher YAML, the KubeRay manifests and the local scripts parse and say what they must.

What must hold: every config installs topnas (torch pinned as in pyproject, then the repo) and runs
topnas entry points; Ray's dashboard / Jobs API and MLflow are never exposed publicly; token auth is
on; every node points at one MLflow tracking server.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"


def _pins() -> dict[str, str]:
    text = (ROOT / "pyproject.toml").read_text()
    return {"torch": re.search(r'"torch==([^"]+)"', text).group(1),
            "ray": re.search(r'"ray\[[^\]]*\]==([^"]+)"', text).group(1)}


# ----------------------------------------------------------------------------- Ray cluster launcher
@pytest.fixture(scope="module")
def launcher() -> dict:
    docs = list(yaml.safe_load_all((CLUSTER / "ray-cluster-gpu.yaml").read_text()))
    assert len(docs) == 1
    return docs[0]


def test_launcher_yaml_passes_rays_own_schema(launcher):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(dict(launcher)))


def test_launcher_has_a_head_and_gpu_workers(launcher):
    types = launcher["available_node_types"]
    assert launcher["head_node_type"] in types
    workers = [n for n in types if n != launcher["head_node_type"]]
    assert workers and any(types[n]["max_workers"] > 0 for n in workers)
    gpu_instances = [types[n]["node_config"]["InstanceType"] for n in workers]
    assert all(re.match(r"^(g\d|p\d)", t) for t in gpu_instances), gpu_instances
    assert launcher["docker"]["image"] == f"rayproject/ray:{_pins()['ray']}-py311-gpu"


def test_launcher_installs_topnas_from_the_synced_repo(launcher):
    assert launcher["file_mounts"]["~/topnas"] == "."
    setup = " ".join(launcher["setup_commands"])
    assert f"torch=={_pins()['torch']}" in setup
    assert "pip install -q -e ~/topnas" in setup and "python -m topnas --help" in setup
    assert ".venv" in launcher["rsync_exclude"] and "runs" in launcher["rsync_exclude"]


def test_launcher_keeps_ray_private_and_authenticated(launcher):
    head = " ".join(launcher["head_start_ray_commands"])
    workers = " ".join(launcher["worker_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "--dashboard-host=0.0.0.0" not in head
    assert "RAY_AUTH_MODE=token ray start --head" in head and "RAY_AUTH_MODE=token ray start --address" in workers
    assert "~/.ray/auth_token" in launcher["file_mounts"]


def test_launcher_points_every_node_at_one_mlflow_server(launcher):
    head = " ".join(launcher["head_start_ray_commands"]) + " ".join(launcher["head_setup_commands"])
    assert "mlflow server" in head and "--port 5000" in head
    assert "MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:5000" in " ".join(launcher["worker_setup_commands"])


# ----------------------------------------------------------------------------- KubeRay
@pytest.fixture(scope="module")
def kuberay() -> dict[str, list[dict]]:
    out = {}
    for name in ("raycluster.yaml", "rayjob-sweep.yaml"):
        out[name] = [d for d in yaml.safe_load_all((CLUSTER / "kuberay" / name).read_text()) if d]
    return out


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_raycluster_manifest(kuberay):
    docs = kuberay["raycluster.yaml"]
    (rc,) = [d for d in docs if d["kind"] == "RayCluster"]
    assert rc["apiVersion"] == "ray.io/v1" and rc["spec"]["rayVersion"] == _pins()["ray"]
    assert rc["spec"]["authOptions"]["mode"] == "token"
    head = rc["spec"]["headGroupSpec"]
    workers = rc["spec"]["workerGroupSpecs"]
    assert head["serviceType"] == "ClusterIP"
    assert any("nvidia.com/gpu" in _containers(w["template"])[0]["resources"]["limits"] for w in workers)
    for template in [head["template"]] + [w["template"] for w in workers]:
        (c,) = _containers(template)
        assert c["image"].endswith("/topnas:0.1.0")
        assert _env(c)["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    kinds = {d["kind"] for d in docs}
    assert {"RayCluster", "Deployment", "Service"} <= kinds and "Ingress" not in kinds
    for svc in (d for d in docs if d["kind"] == "Service"):
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    (mlflow,) = [d for d in docs if d["kind"] == "Deployment"]
    args = " ".join(_containers(mlflow["spec"]["template"])[0]["args"])
    assert "--port=5000" in args and "--artifacts-destination" in args


def test_rayjob_runs_the_sweep_entry_point_on_that_cluster(kuberay):
    (job,) = kuberay["rayjob-sweep.yaml"]
    (rc,) = [d for d in kuberay["raycluster.yaml"] if d["kind"] == "RayCluster"]
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["clusterSelector"]["ray.io/cluster"] == rc["metadata"]["name"]
    entry = spec["entrypoint"].split()
    assert entry[:2] == ["topnas", "sweep"] and entry[2].startswith("experiments/")
    assert (ROOT / entry[2]).is_file(), f"the RayJob runs {entry[2]}, which is not in the repo"
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    submitter = _env(_containers(spec["submitterPodTemplate"])[0])
    assert submitter["RAY_AUTH_MODE"] == "token"
    assert submitter["RAY_AUTH_TOKEN"]["secretKeyRef"]["name"] == rc["spec"]["authOptions"]["secretName"]


def test_kuberay_image_installs_topnas():
    text = (CLUSTER / "kuberay" / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{_pins()['ray']}-py311-gpu" in text
    assert f"torch=={_pins()['torch']}" in text and "pip install --no-cache-dir -e /home/ray/topnas" in text


# ----------------------------------------------------------------------------- local scripts + README
@pytest.mark.parametrize("script", ["start_local_cluster.sh", "stop_local_cluster.sh"])
def test_local_scripts_parse_and_explain_themselves(script):
    path = CLUSTER / "local" / script
    subprocess.run(["bash", "-n", str(path)], check=True)
    help_text = subprocess.run(["bash", str(path), "--help"], capture_output=True, text=True, check=True).stdout
    assert "--state" in help_text
    bad = subprocess.run(["bash", str(path), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr


def test_start_script_sets_resources_auth_and_localhost_only():
    text = (CLUSTER / "local" / "start_local_cluster.sh").read_text()
    for flag in ("--num-cpus", "--memory", "--object-store-memory", "--dashboard-host 127.0.0.1",
                 "--node-ip-address 127.0.0.1", "--head", "--address", "RAY_AUTH_TOKEN_PATH"):
        assert flag in text, flag
    assert "ray stop" not in text.replace("never calls `ray stop`", "")


def test_start_script_rejects_bad_values(tmp_path):
    res = subprocess.run(["bash", str(CLUSTER / "local" / "start_local_cluster.sh"), "--workers", "two",
                          "--state", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 2 and "--workers: got 'two'" in res.stderr
    res = subprocess.run(["bash", str(CLUSTER / "local" / "start_local_cluster.sh"), "--auth", "none",
                          "--state", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 2 and "allowed: token, disabled" in res.stderr


def test_stop_script_without_a_cluster_is_a_no_op(tmp_path):
    res = subprocess.run(["bash", str(CLUSTER / "local" / "stop_local_cluster.sh"), "--state",
                          str(tmp_path / "none")], capture_output=True, text=True)
    assert res.returncode == 0 and "nothing to stop" in res.stdout


def test_readme_covers_mlflow_and_keeping_ray_private():
    text = (CLUSTER / "README.md").read_text()
    for phrase in ("MLFLOW_TRACKING_URI", "ray dashboard cluster/ray-cluster-gpu.yaml", "kubectl",
                   "port-forward", "RAY_AUTH_MODE", "start_local_cluster.sh", "topnas promote"):
        assert phrase in text, phrase
