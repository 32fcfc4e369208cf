"""MACs against the published fvcore figures, and ONNX export vs PyTorch."""
import numpy as np
import pytest
import torch

from topnas.topformer import TopFormer
from topnas.topformer.complexity import count_complexity
from topnas.topformer.export import export_onnx, fold_batchnorm, run_onnx

# hustvl/TopFormer README convention: fvcore, backbone + head without the final resize, 512x512 (GMACs)
PUBLISHED = {"tiny": 0.5761, "small": 1.1676, "base": 1.8202}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_macs_match_published_within_1_percent(name):
    cx = count_complexity(TopFormer.from_preset(name, norm="BN"), (512, 512))
    assert abs(cx.gmacs - PUBLISHED[name]) / PUBLISHED[name] < 0.01
    assert cx.by_op["convolution"] > 0.9 * cx.macs  # convolutions dominate
    assert cx.by_op["bmm"] > 0  # attention matmuls are counted


def test_macs_full_resize_and_448():
    tiny = TopFormer.from_preset("tiny", norm="BN")
    assert abs(count_complexity(tiny, (512, 512), full_resize=True).gmacs - 0.7334) / 0.7334 < 0.01
    assert abs(count_complexity(tiny, (448, 448)).gmacs - 0.4405) / 0.4405 < 0.01


def _randomise_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    return model.eval()


def test_fold_batchnorm_preserves_outputs_and_removes_bn():
    model = _randomise_bn(TopFormer.from_preset("tiny", norm="BN"))
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size", [(512, 512), (375, 500)])
def test_onnx_matches_pytorch(tmp_path, size):
    import onnx

    torch.manual_seed(0)  # weights and input independent of what ran before in this process
    model = _randomise_bn(TopFormer.from_preset("tiny", norm="BN"))
    path = export_onnx(model, tmp_path / "tiny.onnx", size)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["output"]
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, *size]
    ops = {n.op_type for n in graph.node}
    assert "BatchNormalization" not in ops  # folded
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        ref = model(x).numpy()
    out = run_onnx(path, x)
    assert out.shape == (1, 150, -(-size[0] // 8), -(-size[1] // 8))
    # BN folding and the runtime reorder float32 arithmetic through ~60 layers; with random weights and
    # randomised BN the error grows with the activations' scale (up to ~5e-4 of the logits' range here).
    # A wrong export moves logits by whole units.
    scale = float(np.abs(ref).max())
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-3 * scale)
