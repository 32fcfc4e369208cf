"""`topnas latency predict|kernels --onnx`: any exported model, same number as the variant's fast path."""
from __future__ import annotations

import json

import pytest

from topnas.platform.cli import main
from topnas.platform.latency.kernels import kernel_summary
from topnas.platform.latency.predictor import DEFAULT_GROUPS, LatencyPredictor, packaged_predictor
from topnas.platform.latency.trace import trace_kernels
from topnas.search_spaces import preset_variant
from topnas.topformer.export import export_onnx
from tests.helpers.nets import Attention, TinyMobile, TwoConsumers, export

DEVICE = {"device": "synthetic", "runtime": "onnxruntime", "runtime_version": "0", "cpu_model": "none",
          "intra_threads": 1, "inter_threads": 1}


def _json(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("predictor", ["snapdragon865_tnn_1core", "local_cpu_ort"])
def test_topformer_onnx_equals_the_variant(predictor, tmp_path_factory, capsys):
    v = preset_variant("tiny", (256, 320))
    path = tmp_path_factory.getbasetemp() / "tiny_256x320.onnx"
    if not path.exists():
        export_onnx(v.build(norm="BN"), path, v.input_size)
    via_graph = _json(capsys, ["latency", "predict", "--onnx", str(path), "--predictor", predictor, "--json"])
    direct = _json(capsys, ["latency", "predict", "--preset", "tiny", "--shape", "256", "320",
                            "--predictor", predictor, "--json"])
    assert via_graph["ms"] == direct["ms"] and (via_graph["lo"], via_graph["hi"]) == (direct["lo"], direct["hi"])
    assert via_graph["contributions_ms"] == direct["contributions_ms"]
    assert via_graph["onnx"] == str(path) and via_graph["out_of_range"] == direct["out_of_range"]


def _generic_predictor(tmp_path) -> tuple[LatencyPredictor, str]:
    """A predictor with every kernel group, fitted on traced non-TopFormer nets (synthetic latencies)."""
    truth = LatencyPredictor(DEFAULT_GROUPS, [0.02, 0.05, 0.003] * len(DEFAULT_GROUPS), 0.1,
                             {"level": 0.9, "log_lo": 0.0, "log_hi": 0.0}, {}, DEVICE)
    lists = [trace_kernels(TinyMobile(), (1, 3, s, s)) for s in (32, 48, 64, 96)]
    lists += [trace_kernels(Attention(), (1, 6, 8)), trace_kernels(TwoConsumers(), (1, 8, 12, 12))]
    lat = [truth.predict_kernels(ks).ms for ks in lists]
    p = LatencyPredictor.fit_kernels(lists, lat, DEVICE, calibration={"file": "synthetic nets"})
    path = tmp_path / "generic.json"
    p.save(path)
    return p, str(path)


def test_generic_model_onnx(tmp_path, capsys):
    net = TinyMobile()
    onnx_path = str(export(net, (1, 3, 40, 40), tmp_path / "tiny_mobile.onnx"))
    if any(g.type == "gconv" for g in packaged_predictor().groups):
        assert main(["latency", "predict", "--onnx", onnx_path]) == 0
        capsys.readouterr()
    else:  # a predictor without a gconv group: a one-line error naming the type and the groups
        assert main(["latency", "predict", "--onnx", onnx_path]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "kernel.type: got 'gconv'" in err and "conv1x1" in err
    p, pfile = _generic_predictor(tmp_path)
    got = _json(capsys, ["latency", "predict", "--onnx", onnx_path, "--predictor", pfile, "--json"])
    assert got["ms"] == p.predict_kernels(trace_kernels(net, (1, 3, 40, 40))).ms  # graph == trace, exactly
    assert got["contributions_ms"]["gconv"] > 0 and got["contributions_ms"]["linear"] > 0
    assert main(["latency", "predict", "--onnx", onnx_path, "--predictor", pfile]) == 0
    assert "tiny_mobile.onnx on synthetic / onnxruntime" in capsys.readouterr().out
    assert main(["latency", "kernels", "--onnx", onnx_path]) == 0
    out = capsys.readouterr().out
    s = kernel_summary(trace_kernels(net, (1, 3, 40, 40)))
    assert f"{sum(v['count'] for v in s.values())} kernels (read from the ONNX graph)" in out
    assert all(t in out for t in ("gconv", "dwconv", "gpool", "linear", "pool", "resize"))


def test_bad_onnx_inputs(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_text("nope")
    assert main(["latency", "predict", "--onnx", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "bad.onnx" in err and "does not load" in err
    assert main(["latency", "predict", "--onnx", str(bad), "--shape", "64", "64"]) == 2
    assert "--shape" in capsys.readouterr().err
    assert main(["latency", "kernels", "--onnx", str(bad), "--traced"]) == 2
    assert "--traced" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --onnx and --preset are exclusive
        main(["latency", "predict", "--onnx", str(bad), "--preset", "tiny"])
