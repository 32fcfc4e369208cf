"""Proxy probe: the demo fixture with every shape drawn at the same expected area.

The seed noise at the demo proxy comes from a few classes that one seed learns and another does not
(``benchmarks/probes/per_class_seeds.py``), and the three noisiest classes of the demo fixture are
all triangles: drawn inside a circle of radius ``0.6 * size``, a triangle covers about ``0.47 *
size**2`` against ``size**2`` for a rectangle and ``0.79 * size**2`` for an ellipse, so its classes
get half the pixels (and gradient) of the others and are learned late, at a different iteration in
every seed. This probe draws every shape at ``0.75 * size**2`` (the three shapes' mean area today,
so the objects cover as much of an image as before; the random draws are the same), writes the fixture into
``--work``/fixture (where the table script looks for it) and runs the table script with the
remaining arguments, e.g.

    python benchmarks/probes/equal_area_fixture.py /tmp/ea_work --iterations 420 --rungs 7 \
        --variants 14 --noise-variants 6 --seeds 3 --out /tmp/ea \
        --set search_space.num_classes=10 --set proxy.fixture.classes=10   # the fixture written here
    python benchmarks/proxy_fidelity.py --table /tmp/ea/replay_fixture-small.csv --rung 420

Result: benchmarks/data/README.md ("Proxy changes tried").
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
AREA = 0.75  # x size**2: rectangle 1.0, ellipse 0.79, triangle 0.47 in the demo fixture


def equal_area_mask(shape: str, hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = hw
    size = rng.uniform(0.2, 0.55) * min(h, w)
    aspect = rng.uniform(0.65, 1.55)
    cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    if shape == "rectangle":  # area (k size)^2
        k = AREA ** 0.5
        return (np.abs(yy - cy) <= k * size * aspect / 2) & (np.abs(xx - cx) <= k * size / aspect / 2)
    if shape == "ellipse":  # area pi/4 (k size)^2
        k = (AREA / (np.pi / 4)) ** 0.5
        return ((yy - cy) / (k * size * aspect / 2)) ** 2 + ((xx - cx) / (k * size / aspect / 2)) ** 2 <= 1.0
    rot = rng.uniform(0, 2 * np.pi)  # triangle: area about 3 sqrt(3) / 4 r^2
    radius = size * (AREA / (3 * 3 ** 0.5 / 4)) ** 0.5
    angles = rot + np.array([0.0, 2.0944, 4.1888]) + rng.uniform(-0.3, 0.3, 3)
    vy, vx = cy + radius * np.sin(angles), cx + radius * np.cos(angles)
    s = np.stack([(vx[(i + 1) % 3] - vx[i]) * (yy - vy[i]) - (vy[(i + 1) % 3] - vy[i]) * (xx - vx[i])
                  for i in range(3)])
    return np.all(s >= 0, axis=0) | np.all(s <= 0, axis=0)


def main(argv: list[str]) -> None:
    from topnas.platform.data import fixture as F
    from topnas.platform.train.train_config import FixtureSpec

    work, rest = argv[0], argv[1:]
    F._shape_mask = equal_area_mask  # the demo's fixture spec, written with equal-area shapes
    FixtureSpec(classes=10, train=96, val=48, size=(128, 160), seed=0).ensure(f"{work}/fixture")
    sys.argv = [str(ROOT / "benchmarks" / "make_replay_table.py"), *rest, "--work", work]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
