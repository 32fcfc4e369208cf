"""ImageNet initialisation of searched variants by slicing official-format checkpoints.

The checkpoints are written here in the official ImageNet format (``state_dict_ema`` with
``tpm.*`` / ``trans.*`` and a classifier ``head.*``), with the official key names and shapes of
``official_keys/topformer_<preset>.json`` (backbone keys, SIM excluded: ImageNet files have none)
and random values, so every check below is about where each value ends up.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from topnas.errors import ConfigError
from topnas.topformer.weights import CheckpointError
from topnas.topformer.arch_config import preset_config
from topnas.topformer.inherit import OFFICIAL_IMAGENET_FILES, inherit_from_checkpoint
from topnas.topformer.model import TopFormer

KEYS = Path(__file__).parent / "official_keys"


def _official_imagenet(preset: str, folder: Path, seed: int = 0) -> tuple[Path, dict[str, torch.Tensor]]:
    shapes = json.loads((KEYS / f"topformer_{preset}.json").read_text())
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in shapes.items():
        if key.startswith(("backbone.tpm.", "backbone.trans.")):
            sd[key[len("backbone."):]] = (torch.randint(0, 100, (), generator=g) if not shape
                                          else torch.randn(shape, generator=g))
    c = sum(preset_config(preset).channels)
    sd.update({"head.bn.weight": torch.ones(c), "head.bn.bias": torch.zeros(c),
               "head.l.weight": torch.randn(1000, c, generator=g), "head.l.bias": torch.zeros(1000)})
    path = folder / OFFICIAL_IMAGENET_FILES[preset]
    torch.save({"state_dict_ema": sd, "epoch": 600}, path)
    return path, sd


def _model(cfg) -> TopFormer:
    torch.manual_seed(1)
    return TopFormer(cfg.replace(norm="BN"))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("modelzoos") / "classification"
    folder.mkdir()
    return folder, {p: _official_imagenet(p, folder, seed=i) for i, p in enumerate(("tiny", "small", "base"))}


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_a_preset_inherits_its_own_checkpoint_whole(ckpts, preset):
    from topnas.topformer.weights import load_checkpoint

    _, files = ckpts
    path, sd = files[preset]
    model = _model(preset_config(preset))
    report = inherit_from_checkpoint(model, preset_config(preset), path)
    counts = report.counts()
    assert counts["sliced"] == counts["partial"] == 0
    assert counts["inherited"] == len(sd) - 4  # every tpm/trans tensor of the file; head.* is the classifier
    assert set(report.keys("fresh")) == {k for k in model.backbone.state_dict() if k.startswith("SIM.")}
    got = model.backbone.state_dict()
    assert all(torch.equal(got[k], sd[k]) for k in report.keys("inherited"))
    # the same as the official key-by-key load of a matching checkpoint
    exact = _model(preset_config(preset))
    load_checkpoint(exact, path, verbose=False)
    ref = exact.backbone.state_dict()
    assert all(torch.equal(got[k], ref[k]) for k in got if not k.startswith("SIM."))


def test_a_narrower_variant_takes_leading_channels_heads_and_level_segments(ckpts):
    _, files = ckpts
    path, sd = files["small"]
    var = preset_config("tiny")   # narrower in every stage, 4 heads of 6, levels 16/32/64/96 of 24/48/96/128
    model = _model(var)
    report = inherit_from_checkpoint(model, var, path, ckpt_preset="small")
    got = model.backbone.state_dict()
    assert report.counts()["partial"] == 0 and report.counts()["sliced"] > 100
    # token pyramid: leading output channels of the projection conv of block 2 (24 -> 16)
    assert report.status["tpm.layer2.conv.4.c.weight"] == "sliced"
    assert torch.equal(got["tpm.layer2.conv.4.c.weight"], sd["tpm.layer2.conv.4.c.weight"][:16])
    assert torch.equal(got["tpm.layer2.conv.4.bn.running_var"], sd["tpm.layer2.conv.4.bn.running_var"][:16])
    # transformer input = concatenated levels: level 1 (tiny 16:48) comes from small's level 1 (24:72)
    q, q_src = got["trans.transformer_blocks.0.attn.to_q.c.weight"], sd["trans.transformer_blocks.0.attn.to_q.c.weight"]
    assert q.shape == (64, 208, 1, 1) and q_src.shape == (96, 296, 1, 1)
    assert torch.equal(q[:, 16:48], q_src[:64, 24:56])       # leading 4 heads x 16 dims, leading 32 channels
    assert torch.equal(q[:, 112:208], q_src[:64, 168:264])   # level 3: 96 leading of small's 128
    proj, proj_src = got["trans.transformer_blocks.0.attn.proj.1.c.weight"], sd["trans.transformer_blocks.0.attn.proj.1.c.weight"]
    assert torch.equal(proj[48:112], proj_src[72:136, :128])  # level 2 rows; 4 heads x 32 value dims
    # the depth of the transformer: tiny and small both have 4 blocks
    assert report.status["trans.transformer_blocks.3.mlp.fc2.c.weight"] == "sliced"


def test_a_wider_deeper_variant_keeps_fresh_values_where_the_checkpoint_has_none(ckpts):
    _, files = ckpts
    path, sd = files["tiny"]
    var = preset_config("base").replace(depths=5)   # wider, one more pyramid block, 8 heads, 5 transformer blocks
    model = _model(var)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    report = inherit_from_checkpoint(model, var, path)          # preset read from the official file name
    got = model.backbone.state_dict()
    w = got["tpm.layer2.conv.4.c.weight"]                       # base 32 outputs, tiny 16
    assert report.status["tpm.layer2.conv.4.c.weight"] == "partial"
    assert torch.equal(w[:16], sd["tpm.layer2.conv.4.c.weight"])
    assert torch.equal(w[16:], before["tpm.layer2.conv.4.c.weight"][16:])
    # the 3rd block of the last stage (base layer10) and the 5th transformer block have no counterpart
    assert all(report.status[k] == "fresh" for k in got if k.startswith(("tpm.layer10.", "trans.transformer_blocks.4.")))
    assert torch.equal(got["tpm.layer10.conv.0.c.weight"], before["tpm.layer10.conv.0.c.weight"])
    # heads 5..8 of the query projection stay fresh, heads 1..4 come from tiny
    q = got["trans.transformer_blocks.0.attn.to_q.c.weight"]
    assert torch.equal(q[64:], before["trans.transformer_blocks.0.attn.to_q.c.weight"][64:])
    assert torch.equal(q[:64, :16], sd["trans.transformer_blocks.0.attn.to_q.c.weight"][:, :16])


def test_kernels_take_the_centre_of_the_bigger_one(ckpts):
    _, files = ckpts
    path, sd = files["tiny"]
    blocks = [b.as_list() for b in preset_config("tiny").blocks]
    blocks[3][0] = 3   # tiny block 3 has a 5x5 depthwise kernel
    blocks[1][0] = 5   # tiny block 1 has a 3x3 one
    var = preset_config("tiny", blocks=blocks)
    model = _model(var)
    before = model.backbone.state_dict()["tpm.layer2.conv.2.c.weight"].clone()
    report = inherit_from_checkpoint(model, var, path)
    got = model.backbone.state_dict()
    assert report.status["tpm.layer4.conv.2.c.weight"] == "sliced"
    assert torch.equal(got["tpm.layer4.conv.2.c.weight"], sd["tpm.layer4.conv.2.c.weight"][:, :, 1:4, 1:4])
    assert report.status["tpm.layer2.conv.2.c.weight"] == "partial"
    assert torch.equal(got["tpm.layer2.conv.2.c.weight"][:, :, 1:4, 1:4], sd["tpm.layer2.conv.2.c.weight"])
    assert torch.equal(got["tpm.layer2.conv.2.c.weight"][:, :, 0], before[:, :, 0])


def test_a_folder_gives_the_nearest_official_checkpoint(ckpts, tmp_path):
    folder, _ = ckpts
    near_small = preset_config("small", depths=3)
    report = inherit_from_checkpoint(_model(near_small), near_small, folder)
    assert Path(report.source).name == OFFICIAL_IMAGENET_FILES["small"]
    saved = json.loads(report.save(tmp_path / "r.json").read_text())
    assert saved["counts"] == report.counts() and saved["tensors"]["tpm.stem.0.c.weight"] == {
        "status": "inherited", "from": "tpm.stem.0.c.weight"}


def test_missing_and_wrong_checkpoints_are_one_clear_error(ckpts, tmp_path):
    var = preset_config("tiny")
    with pytest.raises(CheckpointError, match="checkpoint not found.*download the official ImageNet checkpoints"):
        inherit_from_checkpoint(_model(var), var, tmp_path / OFFICIAL_IMAGENET_FILES["tiny"])
    seg = tmp_path / "topformer-T-512x512-ade.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in _model(var).backbone.state_dict().items()}}, seg)
    with pytest.raises(CheckpointError, match="segmentation checkpoint"):
        inherit_from_checkpoint(_model(var), var, seg, ckpt_preset="tiny")
    other = tmp_path / "my_weights.pth"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="cannot tell which official preset"):
        inherit_from_checkpoint(_model(var), var, other)


def test_training_config_init_field(tmp_path):
    from topnas.platform.train.train_config import ModelConfig

    with pytest.raises(ConfigError, match=r"pretrained: got None.*imagenet_nearest.*download the official"):
        ModelConfig(init="imagenet_nearest")
    assert ModelConfig(init="scratch", pretrained=str(tmp_path / "x.pth")).init_source() is None
    assert ModelConfig(pretrained="x.pth").init_source() == str(Path("x.pth").absolute())
