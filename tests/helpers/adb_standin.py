"""An ``adb`` stand-in that really executes what the harness pushes, on this machine.

Why: the adb harness (topnas.platform.latency.adb) must be tested against a benchmark that really
runs, with output nobody wrote for the test. This script implements the subset of adb the harness
uses, over a *fake device root* (a folder per serial):

* ``adb devices``: the serials under ``$ADB_STANDIN_HOME/devices`` with their state file;
* ``adb [-s SERIAL] push LOCAL REMOTE``: copies LOCAL into the device root;
* ``adb [-s SERIAL] shell CMD...``: runs CMD with ``/bin/sh`` where every absolute ``/data``,
  ``/sys`` and ``/system`` path is the same path under the device root (so ``/data/local/tmp`` is
  ``ROOT/data/local/tmp`` and a pushed binary really executes), PATH starts with
  ``ROOT/system/bin`` (``getprop`` and ``taskset`` there answer from files in the root), and the
  exit status is the command's (as adb's shell protocol v2 reports it).

Every call is appended to ``$ADB_STANDIN_HOME/calls.jsonl`` with its exit status and output, so a
test can compare what the harness parsed with what the binary printed. Build a device with
:func:`make_device`, put :func:`install` 's folder first on PATH.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

_DEVICE_PATH = re.compile(r"(?<![\w./-])/(data|sys|system)(?=/|\s|'|\"|$)")

GETPROP = r"""#!/bin/sh
# getprop [NAME]: answered from $DEVICE_ROOT/system/build.prop (NAME=value lines)
props="$DEVICE_ROOT/system/build.prop"
if [ $# -eq 0 ]; then
  awk -F= '{ print "[" $1 "]: [" substr($0, length($1) + 2) "]" }' "$props"
else
  awk -F= -v k="$1" '$1 == k { print substr($0, length(k) + 2) }' "$props"
fi
"""

TASKSET = r"""#!/bin/sh
# taskset MASK COMMAND [ARGS...] (toybox form): the mask must name cores this device has
# (its cpuN folders); the request is logged to $DEVICE_ROOT/.affinity and COMMAND is executed.
mask="$1"; shift
ncpu=$(ls -d "$DEVICE_ROOT"/sys/devices/system/cpu/cpu[0-9]* 2>/dev/null | wc -l)
case "$mask" in ""|*[!0-9a-fA-F]*) echo "taskset: bad mask '$mask'" >&2; exit 1;; esac
if [ $((0x$mask)) -eq 0 ] || [ $((0x$mask >> ncpu)) -ne 0 ]; then
  echo "taskset: sched_setaffinity: Invalid argument" >&2; exit 1
fi
echo "$mask $*" >> "$DEVICE_ROOT/.affinity"
exec "$@"
"""

SNAPDRAGON_865 = {  # kHz per core: 4 x A55, 3 x A77, 1 x A77 prime
    "max_khz": (1804800,) * 4 + (2419200,) * 3 + (2841600,),
    "props": {"ro.soc.model": "SM8250", "ro.board.platform": "kona", "ro.product.model": "Mi 10"},
}


def install(home: Path) -> Path:
    """Write ``home/bin/adb`` (runs this file with this interpreter); returns the bin folder."""
    bin_dir = Path(home) / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    adb = bin_dir / "adb"
    adb.write_text(f"#!/bin/sh\nexec {sys.executable} -S {Path(__file__).resolve()} \"$@\"\n")
    adb.chmod(0o755)
    return bin_dir


def make_device(home: Path, serial: str, *, state: str = "device", max_khz: Sequence[int] = SNAPDRAGON_865["max_khz"],
                governors: Mapping[int, str] | None = None, props: Mapping[str, str] = SNAPDRAGON_865["props"],
                temps_milli_c: Sequence[int] = (36000, 35100, -273000)) -> Path:
    """Create the fake device root ``home/devices/SERIAL`` and return it."""
    root = Path(home) / "devices" / serial
    (root / "data/local/tmp").mkdir(parents=True, exist_ok=True)
    (root / ".state").write_text(state)
    governors = dict(governors or {})
    for core, khz in enumerate(max_khz):
        d = root / f"sys/devices/system/cpu/cpu{core}/cpufreq"
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpuinfo_max_freq").write_text(f"{khz}\n")
        (d / "scaling_governor").write_text(governors.get(core, "schedutil") + "\n")
    for i, t in enumerate(temps_milli_c):
        d = root / f"sys/class/thermal/thermal_zone{i}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "temp").write_text(f"{t}\n")
    (root / "system/bin").mkdir(parents=True, exist_ok=True)
    (root / "system/build.prop").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    for name, text in (("getprop", GETPROP), ("taskset", TASKSET)):
        (root / "system/bin" / name).write_text(text)
        (root / "system/bin" / name).chmod(0o755)
    return root


def calls(home: Path) -> list[dict]:
    """Every adb call so far: {"args", "rc", "out"}."""
    f = Path(home) / "calls.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


def on_device(root: Path, device_path: str) -> Path:
    return Path(_DEVICE_PATH.sub(lambda m: f"{root}/{m.group(1)}", device_path))


def _run(home: Path, args: list[str]) -> tuple[int, str, str]:
    serial = None
    if args[:1] == ["-s"]:
        serial, args = args[1], args[2:]
    devices_dir = home / "devices"
    states = {d.name: (d / ".state").read_text().strip() for d in sorted(devices_dir.iterdir())} \
        if devices_dir.is_dir() else {}
    if args == ["devices"]:
        return 0, "List of devices attached\n" + "".join(f"{s}\t{st}\n" for s, st in states.items()) + "\n", ""
    if serial is None:
        ready = [s for s, st in states.items() if st == "device"]
        if len(ready) != 1:
            return 1, "", "adb: no devices/emulators found\n" if not ready else "adb: more than one device/emulator\n"
        serial = ready[0]
    if serial not in states:
        return 1, "", f"adb: device '{serial}' not found\n"
    if states[serial] != "device":
        return 1, "", f"adb: device {states[serial]}\n"
    root = devices_dir / serial
    if not args:
        return 1, "", "adb: usage: no command\n"
    if args[0] == "push" and len(args) == 3:
        local, remote = Path(args[1]), on_device(root, args[2])
        if not local.is_file():
            return 1, "", f"adb: error: cannot stat '{args[1]}': No such file or directory\n"
        if args[2].endswith("/") or remote.is_dir():
            remote = remote / local.name
        remote.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(local, remote)
        return 0, f"{args[1]}: 1 file pushed, 0 skipped.\n", ""
    if args[0] == "shell" and len(args) > 1:
        command = _DEVICE_PATH.sub(lambda m: f"{root}/{m.group(1)}", " ".join(args[1:]))
        env = {"PATH": f"{root}/system/bin:/usr/bin:/bin", "DEVICE_ROOT": str(root), "HOME": str(root)}
        proc = subprocess.run(["/bin/sh", "-c", command], cwd=root, env=env, capture_output=True, text=True)
        hide = str(root)  # the device sees its own paths
        return proc.returncode, proc.stdout.replace(hide, ""), proc.stderr.replace(hide, "")
    return 1, "", f"adb: unknown command {args[0]!r}\n"


def main(argv: list[str]) -> int:
    home = Path(os.environ["ADB_STANDIN_HOME"])
    rc, out, err = _run(home, argv)
    with (home / "calls.jsonl").open("a") as fh:
        fh.write(json.dumps({"args": argv, "rc": rc, "out": out + err}) + "\n")
    sys.stdout.write(out)
    sys.stderr.write(err)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
