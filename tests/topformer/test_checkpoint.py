"""Loading official-format checkpoints: mmcv segmentation dicts and ImageNet classification dicts."""
import pytest
import torch

from topnas.topformer import TopFormer
from topnas.topformer.weights import CheckpointError, load_checkpoint


def _random_like(model):
    g = torch.Generator().manual_seed(0)
    return {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone())
            for k, v in model.state_dict().items()}


def test_segmentation_checkpoint_loads_strictly(tmp_path):
    src = TopFormer.from_preset("tiny", norm="BN")
    sd = _random_like(src)
    path = tmp_path / "seg.pth"
    torch.save({"meta": {"mmseg_version": "0.19.0"}, "state_dict": sd, "optimizer": {}}, path)
    dst = TopFormer.from_preset("tiny", norm="BN")
    report = load_checkpoint(dst, path, strict=True, verbose=False)
    assert report.kind == "segmentation" and report.target == "model"
    assert len(report.loaded) == 376 and report.ok
    for k, v in dst.state_dict().items():
        assert torch.equal(v, sd[k]), k


@pytest.mark.parametrize("container", ["state_dict_ema", "state_dict", "model", None])
def test_classification_checkpoint_loads_backbone(tmp_path, container):
    src = TopFormer.from_preset("small", norm="BN")
    bb = {k: v for k, v in _random_like(src.backbone).items() if k.startswith(("tpm.", "trans."))}
    head = {"head.bn.weight": torch.ones(296), "head.bn.bias": torch.zeros(296),
            "head.bn.running_mean": torch.zeros(296), "head.bn.running_var": torch.ones(296),
            "head.bn.num_batches_tracked": torch.tensor(0),
            "head.l.weight": torch.randn(1000, 296), "head.l.bias": torch.zeros(1000)}
    raw = {**bb, **head}
    path = tmp_path / "cls.pth"
    torch.save({container: raw} if container else raw, path)
    dst = TopFormer.from_preset("small", norm="BN")
    sim_before = dst.backbone.SIM[1].local_embedding.conv.weight.clone()
    report = load_checkpoint(dst, path, verbose=False)
    assert report.kind == "classification" and report.target == "backbone"
    assert len(report.loaded) == len(bb)
    assert sorted(report.ignored) == sorted(head)
    assert report.missing == [] and report.unexpected == []
    assert torch.equal(dst.backbone.tpm.layer10.conv[0].c.weight, bb["tpm.layer10.conv.0.c.weight"])
    assert torch.equal(dst.backbone.SIM[1].local_embedding.conv.weight, sim_before)


def test_report_lists_missing_unexpected_and_shape_mismatch(tmp_path):
    sd = _random_like(TopFormer.from_preset("tiny", norm="BN"))
    sd.pop("decode_head.conv_seg.bias")
    sd["decode_head.extra.weight"] = torch.zeros(1)
    sd["decode_head.conv_seg.weight"] = torch.zeros(19, 128, 1, 1)  # a Cityscapes head
    path = tmp_path / "partial.pth"
    torch.save({"state_dict": sd}, path)
    model = TopFormer.from_preset("tiny", norm="BN")
    report = load_checkpoint(model, path, verbose=False)
    assert report.missing == ["decode_head.conv_seg.bias"]
    assert report.unexpected == ["decode_head.extra.weight"]
    assert [m[0] for m in report.shape_mismatched] == ["decode_head.conv_seg.weight"]
    assert "shape mismatch" in report.summary()
    with pytest.raises(CheckpointError, match="strict load failed"):
        load_checkpoint(model, path, strict=True, verbose=False)


def test_nothing_matched_fails_loudly(tmp_path):
    sd = _random_like(TopFormer.from_preset("tiny", norm="BN").backbone)
    path = tmp_path / "prefixed.pth"
    torch.save({"state_dict": {"encoder." + k: v for k, v in sd.items()}}, path)
    with pytest.raises(CheckpointError, match="no key of the checkpoint matches"):
        load_checkpoint(TopFormer.from_preset("tiny", norm="BN"), path, verbose=False)


def test_missing_file_and_non_tensor_pickles_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(TopFormer.from_preset("tiny", norm="BN"), tmp_path / "nope.pth")
    bad = tmp_path / "code.pth"
    torch.save({"state_dict": {"x": object()}}, bad)  # weights_only refuses arbitrary objects
    with pytest.raises(CheckpointError):
        load_checkpoint(TopFormer.from_preset("tiny", norm="BN"), bad)
