"""NB201 / FBNet torch builders: traced kernels equal the analytic lists; params and MACs equal the references."""
from __future__ import annotations

import pytest

from topnas.platform.latency.kernels import signature
from topnas.platform.latency.spaces import fbnet, nb201
from topnas.platform.latency.spaces.fbnet_model import build_model as build_fbnet
from topnas.platform.latency.spaces.nb201_model import build_model as build_nb201
from topnas.platform.latency.trace import trace_kernels

WEIGHTED = ("conv1x1", "conv", "dwconv", "gconv", "linear")

# (arch, parameters, MACs of conv + linear layers at 1x3x32x32, 100 classes) of the REFERENCE networks:
# TinyNetwork(C=16, N=5, Structure.str2structure(arch), 100) from GATECH-EIC/HW-NAS-Bench
# hw_nas_bench_api/nas_201_models/cell_infers/tiny_network.py (= D-X-Y/AutoDL-Projects
# xautodl/models/cell_infers/tiny_network.py), parameters summed over .parameters(), MACs from
# torch.utils.flop_counter.FlopCounterMode (FLOPs / 2) on one forward pass in eval mode.
NB201_REFERENCE = [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
     1537396, 220125440),
    ("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|", 593236, 82499840),
    ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
     135156, 15653120),
    ("|none~0|+|nor_conv_3x3~0|none~1|+|nor_conv_1x1~0|nor_conv_3x3~1|avg_pool_3x3~2|", 593236, 82499840),
]
# FBNet_Infer({"op_idx_list": [...], "num_classes": 100, "dataset": "cifar100"}) from GATECH-EIC/HW-NAS-Bench
# hw_nas_bench_api/fbnet_models/model_infer.py, counted the same way.
FBNET_REFERENCE = [
    ("k5_e6|skip|k3_e1_g2|skip|k5_e1|skip|skip|skip|k5_e6|k5_e1|k3_e1_g2|k5_e1|k5_e6|k3_e6|k3_e3|k5_e6|k3_e6|"
     "k3_e3|k5_e1|k3_e3|k5_e1|k5_e1_g2", 1790500, 67605376),
    ("k5_e1_g2|k3_e6|k5_e1_g2|k5_e1_g2|k3_e1|k5_e1|k5_e6|k5_e1_g2|k5_e1_g2|k3_e3|k3_e1|k3_e3|k5_e1|k5_e1_g2|"
     "k3_e1_g2|k3_e6|k5_e6|k3_e3|k5_e3|k3_e1|k5_e1|k3_e1", 1695572, 61564288),
    ("|".join(["skip"] * 22), 780660, 11608960),
    ("|".join(["k5_e6"] * 22), 3749652, 160926080),
]
# NB201 graphs where fusion depends on the whole cell: every node fed by one conv and read by one conv
# edge (stem, cells and the last BN + ReLU all fuse), nodes with no live input (x * 0 when read), a pool-only
# path.
NB201_EDGE_CASES = [
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_1x1~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|none~0|nor_conv_3x3~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|",
    "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",  # an empty node nobody reads: no kernel
]


def _params_macs(net, kernels) -> tuple[int, int]:
    return sum(p.numel() for p in net.parameters()), sum(k.macs for k in kernels if k.type in WEIGHTED)


@pytest.mark.parametrize("arch, params, macs", NB201_REFERENCE, ids=range(len(NB201_REFERENCE)))
def test_nb201_builder_matches_reference_and_analytic(arch, params, macs):
    net = build_nb201(arch)
    traced = trace_kernels(net, (1, 3, 32, 32))
    assert _params_macs(net, traced) == (params, macs)
    assert signature(traced) == signature(nb201.kernels(arch, 32))


@pytest.mark.parametrize("arch", NB201_EDGE_CASES, ids=range(len(NB201_EDGE_CASES)))
def test_nb201_fusion_edge_cases(arch):
    traced = trace_kernels(build_nb201(arch), (1, 3, 32, 32))
    assert signature(traced) == signature(nb201.kernels(arch, 32))
    assert signature(trace_kernels(build_nb201(arch), (1, 3, 16, 16))) == signature(nb201.kernels(arch, 16))


def test_nb201_fusion_where_a_node_has_one_reader():
    # a chain of single convs: cell ReLUs fuse and the last BN + ReLU fold; stand-alone stay only the
    # reduction blocks' input ReLUs (their input also feeds the shortcut pool) and the first ReLU after
    # each reduction (its input is the block's residual sum, not a conv)
    ks = nb201.kernels(NB201_EDGE_CASES[0], 32)
    assert [k.inputs for k in ks if k.op in ("relu", "affine")] == [((1, 16, 32, 32),), ((1, 32, 16, 16),),
                                                                   ((1, 32, 16, 16),), ((1, 64, 8, 8),)]
    assert sum(k.act == "relu" for k in ks) == 1 + (3 * 15 - 2) + 2  # stem, cells, inside the reductions
    # every node read by 2-3 edges: 6 ReLUs per cell, 2 at reduction inputs and the last one stay
    ks = nb201.kernels(NB201_REFERENCE[0][0], 32)
    assert sum(k.op == "relu" for k in ks) == 6 * 15 + 2 + 1 and sum(k.act == "relu" for k in ks) == 2


@pytest.mark.parametrize("arch, params, macs", FBNET_REFERENCE, ids=range(len(FBNET_REFERENCE)))
def test_fbnet_builder_matches_reference_and_analytic(arch, params, macs):
    net = build_fbnet(arch)
    traced = trace_kernels(net, (1, 3, 32, 32))
    assert _params_macs(net, traced) == (params, macs)
    assert signature(traced) == signature(fbnet.kernels(arch, 32))


def test_builders_reject_bad_archs():
    with pytest.raises(ValueError, match="unknown op"):
        build_nb201("|conv~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|")
    with pytest.raises(ValueError, match="22 block names"):
        build_fbnet("k3_e1|skip")
