"""Proxy probe: the demo fixture with pairs of classes sharing a hue, then ``make_replay_table.py``.

The demo fixture gives every class its own colour, so a 1x1 convolution can segment it and model
capacity hardly matters; ``colours: k`` makes colour useless and the task too hard for the proxy
budget. This probe sits between: class ``j`` is drawn in hue ``j mod K`` (K < classes), so colour
tells a class apart from most others and shape + texture must do the rest. It writes that fixture
into ``--work``/fixture (where the table script looks for it) and then runs the table script with
the remaining arguments, e.g.

    python benchmarks/probes/shared_hue_fixture.py 5 /tmp/ph5_work --iterations 420 --rungs 7 \
        --variants 14 --noise-variants 4 --seeds 3 --threads 2 --out /tmp/ph5
    python benchmarks/proxy_fidelity.py --table /tmp/ph5/replay_fixture-small.csv --rung 420

``even`` instead of a count gives every class its own hue again, but evenly spaced (33 degrees apart)
and none within 30 degrees of the olive background, whose hue the demo fixture's class 3 nearly shares:
is the seed noise made by classes that look alike by accident?

``deg:H1,H2,...`` gives object class ``j`` the hue ``Hj`` in degrees (saturation and value as in the demo
fixture) and writes ``len + 1`` classes: ``deg:0,222.5,290`` is the demo's 4-class fixture with its
triangle class moved from the background's hue (about 86 degrees) to 290, e.g.

    python benchmarks/probes/shared_hue_fixture.py deg:0,222.5,290 /tmp/h290_work --iterations 420 \
        --rungs 7 --variants 48 --noise-variants 6 --seeds 4 --out /tmp/h290   # stopped after 17 runs

Result: benchmarks/data/README.md ("Proxy changes tried").
"""
from __future__ import annotations

import colorsys
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main(argv: list[str]) -> None:
    from topnas.platform.data import fixture as F
    from topnas.platform.train.train_config import FixtureSpec

    hues, work, rest = argv[0], argv[1], argv[2:]
    own_style = F._object_style
    degrees = [float(h) for h in hues[4:].split(",")] if hues.startswith("deg:") else None

    def shared_hue_style(raw: int):
        shape, texture, rgb, period = own_style(raw)
        if degrees is not None:  # the class's own saturation and value, the hue given
            _, sat, val = colorsys.rgb_to_hsv(*rgb)
            return shape, texture, colorsys.hsv_to_rgb((degrees[raw - 2] % 360) / 360, sat, val), period
        if hues == "even":  # 9 object hues from 110 to 377 degrees: 33 apart, >= 30 from the background's ~80
            return shape, texture, colorsys.hsv_to_rgb(((110 + (raw - 2) * 300 / 9) % 360) / 360, 0.9, 0.95), period
        hue = (((raw - 2) % int(hues)) * 0.618033988749895) % 1.0
        return shape, texture, colorsys.hsv_to_rgb(hue, 0.8, 0.85), period

    F._object_style = shared_hue_style  # the demo's fixture spec, written with shared hues
    classes = 10 if degrees is None else len(degrees) + 1
    FixtureSpec(classes=classes, train=96, val=48, size=(128, 160), seed=0).ensure(f"{work}/fixture")
    sys.argv = [str(ROOT / "benchmarks" / "make_replay_table.py"), *rest, "--work", work]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
