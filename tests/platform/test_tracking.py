"""MLflow helpers against a temp SQLite store, and once against a real `mlflow server`."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from topnas.errors import ConfigError
from topnas.platform import tracking
from topnas.platform.tracking import (
    MAX_PARAM_VALUE_LENGTH,
    PARENT_RUN_TAG,
    RUN_KEY_TAG,
    find_run_by_tag,
    flatten_params,
    get_client,
    get_or_create_experiment,
    git_commit,
    log_params_batched,
    resolve_tracking_uri,
    start_or_resume_run,
)

# --------------------------------------------------------------------------- pure helpers


def test_flatten_params_nested_lists_and_scalars():
    flat = flatten_params({
        "model": {"blocks": [[3, 1, 16, 1], [3, 4, 32, 2]], "heads": 4, "act": None},
        "train": {"lr": 3e-4, "sync_bn": False, "opt": {"name": "adamw"}},
        "empty": {},
        7: "int key",
    })
    assert flat == {
        "model.blocks": "[[3, 1, 16, 1], [3, 4, 32, 2]]",
        "model.heads": "4",
        "model.act": "None",
        "train.lr": "0.0003",
        "train.sync_bn": "False",
        "train.opt.name": "adamw",
        "empty": "{}",
        "7": "int key",
    }
    assert json.loads(flat["model.blocks"]) == [[3, 1, 16, 1], [3, 4, 32, 2]]
    assert flatten_params({"a": {"b": 1}}, sep="/") == {"a/b": "1"}


def test_flatten_params_dataclass():
    @dataclasses.dataclass
    class Inner:
        c: int = 2

    @dataclasses.dataclass
    class Outer:
        a: int = 1
        inner: Inner = dataclasses.field(default_factory=Inner)

    assert flatten_params(Outer()) == {"a": "1", "inner.c": "2"}


def test_flatten_params_truncates_long_values():
    flat = flatten_params({"long": "x" * 10_000, "list": list(range(5000)), "short": "ok"})
    assert len(flat["long"]) == MAX_PARAM_VALUE_LENGTH
    assert flat["long"].endswith("...[truncated]")
    assert len(flat["list"]) == MAX_PARAM_VALUE_LENGTH and flat["list"].startswith("[0, 1, 2")
    assert flat["short"] == "ok"
    assert len(flatten_params({"v": "y" * 100}, max_length=50)["v"]) == 50


def test_flatten_params_errors():
    with pytest.raises(ConfigError, match="unique"):
        flatten_params({"a.b": 1, "a": {"b": 2}})
    with pytest.raises(ConfigError):
        flatten_params(["not", "a", "mapping"])
    with pytest.raises(ConfigError):
        flatten_params({"k" * 300: 1})


def test_resolve_tracking_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("TOPNAS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = resolve_tracking_uri()
    assert default == f"sqlite:///{(tmp_path / 'home').resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri() == "http://env:5000"
    assert resolve_tracking_uri(None) == "http://env:5000"
    assert resolve_tracking_uri("http://explicit:1") == "http://explicit:1"


def test_default_artifact_location(tmp_path):
    loc = tracking.default_artifact_location(f"sqlite:///{tmp_path}/m.db", "my sweep/1")
    assert loc == (tmp_path / "mlartifacts" / "my_sweep_1").as_uri()
    assert tracking.default_artifact_location("http://127.0.0.1:5000", "x") is None


def test_git_commit(tmp_path):
    assert git_commit(tmp_path) is None  # not a repository
    sha = git_commit()
    assert sha is None or len(sha) == 40


# --------------------------------------------------------------------------- SQLite store


@pytest.fixture(scope="module")
def sqlite_client(tmp_path_factory):
    """One migrated SQLite store for the module (first use migrates, ~2 s)."""
    folder = tmp_path_factory.mktemp("mlflow_sqlite")
    return get_client(f"sqlite:///{folder / 'mlflow.db'}"), folder


def test_get_or_create_experiment_idempotent(sqlite_client):
    client, folder = sqlite_client
    exp = get_or_create_experiment("exp-a", client=client, tags={"topnas.kind": "sweep"})
    assert get_or_create_experiment("exp-a", client=client) == exp
    info = client.get_experiment(exp)
    assert info.tags["topnas.kind"] == "sweep"
    assert info.artifact_location == (folder / "mlartifacts" / "exp-a").as_uri()
    client.delete_experiment(get_or_create_experiment("exp-deleted", client=client))
    with pytest.raises(ConfigError, match="deleted"):
        get_or_create_experiment("exp-deleted", client=client)
    with pytest.raises(ConfigError):
        get_or_create_experiment("  ", client=client)


def test_experiments_are_created_as_model_training(sqlite_client):
    """MLflow 3's UI reads the experiment type from this tag: "Machine learning", not GenAI."""
    client, _ = sqlite_client
    kind = client.get_experiment(get_or_create_experiment("exp-kind", client=client)).tags
    assert kind[tracking.EXPERIMENT_KIND_TAG] == tracking.MODEL_TRAINING_KIND == "custom_model_development"
    assert tracking.EXPERIMENT_KIND_TAG == "mlflow.experimentKind"
    old = client.create_experiment("exp-old")  # made before topnas set the tag
    assert tracking.EXPERIMENT_KIND_TAG not in client.get_experiment(old).tags
    assert get_or_create_experiment("exp-old", client=client) == old
    assert client.get_experiment(old).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    chosen = get_or_create_experiment("exp-genai", client=client, tags={"mlflow.experimentKind": "genai_development"})
    assert get_or_create_experiment("exp-genai", client=client) == chosen
    assert client.get_experiment(chosen).tags["mlflow.experimentKind"] == "genai_development"  # a choice is kept


def test_mlflow_ui_knows_the_kind_and_the_mode_parameter():
    """The pinned MLflow's UI bundle uses the tag value and the URL parameter topnas writes."""
    import mlflow

    js = "".join(p.read_text(errors="replace") for p in
                 (Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js").glob("main.*.js"))
    assert 'CUSTOM_MODEL_DEVELOPMENT="custom_model_development"' in js and '"mlflow.experimentKind"' in js
    assert 'MACHINE_LEARNING="machine_learning"' in js and 'get("workflowType")' in js
    assert tracking.UI_MODE_QUERY == "workflowType=machine_learning"


def test_log_params_batched(sqlite_client):
    client, _ = sqlite_client
    exp = get_or_create_experiment("exp-params", client=client)
    run = client.create_run(exp)
    params = {f"p{i:03d}": i for i in range(250)}
    assert log_params_batched(client, run.info.run_id, params) == 250
    got = client.get_run(run.info.run_id).data.params
    assert got == {k: str(v) for k, v in params.items()}
    # Re-logging identical values (a resumed run) is fine.
    log_params_batched(client, run.info.run_id, params, batch_size=7)
    with pytest.raises(ConfigError, match="batch_size"):
        log_params_batched(client, run.info.run_id, params, batch_size=101)


def test_find_run_by_tag(sqlite_client):
    client, _ = sqlite_client
    exp = get_or_create_experiment("exp-find", client=client)
    parent = client.create_run(exp, tags={RUN_KEY_TAG: "sweep:it's"})
    child = client.create_run(exp, tags={PARENT_RUN_TAG: parent.info.run_id, "trial": "t1"})
    assert find_run_by_tag(client, [exp], RUN_KEY_TAG, "sweep:it's").info.run_id == parent.info.run_id
    assert find_run_by_tag(client, exp, PARENT_RUN_TAG, parent.info.run_id).info.run_id == child.info.run_id
    assert find_run_by_tag(client, [exp], "trial", "t2") is None
    client.delete_run(child.info.run_id)
    assert find_run_by_tag(client, [exp], "trial", "t1") is None
    with pytest.raises(ConfigError):
        find_run_by_tag(client, [exp], "trial", "both ' and \"")
    with pytest.raises(ConfigError):
        find_run_by_tag(client, [], "trial", "t1")


def test_start_or_resume_run(sqlite_client):
    client, _ = sqlite_client
    exp = get_or_create_experiment("exp-resume", client=client)
    parent, resumed = start_or_resume_run(client, exp, "sweep:demo", run_name="demo",
                                          tags={"topnas.sampler": "tpe"})
    assert not resumed and parent.data.tags["topnas.sampler"] == "tpe"
    pid = parent.info.run_id
    child, resumed = start_or_resume_run(client, exp, "sweep:demo/trial:t1", run_name="t1",
                                         parent_run_id=pid)
    assert not resumed and child.data.tags[PARENT_RUN_TAG] == pid
    client.set_terminated(child.info.run_id, "KILLED")

    again, resumed = start_or_resume_run(client, exp, "sweep:demo/trial:t1", parent_run_id=pid)
    assert resumed and again.info.run_id == child.info.run_id
    assert again.info.status == "RUNNING"
    assert len(client.search_runs([exp])) == 2  # nothing duplicated
    with pytest.raises(ConfigError, match="parent"):
        start_or_resume_run(client, exp, "sweep:demo/trial:t1", parent_run_id="other")


# --------------------------------------------------------------------------- real server


@pytest.mark.integration
def test_parent_child_runs_and_artifacts_over_http(mlflow_server_uri, tmp_path):
    client = get_client(mlflow_server_uri)
    assert client.tracking_uri.startswith("http://127.0.0.1:")
    exp = get_or_create_experiment("it-sweep", client=client)
    assert get_or_create_experiment("it-sweep", client=client) == exp

    parent, _ = start_or_resume_run(client, exp, "sweep:it", run_name="sweep")
    pid = parent.info.run_id
    child, _ = start_or_resume_run(client, exp, "sweep:it/trial:0", run_name="trial-0",
                                   parent_run_id=pid)
    cid = child.info.run_id
    log_params_batched(client, cid, flatten_params({"model": {"embed_dim": 128, "blocks": [[3, 1]]}}))
    client.log_metric(cid, "val_mIoU", 0.31, step=1)
    client.set_tag(cid, "topnas.pareto", "true")

    local = tmp_path / "front.json"
    local.write_text(json.dumps({"front": ["v1", "v2"]}))
    client.log_artifact(pid, str(local), artifact_path="pareto")
    client.set_terminated(cid)

    # Read everything back over HTTP.
    found = find_run_by_tag(client, [exp], PARENT_RUN_TAG, pid)
    assert found is not None and found.info.run_id == cid
    got = client.get_run(cid)
    assert got.data.params == {"model.embed_dim": "128", "model.blocks": "[[3, 1]]"}
    assert got.data.metrics["val_mIoU"] == pytest.approx(0.31)
    assert got.data.tags["topnas.pareto"] == "true" and got.info.status == "FINISHED"
    assert find_run_by_tag(client, [exp], RUN_KEY_TAG, "sweep:it").info.run_id == pid
    assert [a.path for a in client.list_artifacts(pid, "pareto")] == ["pareto/front.json"]
    assert client.get_run(pid).info.artifact_uri.startswith("mlflow-artifacts:")

    # Download through the server's artifact proxy.
    dst = tmp_path / "download"
    dst.mkdir()
    path = Path(client.download_artifacts(pid, "pareto/front.json", str(dst)))
    assert json.loads(path.read_text()) == {"front": ["v1", "v2"]}
    # And once more with the plain REST endpoint, no MLflow client involved.
    import urllib.request

    root = client.get_run(pid).info.artifact_uri.removeprefix("mlflow-artifacts:").strip("/")
    url = f"{mlflow_server_uri}/api/2.0/mlflow-artifacts/artifacts/{root}/pareto/front.json"
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert json.loads(resp.read()) == {"front": ["v1", "v2"]}
