"""Few-shot latency transfer to a new phone, scored on real measurements of a public NAS space.

The prior is a set of per-device kernel models fitted on the SOURCE phones (one non-negative
``a * MACs + b * bytes + c * count`` model per generic kernel group, :data:`ARM_GROUPS`, fitted on
thousands of measured architectures each), plus the FLOPs of the network. A handful of
measurements of the TARGET phone ("shots") then fits non-negative weights over these basis
predictions (relative error, ridge toward an equal mix of the source models), so the transfer
learns which source phones the target resembles and how compute-bound it is, from ten rows.

With twenty shots or more, the target's own data can carry a kernel model: the mix then competes,
by cross-validated relative error on the shots, with the target's own kernel model and with the
source-average kernel model refined on the shots (:func:`fit_transfer`).

Runtimes differ in one graph convention that changes kernel lists: whether a computation whose
result never reaches the output is removed. Each source phone's convention is chosen by held-out
fit (:func:`fit_device`); the target's bases are offered under both, and the shot fit picks.

:func:`evaluate` scores the transfer on the target rows not used as shots, next to two baselines
fitted on the same shots: FLOPs scaled (``a * MACs + b``) and the kernel model fitted from scratch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from topnas.errors import ConfigError
from topnas.platform.latency.arch_table import ArchTable
from topnas.platform.latency.kernels import Kernel
from topnas.platform.latency.accuracy import kendall, spearman
from topnas.platform.latency.predictor import GroupRule, LatencyPredictor, featurize, nnls_relative
from topnas.platform.latency.spaces import get_space

__all__ = ["ARM_GROUPS", "DeviceModel", "ShotFit", "Transfer", "feature_matrix", "fit_device", "fit_shots",
           "fit_transfer", "evaluate", "HOST_TYPE_FALLBACK"]

# Generic kernel groups (no architecture-specific feature): depthwise convolutions are split by
# kernel size because k3 and k5 depthwise kernels run at very different efficiency on ARM.
ARM_GROUPS: tuple[GroupRule, ...] = (
    GroupRule("conv1x1", "conv1x1"), GroupRule("conv", "conv"), GroupRule("gconv", "gconv"),
    GroupRule("dwconv_k3", "dwconv", 3), GroupRule("dwconv_k5", "dwconv", 5), GroupRule("dwconv", "dwconv"),
    GroupRule("linear", "linear"), GroupRule("matmul", "matmul"), GroupRule("softmax", "softmax"),
    GroupRule("pool", "pool"), GroupRule("gpool", "gpool"), GroupRule("resize", "resize"),
    GroupRule("elementwise", "elementwise"), GroupRule("layout", "layout"),
)
# A host predictor calibrated on TopFormer alone has no group for these types: price them as the
# nearest kernel it knows (only used when the transfer has no source phone).
HOST_TYPE_FALLBACK = {"gconv": "conv", "linear": "conv1x1", "gpool": "pool"}
DEVICE_ROWS = 4000      # rows per source phone used to fit its kernel model (more changes nothing)
SHOT_RIDGE = 0.01       # ridge toward an equal mix of the source models, in relative-error units
MIN_EVAL = 10


def _macs_columns() -> list[int]:
    return [1 + 3 * g for g in range(len(ARM_GROUPS))]


@lru_cache(maxsize=16)
def _features_cached(space: str, archs: tuple[str, ...], input_hw: int, prune_dead: bool) -> np.ndarray:
    mod = get_space(space)
    return np.array([[1.0] + featurize(mod.kernels(a, input_hw, prune_dead), ARM_GROUPS) for a in archs])


def feature_matrix(space: str, archs: Sequence[str], input_hw: int, prune_dead: bool = False) -> np.ndarray:
    """Rows ``[1, features of ARM_GROUPS...]`` for `archs` of `space` (cached per call signature)."""
    return _features_cached(space, tuple(archs), int(input_hw), bool(prune_dead))


@dataclass(frozen=True)
class DeviceModel:
    """A source phone's kernel model: ``latency = coef . [1, features]`` under its graph convention."""

    device: str
    prune_dead: bool
    coef: np.ndarray
    heldout: dict[str, float] = field(default_factory=dict)
    by_convention: dict[bool, np.ndarray] = field(default_factory=dict)

    def predict(self, space: str, archs: Sequence[str], input_hw: int, prune_dead: bool | None = None) -> np.ndarray:
        pd = self.prune_dead if prune_dead is None else prune_dead
        return feature_matrix(space, archs, input_hw, pd) @ self.coef


def _usable(table: ArchTable) -> tuple[tuple[str, ...], np.ndarray]:
    mod = get_space(table.space)
    keep = [i for i, a in enumerate(table.archs) if not mod.is_degenerate(a)]
    return tuple(table.archs[i] for i in keep), table.latency_ms[keep]


def fit_device(table: ArchTable, input_hw: int, *, rows: int = DEVICE_ROWS, seed: int = 0,
               ridge: float = 1e-4) -> DeviceModel:
    """Fit one phone's kernel model; its graph convention is the one with the lower held-out error."""
    archs, y = _usable(table)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(archs))
    n_fit = min(rows, int(0.8 * len(archs)))
    fit_i, test_i = idx[:n_fit], idx[n_fit:n_fit + 2000]
    sub = tuple(archs[i] for i in np.concatenate([fit_i, test_i]))
    best: DeviceModel | None = None
    best_err = math.inf
    coefs: dict[bool, np.ndarray] = {}
    for prune in _conventions(table.space):
        F = feature_matrix(table.space, sub, input_hw, prune)
        coef = coefs[prune] = nnls_relative(F[:n_fit], y[fit_i], ridge)
        pred = F[n_fit:] @ coef
        err = float(np.sqrt(np.mean((pred / y[test_i] - 1.0) ** 2)))
        if err < best_err:
            best_err = err
            best = DeviceModel(table.device, prune, coef, {"rmspe": 100 * err, "spearman": spearman(pred, y[test_i]),
                                                            "n_fit": int(n_fit), "n_test": int(len(test_i))})
    assert best is not None
    return DeviceModel(best.device, best.prune_dead, best.coef, best.heldout, coefs)


def _conventions(space: str) -> tuple[bool, ...]:
    """The graph conventions worth fitting: with and without dead-code removal, where it can matter."""
    return (False, True) if get_space(space).HAS_DEAD_CODE else (False,)


@dataclass
class ShotFit:
    """Weights over basis predictions fitted on the target's shots."""

    names: list[str]
    weights: np.ndarray

    def predict(self, B: np.ndarray) -> np.ndarray:
        return B @ self.weights


def fit_shots(B: np.ndarray, y: np.ndarray, names: Sequence[str], n_models: int,
              ridge: float = SHOT_RIDGE) -> ShotFit:
    """Non-negative weights over basis columns (`n_models` model columns first), relative error.

    Each column is first scaled to the target's level on the shots, so the ridge toward an equal
    mix of the model columns (1 / n_models each, 0 for FLOPs and the constant) is scale-free.
    """
    from scipy.optimize import nnls

    level = np.array([float(np.mean(y / b)) if np.all(b > 0) else 0.0 for b in B.T])
    Bs = B * level
    A = Bs / y[:, None]
    w0 = np.zeros(B.shape[1])
    w0[:n_models] = 1.0 / max(n_models, 1)
    A = np.vstack([A, math.sqrt(ridge) * np.eye(B.shape[1])])
    b = np.concatenate([np.ones(len(y)), math.sqrt(ridge) * w0])
    w, _ = nnls(A, b, maxiter=100 * B.shape[1])
    return ShotFit(list(names), w * level)


OWN_MIN_SHOTS = 20      # below this, a kernel model of the target alone is not worth cross-validating
CV_FOLDS = 5


def _cv_error(fit_predict: Any, X: np.ndarray, y: np.ndarray, folds: int, seed: int) -> float:
    """Relative RMSE of out-of-fold predictions."""
    idx = np.random.default_rng(seed).permutation(len(y))
    err = np.empty(len(y))
    for k in range(folds):
        test = idx[k::folds]
        train = np.setdiff1d(idx, test)
        err[test] = fit_predict(X[train], y[train], X[test]) / y[test] - 1.0
    return float(np.sqrt(np.mean(err ** 2)))


@dataclass
class Transfer:
    """The fitted transfer: the source mix, or (with enough shots) the target's own kernel model,
    whichever has the lower cross-validated relative error on the shots."""

    choice: str
    predict_rows: Any

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.predict_rows(rows)


def ridge_to_prior(F: np.ndarray, y: np.ndarray, prior: np.ndarray, lam: float) -> np.ndarray:
    """Non-negative kernel coefficients fitted on (F, y), pulled toward `prior` (relative error,
    column-normalised ridge): with few rows the prior's relative kernel costs survive, with many the
    target's own data win. The prior is first scaled to the rows' level."""
    from scipy.optimize import nnls

    p = F @ prior
    level = float(np.mean(y / p)) if np.all(p > 0) else 1.0
    A = F / y[:, None]
    norms = np.linalg.norm(A, axis=0)
    live = norms > 0
    As = A[:, live] / norms[live]
    target = prior[live] * level * norms[live]
    M = np.vstack([As, math.sqrt(lam) * np.eye(As.shape[1])])
    b = np.concatenate([np.ones(len(y)), math.sqrt(lam) * target])
    c, _ = nnls(M, b, maxiter=100 * As.shape[1])
    coef = np.zeros(F.shape[1])
    coef[live] = c / norms[live]
    return coef


PRIOR_RIDGE = 0.1


def fit_transfer(B: np.ndarray, own: dict[str, np.ndarray], y: np.ndarray, shots: np.ndarray, names: Sequence[str],
                 n_models: int, seed: int = 0, priors: dict[str, np.ndarray] | None = None) -> Transfer:
    """Fit the transfer on rows `shots` (indices into `B`, the `own` feature matrices and `y`).

    Below :data:`OWN_MIN_SHOTS` it is the source mix (:func:`fit_shots`). From there on, three kinds
    of candidate compete by cross-validated relative error on the shots: the mix, the target's own
    kernel model under each graph convention, and the source-average kernel model refined on the
    shots (:func:`ridge_to_prior`) under each convention; the winner is refitted on all shots.
    """
    ys = y[shots]
    priors = priors or {}

    def mix(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray) -> np.ndarray:
        return fit_shots(Xtr, ytr, names, n_models).predict(Xte)

    def scratch(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray) -> np.ndarray:
        return np.maximum(Xte @ nnls_relative(Xtr, ytr, 1e-2), 1e-9)

    mix_fit = fit_shots(B[shots], ys, names, n_models)
    best = Transfer("mix", lambda rows: mix_fit.predict(B[rows]))
    if len(shots) < OWN_MIN_SHOTS:
        return best
    best_err = _cv_error(mix, B[shots], ys, CV_FOLDS, seed)
    for conv, F in own.items():
        err = _cv_error(scratch, F[shots], ys, CV_FOLDS, seed)
        if err < best_err:
            coef = nnls_relative(F[shots], ys, 1e-2)
            best, best_err = Transfer(f"own/{conv}", lambda rows, F=F, c=coef: np.maximum(F[rows] @ c, 1e-9)), err
        if conv in priors:
            pr = priors[conv]
            err = _cv_error(lambda a, b, c, pr=pr: np.maximum(c @ ridge_to_prior(a, b, pr, PRIOR_RIDGE), 1e-9),
                            F[shots], ys, CV_FOLDS, seed)
            if err < best_err:
                coef = ridge_to_prior(F[shots], ys, pr, PRIOR_RIDGE)
                best, best_err = Transfer(f"prior/{conv}", lambda rows, F=F, c=coef: np.maximum(F[rows] @ c, 1e-9)), err
    return best


def _bases(space: str, archs: Sequence[str], input_hw: int, models: Sequence[DeviceModel],
           host: LatencyPredictor | None) -> tuple[np.ndarray, list[str], int]:
    cols, names = [], []
    for m in models:
        for prune in _conventions(space):
            cols.append(m.predict(space, archs, input_hw, prune))
            names.append(f"{m.device}{'/pruned' if prune else ''}")
    if host is not None:
        mod = get_space(space)
        for prune in _conventions(space):
            cols.append(np.array([host.predict_kernels(_host_kernels(mod.kernels(a, input_hw, prune))).ms
                                  for a in archs]))
            names.append(f"host{'/pruned' if prune else ''}")
    n_models = len(cols)
    for prune in _conventions(space):
        cols.append(feature_matrix(space, archs, input_hw, prune)[:, _macs_columns()].sum(axis=1))
        names.append(f"macs{'/pruned' if prune else ''}")
    cols.append(np.ones(len(archs)))
    names.append("constant")
    return np.column_stack(cols), names, n_models


def _mean_prior(coefs: Sequence[np.ndarray], F: np.ndarray) -> np.ndarray:
    """Average of source models, each first scaled to a common level on the target's architectures."""
    flops = np.zeros(F.shape[1])
    flops[_macs_columns()] = 1.0   # FLOPs as one more member: a compute-bound phone
    scaled = [c / float(np.mean(F @ c)) for c in [*coefs, flops]]
    return np.mean(scaled, axis=0)


def _host_kernels(kernels: Sequence[Kernel]) -> list[Kernel]:
    return [k._replace(type=HOST_TYPE_FALLBACK.get(k.type, k.type)) for k in kernels]


def _scores(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    ape = np.abs(pred / y - 1.0)
    return {"spearman": spearman(pred, y), "kendall": kendall(pred, y), "within5": float(np.mean(ape <= 0.05)),
            "within10": float(np.mean(ape <= 0.10)), "mape": float(100 * np.mean(ape))}


def evaluate(target: ArchTable, sources: Sequence[ArchTable], *, shots: int, repeats: int, seed: int = 0,
             input_hw: int | None = None, host: LatencyPredictor | None = None,
             progress: Any = None) -> dict[str, Any]:
    """Score the few-shot transfer onto `target` (see module docstring); one JSON-able dict.

    `sources` empty means the host predictor `host` is the only prior.
    """
    space = target.space
    mod = get_space(space)
    if shots < 2:
        raise ConfigError("shots", shots, "an integer >= 2")
    if repeats < 1:
        raise ConfigError("repeats", repeats, "an integer >= 1")
    for s in sources:
        if s.space != space:
            raise ConfigError("source", s.path, f"a {space} table (same space as the target)",
                              hint=f"it holds {s.space} architectures")
    if not sources and host is None:
        raise ConfigError("source", "none", "at least one --source table, or a host predictor")
    archs, y = _usable(target)
    if len(archs) < shots + MIN_EVAL:
        raise ConfigError(f"{target.path}: rows", len(archs), f">= shots + {MIN_EVAL} = {shots + MIN_EVAL} "
                          "usable rows (degenerate architectures excluded)")
    hw = int(input_hw or mod.DEFAULT_INPUT)
    models = [fit_device(s, hw, seed=seed) for s in sources if s.device != target.device]
    B, names, n_models = _bases(space, archs, hw, models, host if not models else None)
    F = feature_matrix(space, archs, hw, False)
    own = {("pruned" if p else "full_graph"): feature_matrix(space, archs, hw, p) for p in _conventions(space)}
    priors = {("pruned" if p else "full_graph"): _mean_prior([m.by_convention[p] for m in models], own[
        "pruned" if p else "full_graph"]) for p in _conventions(space)} if models else {}
    macs = F[:, _macs_columns()].sum(axis=1)
    rng = np.random.default_rng(seed)
    runs: dict[str, list[dict[str, float]]] = {"transfer": [], "flops": [], "scratch": []}
    choices: dict[str, int] = {}
    for r in range(repeats):
        perm = rng.permutation(len(archs))
        sh, ev = perm[:shots], perm[shots:]
        fit = fit_transfer(B, own, y, sh, names, n_models, seed=seed + r, priors=priors)
        choices[fit.choice] = choices.get(fit.choice, 0) + 1
        runs["transfer"].append(_scores(fit.predict(ev), y[ev]))
        fl = nnls_relative(np.column_stack([np.ones(shots), macs[sh]]), y[sh], 0.0)
        runs["flops"].append(_scores(fl[0] + fl[1] * macs[ev], y[ev]))
        sc = nnls_relative(F[sh], y[sh], 1e-2)
        runs["scratch"].append(_scores(np.maximum(F[ev] @ sc, 1e-9), y[ev]))
        if progress is not None:
            progress(r + 1, repeats)
    out: dict[str, Any] = {}
    for key in ("spearman", "kendall", "within5", "within10", "mape"):
        vals = [s[key] for s in runs["transfer"]]
        out[f"{key}_mean"] = float(np.mean(vals))
        if key == "mape":
            out["mape_max"] = float(np.max(vals))  # the worst repeat
        else:
            out[f"{key}_min"] = float(np.min(vals))
    for base in ("flops", "scratch"):
        for key in ("spearman", "within10", "mape"):
            out[f"{base}_{key}_mean"] = float(np.mean([s[key] for s in runs[base]]))
    out.update({
        "space": space, "target": target.device, "target_file": target.path,
        "sources": [m.device for m in models] or ["host"], "shots": int(shots), "repeats": int(repeats),
        "seed": int(seed), "n_eval": int(len(archs) - shots), "input_hw": hw,
        "n_degenerate_excluded": int(len(target) - len(archs)),
        "source_conventions": {m.device: ("prune_dead" if m.prune_dead else "full_graph") for m in models},
        "transfer_choices": choices,
    })
    return out
