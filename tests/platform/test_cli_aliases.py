"""Old CLI spellings parse to exactly what their current spelling parses to.

`topnas promote --sweep/--finalize/--accept/--run-full` became the sub-verbs `select`, `run`,
`finalize`, `accept`; `topnas export` is also `topnas model export`. Scripts, READMEs of other
projects and Ray jobs already submitted still use the old ones.
"""
from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from topnas.platform.cli import build_parser
from topnas.platform.cli.promote import legacy_argv

PROMOTE = [  # (old, new)
    ("promote --sweep demo --knee", "promote run demo --knee"),
    ("promote --sweep demo --knee --no-launch", "promote select demo --knee"),
    ("promote --sweep=demo --trial t_00004 --force --no-launch --out-dir o",
     "promote select demo --trial t_00004 --force --out-dir o"),
    ("promote --max-latency-ms 30 --sweep demo --no-launch", "promote select demo --max-latency-ms 30"),
    ("promote --sweep demo --knee --scale-down --address http://h:8265 --env A=1 --env B=2 --wait 5",
     "promote run demo --knee --scale-down --address http://h:8265 --env A=1 --env B=2 --wait 5"),
    ("promote --sweep demo --knee --scale-down fx.yaml --max-iters 40 --storage s --tracking-uri sqlite:///m.db",
     "promote run demo --knee --scale-down fx.yaml --max-iters 40 --storage s --tracking-uri sqlite:///m.db"),
    ("promote --finalize abc123 --tracking-uri http://t:5000 --predictor p.json",
     "promote finalize abc123 --tracking-uri http://t:5000 --predictor p.json"),
    ("promote --accept abc123 --force --model-name m", "promote accept abc123 --force --model-name m"),
    ("promote --run-full experiments/promoted/x.yaml --run-name r --model-name m --model-version 3",
     "promote run --yaml experiments/promoted/x.yaml --run-name r --model-name m --model-version 3"),
    ("-v promote --accept abc123", "-v promote accept abc123"),
]


def _parse(line: str) -> dict:
    return vars(build_parser().parse_args(line.split()))


@pytest.mark.parametrize("old, new", PROMOTE, ids=[o for o, _ in PROMOTE])
def test_old_promote_spelling_parses_like_the_sub_verb(old, new):
    a, b = _parse(old), _parse(new)
    assert a == b
    assert a["noun"] == "promote" and a["action"] == new.split()[new.split().index("promote") + 1]


def test_every_promote_verb_and_old_mode_is_covered():
    assert {new.split()[new.split().index("promote") + 1] for _, new in PROMOTE} == {"select", "run", "finalize",
                                                                                     "accept"}
    assert {f for f in ("--sweep", "--finalize", "--accept", "--run-full") if any(f in o for o, _ in PROMOTE)} \
        == {"--sweep", "--finalize", "--accept", "--run-full"}


def test_the_ray_job_entrypoint_parses_to_run_yaml():
    from topnas.platform.promote import full_run_command

    promo = SimpleNamespace(run_name="full-r", model_name="m", version="4")
    argv = full_run_command(promo, sys.executable, "experiments/promoted/x.yaml")[3:]
    ns = build_parser().parse_args(argv)
    assert (ns.action, ns.yaml, ns.run_name, ns.model_name, ns.model_version, ns.sweep) == (
        "run", "experiments/promoted/x.yaml", "full-r", "m", "4", None)


@pytest.mark.parametrize("tokens", [
    ["run", "demo", "--knee"], ["select", "--sweep-like-name"], [], ["--help"],
    ["--sweep", "a", "--accept", "b"],  # two modes: left for argparse to reject
])
def test_current_spellings_and_ambiguous_ones_are_not_rewritten(tokens):
    assert legacy_argv(list(tokens)) == tokens


def test_two_old_modes_still_fail():
    with pytest.raises(SystemExit):
        build_parser().parse_args("promote --sweep a --accept b".split())


def test_export_and_model_export_parse_alike():
    a = _parse("export --preset tiny --shape 256 256 -o t.onnx --opset 13")
    b = _parse("model export --preset tiny --shape 256 256 -o t.onnx --opset 13")
    assert (a.pop("noun"), b.pop("noun"), b.pop("action")) == ("export", "model", "export")
    assert a == b and a["func"].__name__ == "_export"
