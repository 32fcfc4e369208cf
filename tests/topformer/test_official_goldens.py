"""Our TopFormer against golden outputs of the official hustvl/TopFormer code, in every run.

``tests/topformer/data/official_goldens.npz`` was written by ``scripts/make_official_goldens.py``
from the official source (commit stored in the file): both models get identical weights from
``deterministic_weights`` (seeded by module name) and the same inputs, so equal logits, BN
running-stat updates and gradient norms mean the same computation. The full opt-in comparison
(TOPNAS_OFFICIAL_TOPFORMER, tests/topformer/test_official_parity.py) stays as it is.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers.topformer_goldens import CASES, NUM_CLASSES, case_key, run_case
from topnas.topformer import TopFormer

GOLDENS = Path(__file__).resolve().parent / "data" / "official_goldens.npz"


@pytest.fixture(scope="module")
def goldens():
    with np.load(GOLDENS) as data:
        return {k: data[k] for k in data.files}


def test_goldens_cover_every_case(goldens):
    assert len(str(goldens["commit"])) == 40
    assert {k.split("/")[0] for k in goldens if k != "commit"} == {c[0] for c in CASES}
    modes = {(c[1], c[2]) for c in CASES}
    assert {(p, m) for p in ("tiny", "small", "base") for m in ("eval", "train")} <= modes


@pytest.mark.parametrize("name, preset, mode, size, batch, overrides", CASES, ids=[c[0] for c in CASES])
def test_matches_official_goldens(goldens, name, preset, mode, size, batch, overrides):
    model = TopFormer.from_preset(preset, num_classes=NUM_CLASSES, norm="BN", **overrides)
    got = run_case(model, name, mode, size, batch)
    expected = goldens[case_key(name, "logits")]
    assert got["logits"].shape == expected.shape == (batch, NUM_CLASSES, (size[0] + 7) // 8, (size[1] + 7) // 8)
    # eval: float32, as deployed; train: float64 (run_case says why); a wrong operator moves either by whole units
    tol = {"rtol": 1e-4, "atol": 1e-5} if mode == "eval" else {"rtol": 1e-6, "atol": 1e-9}
    np.testing.assert_allclose(got["logits"], expected, **tol, err_msg=f"{name} logits")
    if mode == "train":
        np.testing.assert_allclose(got["running_sums"], goldens[case_key(name, "running_sums")], rtol=1e-8,
                                   atol=1e-10, err_msg=f"{name} BN running stats after one train forward")
        np.testing.assert_allclose(got["grad_norms"], goldens[case_key(name, "grad_norms")], rtol=1e-3,
                                   atol=1e-9, err_msg=f"{name} gradient norms")
