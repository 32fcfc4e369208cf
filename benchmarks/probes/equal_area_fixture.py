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
from topnas.platform.data import fixture as F  # noqa: E402

AREA = 0.75  # x size**2: rectangle 1.0, ellipse 0.79, triangle 0.47 in the demo fixture
OWN_SHAPE_MASK = F._shape_mask


# a shape's area as a multiple of size**2 in the demo fixture (triangle: 3 sqrt(3) / 4 (0.6 size)**2)
NATIVE_AREA = {"rectangle": 1.0, "ellipse": np.pi / 4, "triangle": 3 * 3 ** 0.5 / 4 * 0.6 ** 2}


class _ScaledSize:
    """The generator a shape is drawn with, its first draw (the shape's size) scaled by ``k``."""

    def __init__(self, rng: np.random.Generator, k: float) -> None:
        self._rng, self._k, self._first = rng, k, True

    def uniform(self, *args, **kwargs):
        value = self._rng.uniform(*args, **kwargs)
        if self._first:
            self._first = False
            return value * self._k
        return value


def equal_area_mask(shape: str, hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The demo fixture's shape, its size scaled so that its expected area is ``AREA * size**2``."""
    return OWN_SHAPE_MASK(shape, hw, _ScaledSize(rng, (AREA / NATIVE_AREA[shape]) ** 0.5))


def main(argv: list[str]) -> None:
    from topnas.platform.train.train_config import FixtureSpec

    work, rest = argv[0], argv[1:]
    F._shape_mask = equal_area_mask  # the demo's fixture spec, written with equal-area shapes
    FixtureSpec(classes=10, train=96, val=48, size=(128, 160), seed=0).ensure(f"{work}/fixture")
    sys.argv = [str(ROOT / "benchmarks" / "make_replay_table.py"), *rest, "--work", work]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
