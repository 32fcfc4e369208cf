"""`topnas sweep` in a real terminal (tmux): the screen holds the live view and the front, no Ray internals.

A replayed sweep (no training, seconds of work) runs in a detached tmux pane of a private tmux
server; when it has ended the pane (with its scrollback) is captured. Starts Ray (integration).
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from topnas.platform.sweep import SweepConfig, load_trials

from .conftest import replay_sweep_dict, write_sweep_yaml

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_S = 900
DONE = "TOPNAS-SWEEP-EXITED"
NUM_SAMPLES = 5  # each trial is a Ray actor start (seconds on 2 cores); 5 leave a front of several
RAY_INTERNALS = ("core_worker", "raylet", "Reporting training result", "╭", "Trial status", "Trial run_trial",
                 "Started a local Ray instance", "mlflow.store.db", "tensorboard")


@pytest.fixture()
def screen(tmp_path, test_predictor, replay_table):
    data = replay_sweep_dict(tmp_path, test_predictor, replay_table, name="tmux_view", num_samples=NUM_SAMPLES,
                             **{"replay.delay_s": 0.2})
    cfg = SweepConfig.from_dict(data)
    yaml_path = write_sweep_yaml(tmp_path / "tmux_view.yaml", data)
    env = {"TOPNAS_HOME": str(tmp_path / "home"), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    command = (f"cd {shlex.quote(str(ROOT))} && env -u MLFLOW_TRACKING_URI -u RAY_ADDRESS "
               + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
               + f" {shlex.quote(sys.executable)} -m topnas sweep {shlex.quote(str(yaml_path))} --num-cpus 2; "
               f"echo {DONE} rc=$?; sleep 600")
    tmux = ["tmux", "-L", f"topnas-test-{os.getpid()}", "-f", "/dev/null"]
    subprocess.run([*tmux, "new-session", "-d", "-s", "view", "-x", "150", "-y", "60", "bash", "--norc",
                    "--noprofile", "-c", command], check=True)
    try:
        deadline, text = time.monotonic() + TIMEOUT_S, ""
        while time.monotonic() < deadline:
            text = subprocess.run([*tmux, "capture-pane", "-p", "-J", "-S", "-", "-t", "view"], check=True,
                                  capture_output=True, text=True).stdout
            if DONE in text:
                break
            time.sleep(1.0)
        yield cfg, text
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)


def test_the_terminal_shows_the_view_and_the_front_and_no_ray_internals(screen):
    cfg, text = screen
    assert f"{DONE} rc=0" in text, text[-3000:]
    for internal in RAY_INTERNALS:
        assert internal not in text, f"{internal!r} on screen:\n{text}"
    front = load_trials(cfg.sweep_dir)
    front = front[front["pareto"]]
    assert len(front) >= 2
    lines = text.splitlines()
    # the live block left on screen: progress, counts and the front (variant, mIoU, latency) ...
    progress = [line for line in lines if line.startswith(f"sweep {cfg.name}: ") and " trials " in line]
    done = f"sweep {cfg.name}: {NUM_SAMPLES}/{NUM_SAMPLES} trials"
    assert len(progress) == 1 and progress[0].startswith(done), text  # redrawn in place
    counts = next(line for line in lines if line.startswith("  running "))
    assert counts.split()[:2] == ["running", "0"]
    header = next(i for i, line in enumerate(lines) if line.startswith("  front (") and "latency ms" in line)
    fastest = front.sort_values("latency_ms").iloc[0]
    assert lines[header + 1].split() == [fastest["variant_id"], f"{fastest['val_mIoU']:.4f}",
                                         f"{fastest['latency_ms']:.1f}"]
    # ... the final table, and one line per finished trial
    table = next(i for i, line in enumerate(lines) if line.split()[:3] == ["variant", "mIoU", "latency"])
    for _, row in front.iterrows():
        shown = next(line for line in lines[table:] if line.startswith(row["variant_id"]))
        assert shown.split()[1:3] == [f"{row['val_mIoU']:.4f}", f"{row['latency_ms']:.1f}"]
    trial_lines = [line for line in lines if line.startswith("  trial ")]
    assert len(trial_lines) == NUM_SAMPLES and len({line.split()[1] for line in trial_lines}) == NUM_SAMPLES
    logs = list((cfg.sweep_dir / "logs").glob("sweep-*.log"))
    assert len(logs) == 1 and f"logs of Ray, Tune and MLflow: {logs[0]}" in text.replace("\n", "")
    assert "Trial status" in logs[0].read_text()  # what was kept off the screen is in the log
