"""One tiny fixture dataset per test session; tests that damage it work on a copy."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from topnas.platform.data.fixture import write_fixture

NUM_CLASSES = 5
SIZE = (48, 64)


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Parent folder holding ADEChallengeData2016 (5 classes, 6 train / 3 val, 48x64)."""
    out = tmp_path_factory.mktemp("fixture")
    write_fixture(out, num_classes=NUM_CLASSES, train=6, val=3, size=SIZE, seed=1)
    return out


@pytest.fixture
def fixture_copy(fixture_root: Path, tmp_path: Path) -> Path:
    """A private copy of the session fixture that a test may break."""
    dst = tmp_path / "data"
    shutil.copytree(fixture_root, dst)
    return dst
