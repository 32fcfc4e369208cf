"""Measure variants with ONNX Runtime on this host, in the official latency protocol.

Protocol (the TopFormer authors' latency graph, and the fixed core and runtime that make numbers
comparable): the exported latency
graph (input ``input`` 1x3xHxW -> stride-8 logits, BN folded), ONNX Runtime CPU with one intra-op and
one inter-op thread, the process pinned to ONE core with ``os.sched_setaffinity``, ``warmup``
untimed runs then ``runs`` timed runs. Each row records median / mean / min / std and every timed
run, the host CPU model, core id, governor (when readable), thermal state, runtime and version,
the variant's full config and id, the load average and a timestamp.

Resumable: rows are appended (flushed + fsynced) as each (variant, pass) finishes, and a rerun skips
the (variant_id, pass_index) pairs already in the file. Exported models are cached by variant id
in ``model_dir``, so a second pass does not export again. Several passes in alternating order spread
the interference of other processes on a shared host over different variants.

Example::

    from topnas.search_spaces import preset_variant
    measure_local([preset_variant("tiny")], "calib.csv", runs=20, passes=2)
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import platform
import socket
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from topnas.errors import ConfigError
from topnas.platform.latency.measurements import append_row, completed_keys

__all__ = ["HostInfo", "host_info", "measure_local", "time_session", "LOCAL_DEVICE"]

log = logging.getLogger(__name__)
LOCAL_DEVICE = "local-cpu"


class HostInfo(dict):
    """cpu_model, governor, temperatures: what makes a local timing comparable."""


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def governor(core: int) -> str:
    return _read(f"/sys/devices/system/cpu/cpu{core}/cpufreq/scaling_governor")


def max_temperature_c(root: str | Path = "/sys/class/thermal") -> float:
    """Highest thermal-zone temperature in deg C, NaN when none is readable."""
    temps = []
    for zone in sorted(Path(root).glob("thermal_zone*")):
        raw = _read(zone / "temp")
        try:
            val = float(raw)
        except ValueError:
            continue
        temps.append(val / 1000.0 if abs(val) > 1000 else val)
    return max(temps) if temps else float("nan")


def host_info(core: int) -> HostInfo:
    return HostInfo(cpu_model=cpu_model(), governor=governor(core), temp_c=max_temperature_c(),
                    hostname=socket.gethostname())


def pick_core(core: int | None) -> int:
    allowed = sorted(os.sched_getaffinity(0))
    if core is None:
        return allowed[-1]
    if core not in allowed:
        raise ConfigError("core", core, allowed, hint="cores this process may run on")
    return core


def time_session(session, input_size: Sequence[int], runs: int, warmup: int) -> tuple[list[float], list[float]]:
    """Run `warmup` untimed then `runs` timed inferences; returns (wall ms, thread CPU ms) per run.

    With one intra-op thread ONNX Runtime computes on the calling thread, so the thread's CPU time
    is the inference's compute time even when another process preempts the core (shared hosts).
    """
    import numpy as np

    if runs < 1 or warmup < 0:
        raise ConfigError("runs/warmup", (runs, warmup), "runs >= 1, warmup >= 0")
    x = np.random.default_rng(0).standard_normal((1, 3, *input_size), dtype=np.float32)
    feed = {"input": x}
    for _ in range(warmup):
        session.run(["output"], feed)
    wall, cpu = [], []
    for _ in range(runs):
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        session.run(["output"], feed)
        t1 = time.perf_counter_ns()
        cpu.append((time.thread_time_ns() - c0) / 1e6)
        wall.append((t1 - t0) / 1e6)
    return wall, cpu


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def export_cached(variant, model_dir: Path) -> Path:
    """The variant's latency-protocol ONNX file, exported once per variant id."""
    from topnas.topformer.export import export_onnx

    path = Path(model_dir) / f"{variant.id}_{variant.input_size[0]}x{variant.input_size[1]}.onnx"
    if not path.exists():
        t0 = time.perf_counter()
        export_onnx(variant.build(norm="BN"), path, variant.input_size)
        log.info("exported %s in %.1f s", variant.id, time.perf_counter() - t0)
    return path


def plan_measurement(variants: Iterable[Any], out: str | os.PathLike[str], passes: int,
                     model_dir: str | os.PathLike[str] | None) -> tuple[Path, list[Any], Path]:
    """Shared by every device: unique variants in first-seen order, and where exported models are cached."""
    out = Path(out)
    if passes < 1:
        raise ConfigError("passes", passes, "an int >= 1")
    unique: dict[str, Any] = {}
    for v in variants:
        unique.setdefault(v.id, v)
    return out, list(unique.values()), Path(model_dir) if model_dir else out.with_name(out.stem + "_models")


def measure_local(
    variants: Iterable[Any],
    out: str | os.PathLike[str],
    *,
    runs: int = 20,
    warmup: int = 5,
    passes: int = 1,
    core: int | None = None,
    model_dir: str | os.PathLike[str] | None = None,
    intra_threads: int = 1,
    inter_threads: int = 1,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Measure every variant `passes` times; append one row per (variant, pass) to CSV `out`.

    Pairs already in `out` are skipped (resume). Pass ``p`` visits the variants in forward order when
    ``p`` is even and reversed when odd. Returns the number of rows written by this call.

    Args:
        variants: :class:`~topnas.search_spaces.Variant` objects (duplicates by id are measured once).
        out: calibration CSV, created or appended to.
        runs: timed runs per pass (the protocol asks for >= 20; fewer only for tests).
        warmup: untimed runs first.
        passes: measurement passes over the whole list.
        core: CPU core to pin to (default: the highest core this process may use).
        model_dir: where exported ONNX files are cached (default: ``<out stem>_models`` beside `out`).
    """
    import onnxruntime as ort
    import torch

    from topnas.topformer.export import onnx_session

    out, order, model_dir = plan_measurement(variants, out, passes, model_dir)
    core = pick_core(core)
    previous_affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # exports run on the pinned core too; do not spawn idle workers
    say = progress or log.info
    written = 0
    try:
        for p in range(passes):
            done = completed_keys(out)
            todo = [v for v in (order if p % 2 == 0 else order[::-1]) if (v.id, p) not in done]
            say(f"pass {p}: {len(todo)} to measure, {len(order) - len(todo)} already in {out}")
            for i, v in enumerate(todo):
                model = export_cached(v, model_dir)
                info = host_info(core)
                sess = onnx_session(model, intra_threads=intra_threads, inter_threads=inter_threads)
                times, cpu = time_session(sess, v.input_size, runs, warmup)
                del sess
                after = host_info(core)
                row = {
                    "variant_id": v.id, "variant_name": v.name or (v.preset or ""),
                    "input_h": v.input_size[0], "input_w": v.input_size[1], "variant_json": v.to_json(),
                    "pass_index": p, "device": LOCAL_DEVICE, "device_kind": "local", "cpu_model": info["cpu_model"],
                    "core_id": core, "governor": info["governor"], "governor_after": after["governor"],
                    "temp_before_c": info["temp_c"], "temp_after_c": after["temp_c"],
                    "runtime": "onnxruntime", "runtime_version": ort.__version__,
                    "intra_threads": intra_threads, "inter_threads": inter_threads,
                    "n_warmup": warmup, "n_runs": runs,
                    "median_ms": round(statistics.median(times), 4),
                    "mean_ms": round(statistics.fmean(times), 4), "min_ms": round(min(times), 4),
                    "std_ms": round(statistics.pstdev(times), 4) if len(times) > 1 else 0.0,
                    "times_ms": ";".join(f"{t:.3f}" for t in times),
                    "cpu_median_ms": round(statistics.median(cpu), 4), "cpu_min_ms": round(min(cpu), 4),
                    "cpu_times_ms": ";".join(f"{t:.3f}" for t in cpu),
                    "load_avg_1m": round(os.getloadavg()[0], 2), "model_sha256": _sha256(model),
                    "hostname": info["hostname"],
                    "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "source": f"topnas measure_local (ORT {ort.__version__}, torch {torch.__version__})",
                }
                append_row(out, row)
                written += 1
                say(f"pass {p} [{i + 1}/{len(todo)}] {v.id} {v.input_size[0]}x{v.input_size[1]}: "
                    f"median {row['median_ms']:.2f} ms (min {row['min_ms']:.2f}, std {row['std_ms']:.2f}, "
                    f"cpu median {row['cpu_median_ms']:.2f})")
    finally:
        os.sched_setaffinity(0, previous_affinity)
        torch.set_num_threads(torch_threads)
    return written


def calibration_variants(space=None, n: int = 0, seed: int = 0, presets: bool = True,
                         corners: bool = True) -> list[Any]:
    """The variants of a calibration set: official presets at every input size of the space, the
    smallest and largest point of the space, then `n` random points (seeded), without duplicates.
    """
    import random

    from topnas.search_spaces import default_space, preset_variant
    from topnas.topformer import PRESETS

    space = space or default_space()
    out: dict[str, Any] = {}
    if presets:
        for size in space.input_sizes:
            for name in PRESETS:
                v = preset_variant(name, tuple(size), num_classes=space.num_classes)
                if space.contains(v):
                    out.setdefault(v.id, v)
    if corners:
        dims = space.parameters()
        for pick, size_pick in ((0, 0), (-1, -1)):
            point = {}
            for k, choices in dims.items():
                if k == "input_size":
                    point[k] = sorted(choices, key=lambda s: int(s.split("x")[0]))[size_pick]
                elif k == "transformer.c2t_stride":
                    point[k] = sorted(choices)[-1 - pick] if pick == 0 else sorted(choices)[0]
                elif k == "head.is_dw":
                    point[k] = pick == 0
                elif all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
                    point[k] = sorted(choices)[pick]
                else:
                    point[k] = choices[0]
            try:
                v = space.build(point)
            except ConfigError:
                continue
            out.setdefault(v.id, v)
    rng = random.Random(seed)
    target = len(out) + n
    tries = 0
    while len(out) < target and tries < 100 * max(n, 1):
        v = space.sample(rng)
        out.setdefault(v.id, v)
        tries += 1
    return list(out.values())
