"""The per-worker loop in one process (no Ray): checkpoints, exact resume after a failure."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from topnas.platform.train.training_state import MODEL_FILE, STATE_FILE
from topnas.platform.train.loop import InjectedFault, LocalSession, TrainJob, run_loop

ITERS = 8


def _cfg(make_config, **extra):
    return make_config(
        schedule={"max_iters": ITERS, "warmup_iters": 3},
        runtime={"log_interval": 2, "eval_interval": ITERS, "checkpoint_interval": 3},
        scaling={"num_workers": 1}, **extra,
    )


def _run(cfg, directory: Path) -> tuple[dict, LocalSession]:
    session = LocalSession(directory)
    summary = run_loop(cfg, TrainJob(cfg.name, str(directory)), session)
    return summary, session


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    latest = sorted(directory.glob("checkpoint_*"))[-1]
    return torch.load(latest / MODEL_FILE, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, train_fixture):
    from tests.platform.train.conftest import small_config_dict
    from topnas.platform.train.train_config import TrainConfig

    base = tmp_path_factory.mktemp("uninterrupted")
    raw = small_config_dict(train_fixture, base / "runs")
    raw["schedule"] = {"max_iters": ITERS, "warmup_iters": 3}
    raw["runtime"] = {"log_interval": 2, "eval_interval": ITERS, "checkpoint_interval": 3}
    raw["scaling"]["num_workers"] = 1
    cfg = TrainConfig.from_dict(raw)
    summary, session = _run(cfg, base / "run")
    return cfg, summary, session, base / "run"


def test_checkpoints_hold_a_resumable_state(uninterrupted) -> None:
    from topnas.topformer import TopFormer
    from topnas.topformer.weights import load_checkpoint

    cfg, summary, session, run = uninterrupted
    assert summary["iteration"] == ITERS and summary["start_iteration"] == 0
    assert [r["iteration"] for r in session.reports] == [3, 6, 8]
    assert "val_mIoU" in session.reports[-1] and "val_mIoU" not in session.reports[0]
    last = run / f"checkpoint_{ITERS:09d}"
    names = {p.name for p in last.iterdir()}
    assert {"model.pt", "optimizer.pt", "trainer_state.json", "config.yaml", "rng_rank0.pt"} <= names
    state = json.loads((last / STATE_FILE).read_text())
    assert state["iteration"] == ITERS and state["variant_id"] == cfg.variant.id and state["norm"] == "BN"
    # the weights are an mmcv-style checkpoint the model loader understands
    model = TopFormer(cfg.variant.model.replace(norm="BN"))
    report = load_checkpoint(model, last / MODEL_FILE, strict=True, verbose=False)
    assert report.ok and report.kind == "segmentation"


def test_failure_then_resume_matches_uninterrupted(uninterrupted, make_config, tmp_path: Path) -> None:
    _, ref_summary, ref_session, ref_run = uninterrupted
    cfg = _cfg(make_config, fault_injection={"rank": 0, "at_iter": 5})
    run = tmp_path / "run"
    with pytest.raises(InjectedFault):
        _run(cfg, run)
    assert [p.name for p in sorted(run.glob("checkpoint_*"))] == ["checkpoint_000000003"]
    summary, session = _run(cfg, run)  # second attempt: the marker file keeps the fault from firing again
    assert summary["start_iteration"] == 3 and summary["iteration"] == ITERS
    assert [r["iteration"] for r in session.reports] == [6, 8]
    for got, want in zip(session.reports, ref_session.reports[1:]):
        assert got["lr"] == want["lr"]
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)
    ref_w, got_w = _weights(ref_run), _weights(run)
    assert all(torch.allclose(ref_w[k].float(), got_w[k].float(), rtol=1e-5, atol=1e-7) for k in ref_w)
    assert summary["val_mIoU"] == pytest.approx(ref_summary["val_mIoU"])


def test_finished_run_resumes_to_nothing(uninterrupted) -> None:
    cfg, ref_summary, _, run = uninterrupted
    summary, session = _run(cfg, run)
    assert summary["start_iteration"] == ITERS and session.reports == []
    # ...yet returns the final evaluation its checkpoint recorded (the sweep reports it to Tune)
    for key in ("val_mIoU", "val_mAcc", "loss", "lr"):
        assert summary[key] == pytest.approx(ref_summary[key], rel=1e-9), key


def test_the_loop_trains_with_the_configured_class_weight(make_config, tmp_path: Path, monkeypatch) -> None:
    from tests.platform.train.conftest import NUM_CLASSES
    from topnas.platform.train import loop

    seen: list = []
    step = loop.train_step

    def recording_step(*args, **kwargs):
        seen.append(kwargs.get("class_weight"))
        return step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", recording_step)
    weights = [1.0, 2.0, 3.0, 4.0, 5.0][:NUM_CLASSES]
    cfg = make_config(schedule={"max_iters": 2, "warmup_iters": 1},
                      runtime={"log_interval": 2, "eval_interval": 2, "checkpoint_interval": 2},
                      scaling={"num_workers": 1},
                      model={"preset": "tiny", "num_classes": NUM_CLASSES, "class_weight": weights})
    _run(cfg, tmp_path / "run")
    assert len(seen) == 2 and all(torch.equal(w, torch.tensor(weights)) for w in seen)
