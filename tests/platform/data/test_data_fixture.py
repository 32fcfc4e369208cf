"""Fixture generator and `topnas data` CLI: layout, real JPEG/PNG, label range, determinism."""
from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from topnas.errors import ConfigError
from topnas.platform.cli import main
from topnas.platform.data.fixture import fixture_class_names, render_sample, write_fixture

ADE = "ADEChallengeData2016"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_real_files_and_label_range(fixture_root: Path) -> None:
    root = fixture_root / ADE
    for split, prefix, n in (("training", "ADE_train", 6), ("validation", "ADE_val", 3)):
        for i in range(1, n + 1):
            img_path = root / "images" / split / f"{prefix}_{i:08d}.jpg"
            seg_path = root / "annotations" / split / f"{prefix}_{i:08d}.png"
            with Image.open(img_path) as im:
                assert im.format == "JPEG" and im.mode == "RGB" and im.size == (64, 48)
            with Image.open(seg_path) as lb:
                assert lb.format == "PNG" and lb.mode == "L"
                label = np.array(lb)
            assert label.shape == (48, 64) and label.max() <= 5  # raw 0 (other), 1..K
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["num_classes"] == 5 and meta["classes"] == fixture_class_names(5)
    assert meta["reduce_zero_label"] is True


def test_classes_appear_and_other_is_used() -> None:
    seen: set[int] = set()
    for i in range(40):
        _, label = render_sample(6, (48, 64), np.random.default_rng([0, 0, i]))
        seen |= set(np.unique(label).tolist())
    assert seen == set(range(0, 7))  # every object class, background and some "other" (0) pixels


def _object_hues(num_classes: int, colours: int | None, n: int = 30) -> list[tuple[int, float]]:
    """(class, hue of the mean colour of its pixels) for every object class in ``n`` rendered samples."""
    out = []
    for i in range(n):
        rgb, label = render_sample(num_classes, (48, 64), np.random.default_rng([0, 0, i]), colours)
        for c in np.unique(label):
            if c >= 2:
                mean = rgb[label == c].astype(np.float64).mean(axis=0) / 255.0
                out.append((int(c), colorsys.rgb_to_hsv(*mean)[0]))
    return out


def _hue_gap(a: float, b: float) -> float:
    return min(abs(a - b), 1.0 - abs(a - b))


def test_colours_k_makes_colour_say_nothing_about_the_class() -> None:
    own = _object_hues(6, None)
    by_class: dict[int, list[float]] = {}
    for c, h in own:
        by_class.setdefault(c, []).append(h)
    assert sorted(by_class) == [2, 3, 4, 5, 6]
    assert all(_hue_gap(h, hs[0]) < 0.02 for hs in by_class.values() for h in hs)  # one hue per class
    firsts = [hs[0] for hs in by_class.values()]
    assert min(_hue_gap(a, b) for i, a in enumerate(firsts) for b in firsts[i + 1:]) > 0.05  # distinct hues

    shared = _object_hues(6, 2)
    assert all(min(_hue_gap(h, 0.0), _hue_gap(h, 0.5)) < 0.02 for _, h in shared)  # only the 2 palette hues
    both = {c for c in range(2, 7) if {round(h * 2) % 2 for k, h in shared if k == c} == {0, 1}}
    assert len(both) >= 4  # nearly every class shows up in both hues


def test_deterministic_per_seed(tmp_path: Path) -> None:
    a = write_fixture(tmp_path / "a", num_classes=4, train=3, val=2, size=(32, 40), seed=5)
    b = write_fixture(tmp_path / "b", num_classes=4, train=3, val=2, size=(32, 40), seed=5)
    c = write_fixture(tmp_path / "c", num_classes=4, train=3, val=2, size=(32, 40), seed=6)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert fa == fb
    assert fa.keys() == fc.keys() and fa != fc
    d = write_fixture(tmp_path / "d", num_classes=4, train=1, val=1, size=(32, 40), seed=5)
    name = "images/training/ADE_train_00000001.jpg"
    assert _files(d)[name] == fa[name]  # an image does not depend on how many are written


def test_refuses_overwrite_and_bad_args(tmp_path: Path) -> None:
    write_fixture(tmp_path, num_classes=3, train=1, val=1, size=(16, 16))
    with pytest.raises(ConfigError, match="--force"):
        write_fixture(tmp_path, num_classes=3, train=1, val=1, size=(16, 16))
    write_fixture(tmp_path, num_classes=3, train=2, val=1, size=(16, 16), overwrite=True)
    assert len(list((tmp_path / ADE / "images" / "training").iterdir())) == 2
    other = tmp_path / "real"
    (other / ADE / "images").mkdir(parents=True)
    with pytest.raises(ConfigError, match="did not write"):
        write_fixture(other, overwrite=True)
    with pytest.raises(ConfigError, match="classes"):
        write_fixture(tmp_path / "x", num_classes=1)
    with pytest.raises(ConfigError, match="size"):
        write_fixture(tmp_path / "x", size=(8, 300))
    with pytest.raises(ConfigError, match="colours"):
        write_fixture(tmp_path / "x", colours=0)


def test_fixture_spec_checks_colours_and_writes_them(tmp_path: Path) -> None:
    from topnas.platform.train.train_config import FixtureSpec

    with pytest.raises(ConfigError) as err:
        FixtureSpec.from_dict({"colours": 0}, "proxy.fixture")
    assert err.value.field == "proxy.fixture.colours"
    root = FixtureSpec.from_dict({"classes": 4, "train": 2, "val": 1, "size": [32, 40], "colours": 3}).write(tmp_path)
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["colours"] == 3 and meta["splits"] == {"training": 2, "validation": 1}


def test_cli_fixture_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    rc = main(["data", "fixture", "--out", str(out), "--classes", "4", "--train", "3", "--val", "2",
               "--size", "33", "47", "--seed", "2"])
    assert rc == 0
    with Image.open(out / ADE / "images" / "validation" / "ADE_val_00000002.jpg") as im:
        assert im.size == (47, 33)
    assert main(["data", "check", "--root", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 classes" in text and "training: 3 image/label pairs" in text and "validation: 2" in text
    (out / ADE / "annotations" / "training" / "ADE_train_00000001.png").unlink()
    assert main(["data", "check", "--root", str(out), "--quick"]) == 2
    assert "ADE_train_00000001" in capsys.readouterr().err


def test_cli_fixture_colours(tmp_path: Path) -> None:
    assert main(["data", "fixture", "--out", str(tmp_path), "--classes", "3", "--train", "1", "--val", "1",
                 "--size", "32", "40", "--colours", "2"]) == 0
    assert json.loads((tmp_path / ADE / "dataset.json").read_text())["colours"] == 2


_KILLED_WRITER = """
import sys
from topnas.platform.data import fixture

real = fixture.render_sample
def render_then_stop(*args, **kwargs):  # the writer dies after its 5th image, as under a SIGKILL
    render_then_stop.n += 1
    if render_then_stop.n > 5:
        import os
        os._exit(9)
    return real(*args, **kwargs)
render_then_stop.n = 0
fixture.render_sample = render_then_stop
fixture.write_fixture(sys.argv[1], num_classes=4, train=20, val=4, size=(32, 32))
"""


def test_a_writer_killed_halfway_leaves_no_fixture_that_looks_complete(tmp_path: Path) -> None:
    import subprocess
    import sys

    from topnas.platform.train.train_config import FixtureSpec

    out = tmp_path / "data"
    res = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(out)], capture_output=True, text=True)
    assert res.returncode == 9, res.stderr
    stages = list(out.glob(f".{ADE}.partial-*"))
    assert len(stages) == 1 and len(list(stages[0].rglob("*.jpg"))) == 5  # what it wrote before it died
    assert not (out / ADE).exists()

    spec = FixtureSpec(classes=4, train=20, val=4, size=(32, 32))
    target, written = spec.ensure(out)
    assert written and target == out / ADE
    assert len(list((target / "images" / "training").glob("*.jpg"))) == 20
    assert (target / "dataset.json").is_file() and not list(out.glob(f".{ADE}.partial-*"))  # stale stage gone
    assert spec.ensure(out) == (target, False)
