"""The official 160k recipes ship with the package and stay the same bytes as the copies users edit.

``topnas/platform/promote/recipes/`` is what a promotion builds on (it works from an installed
package, without a checkout); ``experiments/`` keeps identical copies for users to copy and edit.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from topnas.platform.promote import recipe_path
from topnas.platform.promote.recipe import RECIPES
from topnas.platform.train.train_config import compose_yaml

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"
SIZES = ("tiny", "small", "base")


def _packaged() -> list[Path]:
    return sorted(p.relative_to(RECIPES) for p in RECIPES.rglob("*.yaml"))


def test_every_recipe_and_base_is_packaged():
    expected = sorted([Path(f"topformer_{s}_512x512_160k_ade20k.yaml") for s in SIZES]
                      + [Path("_base_") / n for n in ("ade20k.yaml", "default_runtime.yaml", "schedule_160k.yaml")])
    assert _packaged() == expected


@pytest.mark.parametrize("rel", _packaged(), ids=str)
def test_packaged_recipe_equals_the_experiments_copy(rel):
    assert (RECIPES / rel).read_bytes() == (EXPERIMENTS / rel).read_bytes(), (
        f"{RECIPES / rel} and {EXPERIMENTS / rel} differ: edit both (the package's copy is what promote uses)")


@pytest.mark.parametrize("size", SIZES)
def test_recipe_path_is_the_packaged_file_and_composes(size):
    path = recipe_path(size)
    assert path.parent == RECIPES
    raw = compose_yaml(path)
    assert raw["model"]["preset"] == size
    assert raw["schedule"]["max_iters"] == 160_000  # from _base_/schedule_160k.yaml, found beside it


def test_pyproject_ships_the_recipes_as_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = data["topnas.platform.promote"]
    shipped = sorted({p.relative_to(RECIPES.parent) for pat in patterns for p in RECIPES.parent.glob(pat)})
    assert shipped == sorted(Path("recipes") / rel for rel in _packaged())
