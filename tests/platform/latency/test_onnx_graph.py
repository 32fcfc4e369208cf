"""onnx_kernels: the exported graph gives the kernels of the config (TopFormer) and of the trace (any net)."""
from __future__ import annotations

import pytest

from topnas.errors import ConfigError
from topnas.platform.latency.kernels import Kernel, kernel_summary, kernels_from_config, signature
from topnas.platform.latency.onnx_graph import onnx_kernels
from topnas.platform.latency.trace import trace_kernels
from topnas.search_spaces import Variant, preset_variant
from topnas.topformer.export import export_onnx
from tests.helpers.nets import Attention, TinyMobile, TwoConsumers, export

# ReLU6 is nn.ReLU6 -> "hardtanh" or F.relu6 -> "relu6" in torch, and Clip in ONNX either way: only the
# name differs (features do not use names).
_CLIP = {"hardtanh": "clip", "relu6": "clip", "clamp": "clip"}


def _canon(ks) -> list:
    return signature(k._replace(op=_CLIP.get(k.op, k.op), act=_CLIP.get(k.act, k.act)) for k in ks)


def _topformer_cases():
    tiny = preset_variant("tiny", (256, 256)).model
    return [preset_variant("tiny", (256, 256)),
            Variant(tiny.replace(c2t_stride=4), (256, 256)),                        # pooling as constant matmuls
            Variant(tiny.replace(injection_type="fuse_multi"), (187, 250)),         # odd size, other SIM
            Variant(tiny.replace(injection_type="muli_sum_cbr", head_is_dw=False), (130, 200))]


@pytest.mark.parametrize("variant", _topformer_cases(), ids=lambda v: f"{v.name or v.id}-{v.input_size[0]}x{v.input_size[1]}")
def test_exported_topformer_equals_config_kernels(variant, tmp_path):
    path = export_onnx(variant.build(norm="BN"), tmp_path / "v.onnx", variant.input_size)
    got = onnx_kernels(path)
    want = kernels_from_config(variant)
    assert _canon(got) == _canon(want)
    assert kernel_summary(got) == kernel_summary(want)


@pytest.mark.parametrize("net, shape", [(TinyMobile, (1, 3, 32, 32)), (Attention, (1, 6, 8)),
                                        (TwoConsumers, (1, 8, 6, 6))], ids=lambda x: getattr(x, "__name__", ""))
def test_exported_net_equals_traced_kernels(net, shape, tmp_path):
    m = net()
    got = onnx_kernels(export(m, shape, tmp_path / "n.onnx"))
    want = trace_kernels(m, shape)
    assert kernel_summary(got) == kernel_summary(want)  # per type: count, MACs, bytes
    if net is not TinyMobile:
        assert _canon(got) == _canon(want)
    else:  # ChannelShuffle exports as Reshape-Transpose-Reshape: a 5-D transpose, same bytes
        shuffle = [k for k in got if k.type == "layout"]
        assert [(k.op, k.inputs, k.output) for k in shuffle] == [("permute", ((1, 2, 16, 16, 16),), (1, 16, 2, 16, 16))]
        rest = [k for k in got if k.type != "layout"]
        assert _canon(rest) == _canon(k for k in want if k.type != "layout")


def _graph(op: str, dims, path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node(op, ["x"] + (["axis"] if op == "CumSum" else []), ["y"])
    inits = [helper.make_tensor("axis", TensorProto.INT64, [], [1])] if op == "CumSum" else []
    model = helper.make_model(helper.make_graph([node], "g", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_bad_onnx_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf")
    for path, match in [(bad, "broken.onnx.*does not load"), (tmp_path / "missing.onnx", "missing.onnx.*existing"),
                        (_graph("CumSum", [1, 4], tmp_path / "cumsum.onnx"), "cumsum.onnx.*unclassified ONNX operators \\['CumSum'\\]"),
                        (_graph("Relu", [1, 3, "H", 8], tmp_path / "dyn.onnx"), "dyn.onnx.*dimension 2 is H")]:
        with pytest.raises(ConfigError, match=match) as err:
            onnx_kernels(path)
        assert "\n" not in str(err.value)
    # a symbolic batch dimension is batch 1
    got = onnx_kernels(_graph("Relu", ["N", 3, 4, 4], tmp_path / "batch.onnx"))
    assert got == [Kernel("elementwise", "relu", ((1, 3, 4, 4),), (1, 3, 4, 4), 48, 384)]


def test_exported_public_spaces(tmp_path):
    """FBNet: the export has the analytic kernels (shuffle as a 5-D transpose). NB201: the exporter's
    common-subexpression elimination merges the ReLUs that several conv edges apply to the same node."""
    from topnas.platform.latency.spaces import fbnet, nb201

    arch = "k3_e1_g2|k5_e6|skip|k3_e3|k5_e1_g2|k3_e6|skip|k5_e3|k3_e1|k5_e6|k3_e1_g2|skip|k5_e1|k3_e3|k5_e6|k3_e6|" \
           "k5_e3|skip|k3_e1|k5_e1_g2|k3_e6|k5_e6"
    got = onnx_kernels(export(fbnet.build_model(arch), (1, 3, 32, 32), tmp_path / "fb.onnx"))
    assert kernel_summary(got) == kernel_summary(fbnet.kernels(arch, 32))
    assert {k.op for k in got if k.type == "layout"} == {"permute"}

    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    got = onnx_kernels(export(nb201.build_model(arch), (1, 3, 32, 32), tmp_path / "nb.onnx"))
    want = nb201.kernels(arch, 32)
    def no_relu(ks):  # kernels other than ReLUs, fused or not
        return _canon(k._replace(act="") for k in ks if k.op != "relu")

    def relus(ks) -> int:
        return sum(k.op == "relu" or k.act == "relu" for k in ks)

    assert no_relu(got) == no_relu(want)
    # per cell one ReLU per source node (3) instead of one per conv edge (6); reductions 2 x 2, 1 last.
    # (After the merge the stem's output has one reader, so its ReLU fuses: the fusion follows the graph.)
    assert relus(want) == 15 * 6 + 4 + 1 and relus(got) == 15 * 3 + 4 + 1
