"""Reader: layout resolution, metadata, reduce_zero_label, and early, path-naming errors."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from topnas.errors import ConfigError
from topnas.platform.data import ade20k
from topnas.platform.data.ade20k import (
    ADE20K_CLASSES,
    ADE20KDataset,
    DatasetError,
    read_dataset_info,
    reduce_zero_label,
    seed_worker,
    seg_collate,
)
from topnas.platform.data.transforms import build_eval_pipeline, build_train_pipeline

ADE = "ADEChallengeData2016"
NUM_CLASSES, SIZE = 5, (48, 64)  # what conftest.fixture_root writes


def test_reduce_zero_label_mapping() -> None:
    raw = np.array([0, 1, 2, 150, 254, 255], np.uint8)
    assert reduce_zero_label(raw).tolist() == [255, 0, 1, 149, 253, 255]
    assert raw.tolist() == [0, 1, 2, 150, 254, 255]  # input untouched


def test_ade20k_class_list() -> None:
    assert len(ADE20K_CLASSES) == 150
    assert ADE20K_CLASSES[:3] == ("wall", "building", "sky") and ADE20K_CLASSES[-1] == "flag"


def test_loads_fixture_from_parent_or_dataset_folder(fixture_root: Path) -> None:
    for root in (fixture_root, fixture_root / ADE):
        ds = ADE20KDataset(root, "train")
        assert len(ds) == 6 and ds.num_classes == NUM_CLASSES and ds.class_names[0] == "background"
        assert ds.root == (fixture_root / ADE).resolve()
    val = ADE20KDataset(fixture_root, "validation")
    assert [s.stem for s in val.samples] == [f"ADE_val_{i:08d}" for i in (1, 2, 3)]
    item = val.load(0)
    assert item["img"].shape == (*SIZE, 3) and item["img"].dtype == np.uint8
    assert item["gt_semantic_seg"].shape == SIZE
    raw = np.array(Image.open(val.samples[0].label))
    np.testing.assert_array_equal(item["gt_semantic_seg"], reduce_zero_label(raw))


def test_dataset_with_pipelines_and_collate(fixture_root: Path) -> None:
    train = ADE20KDataset(fixture_root, "training", build_train_pipeline(32, (128, 32), seed=0))
    batch = seg_collate([train[0], train[1]])
    assert batch["img"].shape == (2, 3, 32, 32) and batch["gt_semantic_seg"].shape == (2, 32, 32)
    assert isinstance(batch["filename"], list)
    val = ADE20KDataset(fixture_root, "val", build_eval_pipeline((128, 32), 32))
    out = val[0]
    assert out["img"].shape == (3, 32, 64) and tuple(out["gt_semantic_seg"].shape) == SIZE
    report = train.validate()
    assert report.ok and report.num_samples == 6 and report.pixel_counts.sum() > 0


def test_seed_worker_reseeds_pipeline(fixture_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = ADE20KDataset(fixture_root, "training", build_train_pipeline(32, (128, 32), seed=0))
    subset = torch.utils.data.Subset(ds, [0, 1])
    info = SimpleNamespace(dataset=subset, seed=1234)
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)
    seed_worker(0)
    assert ds.pipeline.seed == 1234  # type: ignore[union-attr]


def test_metadata_json_and_classes_txt(fixture_copy: Path) -> None:
    root = fixture_copy / ADE
    (root / "dataset.json").unlink()
    assert read_dataset_info(root).class_names == ADE20K_CLASSES  # no metadata: ADE20K's 150
    (fixture_copy / "classes.txt").write_text("sky\n\nroad\ncar\nx\ny\n")  # parent folder also searched
    info = read_dataset_info(root)
    assert info.class_names == ("sky", "road", "car", "x", "y") and info.metadata_file is not None
    with pytest.raises(ConfigError, match="num_classes"):
        read_dataset_info(root, num_classes=150)
    (root / "dataset.json").write_text(json.dumps({"num_classes": 3, "classes": ["a", "b"]}))
    with pytest.raises(ConfigError, match="classes"):
        read_dataset_info(root)
    (root / "dataset.json").write_text(json.dumps({"num_class": 3}))
    with pytest.raises(ConfigError, match="num_class"):
        read_dataset_info(root)


def test_missing_folders(tmp_path: Path, fixture_copy: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        ADE20KDataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match=ADE):
        ADE20KDataset(tmp_path)
    (fixture_copy / ADE / "annotations" / "validation").rename(fixture_copy / "moved")
    with pytest.raises(DatasetError, match=r"annotations/validation: missing folder"):
        ADE20KDataset(fixture_copy, "validation")
    with pytest.raises(ConfigError, match="split"):
        ADE20KDataset(fixture_copy, "test")


def test_mismatched_pairs_named(fixture_copy: Path) -> None:
    seg_dir = fixture_copy / ADE / "annotations" / "training"
    (seg_dir / "ADE_train_00000002.png").unlink()
    (seg_dir / "ADE_train_00000009.png").write_bytes((seg_dir / "ADE_train_00000001.png").read_bytes())
    with pytest.raises(DatasetError) as err:
        ADE20KDataset(fixture_copy, "training")
    msg = str(err.value)
    assert "ADE_train_00000002" in msg and "without a label" in msg
    assert "ADE_train_00000009" in msg and "without an image" in msg


def test_out_of_range_label(fixture_copy: Path) -> None:
    path = fixture_copy / ADE / "annotations" / "training" / "ADE_train_00000003.png"
    label = np.array(Image.open(path))
    label[0, :4] = [NUM_CLASSES + 1, NUM_CLASSES + 1, 200, 255]  # 255 is fine, the others are not
    Image.fromarray(label).save(path)
    ds = ADE20KDataset(fixture_copy, "training")
    ds.load(0)
    with pytest.raises(DatasetError, match=r"ADE_train_00000003.png: label values \[6, 200\] out of range"):
        ds.load(2)
    with pytest.raises(DatasetError, match="1 of 6 samples"):
        ds.validate()
    report = ds.validate(raise_on_error=False)
    assert not report.ok and len(report.errors) == 1
    assert ds.validate(max_samples=2).ok  # the bad sample is the third


def test_unreadable_and_wrong_kind_files(fixture_copy: Path) -> None:
    img_dir = fixture_copy / ADE / "images" / "training"
    seg_dir = fixture_copy / ADE / "annotations" / "training"
    (img_dir / "ADE_train_00000001.jpg").write_bytes(b"not a jpeg")
    (seg_dir / "ADE_train_00000002.png").write_bytes(b"\x89PNG broken")
    Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(seg_dir / "ADE_train_00000003.png")  # RGB label
    Image.fromarray(np.ones((10, 10), np.uint8)).save(seg_dir / "ADE_train_00000004.png")  # wrong size
    ds = ADE20KDataset(fixture_copy, "training")
    with pytest.raises(DatasetError, match="ADE_train_00000001.jpg: not a decodable image"):
        ds.load(0)
    with pytest.raises(DatasetError, match="ADE_train_00000002.png: not a decodable label map"):
        ds.load(1)
    with pytest.raises(DatasetError, match="ADE_train_00000003.png: label map has shape"):
        ds.load(2)
    with pytest.raises(DatasetError, match="ADE_train_00000004.png: label map is 10x10"):
        ds.load(3)
    assert len(ds.validate(raise_on_error=False).errors) == 4


def test_bad_split_folder_empty(tmp_path: Path) -> None:
    for sub in ("images/training", "annotations/training"):
        (tmp_path / ADE / sub).mkdir(parents=True)
    with pytest.raises(DatasetError, match="no \\*.jpg images"):
        ADE20KDataset(tmp_path, "training")


def test_module_all_is_exported() -> None:
    import topnas.platform.data as data

    for name in data.__all__:
        assert hasattr(data, name), name
    assert set(ade20k.__all__) <= set(dir(ade20k))
