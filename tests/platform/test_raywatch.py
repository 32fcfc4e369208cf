"""A local Ray started by a driver does not outlive it (real Ray, real processes).

Measured with Ray 2.60 before the watchdog: after SIGKILL of a driver that ran ``ray.init()``,
``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent`` were still alive 20 s later.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.sessions import kill_session

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DRIVER = """
import sys, time
import ray
from topnas.platform.raywatch import start_local_ray
watch = start_local_ray(num_cpus=1, include_dashboard=True)
print("ready", flush=True)
if sys.argv[1] == "shutdown":
    ray.shutdown()
    watch.release()
    print("released", flush=True)
time.sleep(600)
"""


def _session(sid: int) -> list[str]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2:].split()
            if int(fields[3]) == sid and fields[0] not in ("Z", "X") and int(entry) != sid:
                out.append(f"{entry} {text[text.index('(') + 1:text.rindex(')')]}")
    return out


def _wait_empty(sid: int, timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _session(sid):
        time.sleep(0.5)
    return _session(sid)


def _driver(mode: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, mode], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    want = "released" if mode == "shutdown" else "ready"
    for line in proc.stdout:
        if line.strip() == want:
            return proc
    raise AssertionError(f"the driver exited ({proc.wait()}) before printing {want!r}")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the watchdog reads /proc (Linux)")
def test_agents_die_with_a_killed_driver():
    proc = _driver("kill")
    try:
        time.sleep(3)  # agents up
        names = " ".join(_session(proc.pid))
        assert "raylet" in names and "gcs_server" in names, names
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        left = _wait_empty(proc.pid, 20)
    finally:
        kill_session(proc.pid)
    assert left == [], left


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the watchdog reads /proc (Linux)")
def test_nothing_left_after_shutdown_and_release():
    proc = _driver("shutdown")
    try:
        left = _session(proc.pid)  # release() waited for the watchdog: nothing of Ray remains
    finally:
        kill_session(proc.pid)
    assert left == [], left


def _sleeper(env_extra: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, **env_extra}
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env, start_new_session=True)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the watchdog reads /proc (Linux)")
def test_an_orphan_that_names_its_raylet_is_stopped_too():
    """A worker forked just before its raylet died is no one's descendant; its RAY_RAYLET_PID still names it."""
    from topnas.platform import raywatch

    raylet = _sleeper({})
    time.sleep(0.2)
    orphan = _sleeper({"RAY_RAYLET_PID": str(raylet.pid)})
    stranger = _sleeper({"RAY_RAYLET_PID": str(raylet.pid + 1)})
    procs = [raylet, orphan, stranger]
    try:
        start = raywatch.descendants(os.getpid(), recursive=False)[raylet.pid]
        time.sleep(0.5)  # the sleepers' environments are readable once exec'd
        found = raywatch.ray_orphans({raylet.pid: start})
        assert orphan.pid in found and stranger.pid not in found and raylet.pid not in found
        watch = subprocess.Popen([sys.executable, "-I", raywatch.__file__, f"{raylet.pid}:{start}"],
                                 stdin=subprocess.PIPE, start_new_session=True)
        time.sleep(0.5)
        watch.stdin.close()  # as if the driver died
        assert watch.wait(timeout=30) == 0
        assert raylet.wait(timeout=5) == -signal.SIGTERM
        assert orphan.wait(timeout=5) == -signal.SIGTERM
        assert stranger.poll() is None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
