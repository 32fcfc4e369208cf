"""Operator-level latency predictor in the spirit of nn-Meter, fitted on a calibration set.

A network's latency graph is cut into generic kernels (:mod:`topnas.platform.latency.kernels`: from
a TopFormer config, a traced PyTorch model or an exported ONNX graph). Kernels are grouped by
:class:`GroupRule` (a kernel type, optionally one kernel size: the host predictor uses one group per
type, the phone predictor splits depthwise convolutions by kernel size), and each group's time is
modelled as ``a * MACs + b * bytes + c * count`` (throughput, memory traffic, per-kernel overhead),
plus one per-inference overhead::

    latency_ms = intercept + sum_g (a_g * MACs_g + b_g * bytes_g + c_g * count_g)

All coefficients are fitted with NON-NEGATIVE least squares on relative error (every variant
counts the same, small or large), with a small ridge term for the collinear columns. Non-negative
coefficients on features that only grow with width and depth make the predictor monotone: a wider
or deeper variant is never predicted faster than its smaller twin.

Every :class:`Prediction` carries an interval (quantiles of the leave-one-out log residuals of the
fit) and an out-of-range flag (a feature outside the calibration set's range, or a kernel group's
share of the predicted time outside what the calibration covered). A predictor is plain
JSON (no pickle) holding its device/runtime, calibration metadata, coefficients, interval and
ranges; loading it imports neither torch nor pandas and a prediction takes microseconds.

Few-shot transfer (:meth:`LatencyPredictor.transfer`): a new device is modelled as the base
device with one scale per kernel group, ``latency_new = sum_g s_g * t_g(base)``, the scales shrunk
toward one common scale (ridge on the group's share of latency), so a handful of measured variants
is enough. The shipped phone predictor is built differently, from real ARM phone data
(:mod:`topnas.platform.latency.snapdragon`); :meth:`LatencyPredictor.provenance` says what any
predictor rests on.

Example::

    p = LatencyPredictor.load("topnas/platform/latency/predictors/snapdragon865_tnn_1core.json")
    pred = p.predict(variant)          # Prediction(ms=..., lo=..., hi=..., out_of_range=False)
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from topnas.errors import ConfigError
from topnas.platform.latency.kernels import KERNEL_TYPES, Kernel, kernels_from_config

__all__ = [
    "SCHEMA",
    "TERMS",
    "GroupRule",
    "DEFAULT_GROUPS",
    "Prediction",
    "LatencyPredictor",
    "featurize",
    "nnls_relative",
    "flops_baseline",
    "packaged_predictor",
]

SCHEMA = "topnas.latency.predictor/1"
TERMS = ("macs", "bytes", "count")
UNITS = {"macs": 1e6, "bytes": 1e6, "count": 1.0}  # features in MMAC, MB, kernels
PACKAGED = Path(__file__).with_name("predictors")
_CACHE_SIZE = 8192


@dataclass(frozen=True)
class Prediction:
    """Predicted latency in ms with an interval; `out_of_range` when a feature left the calibration range."""

    ms: float
    lo: float
    hi: float
    out_of_range: bool = False
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupRule:
    """Kernels of `type` (optionally only those with this kernel size) form feature group `name`."""

    name: str
    type: str
    kernel_size: int | None = None

    def matches(self, k: Kernel) -> bool:
        return k.type == self.type and (self.kernel_size is None or k.kernel_size == self.kernel_size)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.kernel_size is not None:
            d["kernel_size"] = self.kernel_size
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GroupRule":
        unknown = set(d) - {"name", "type", "kernel_size"}
        if unknown:
            raise ConfigError(f"features.groups.{sorted(unknown)[0]}", "<unknown key>", ["name", "type", "kernel_size"])
        if d.get("type") not in KERNEL_TYPES:
            raise ConfigError("features.groups.type", d.get("type"), list(KERNEL_TYPES))
        return cls(str(d["name"]), str(d["type"]), d.get("kernel_size"))


DEFAULT_GROUPS: tuple[GroupRule, ...] = tuple(GroupRule(t, t) for t in KERNEL_TYPES)


def _feature_names(groups: Sequence[GroupRule]) -> list[str]:
    return [f"{g.name}.{t}" for g in groups for t in TERMS]


def _group_label(g: GroupRule) -> str:
    ks = "" if g.kernel_size is None else f", kernel_size={g.kernel_size}"
    return g.name if g.name == g.type and not ks else f"{g.name} ({g.type}{ks})"


def featurize(kernels: Iterable[Kernel], groups: Sequence[GroupRule]) -> list[float]:
    f = [0.0] * (len(groups) * len(TERMS))
    mu, bu = UNITS["macs"], UNITS["bytes"]
    slot: dict[tuple[str, int], int] = {}
    for k in kernels:
        key = (k.type, k.kernel_size)
        j = slot.get(key)
        if j is None:
            for gi, g in enumerate(groups):
                if g.matches(k):
                    j = slot[key] = gi * 3
                    break
            else:
                raise ConfigError("kernel.type", k.type, [_group_label(g) for g in groups],
                                  hint=f"op {k.op}, kernel size {k.kernel_size}: no feature group of this "
                                       "predictor takes it; use a predictor fitted with such a group")
        f[j] += k.macs
        f[j + 1] += k.bytes
        f[j + 2] += 1.0
    for j in range(0, len(f), 3):
        f[j] /= mu
        f[j + 1] /= bu
    return f


# --------------------------------------------------------------------------------------- fitting
def nnls_relative(X, y, ridge: float):
    """argmin ||(X c - y) / y||^2 + ridge ||D c||^2 subject to c >= 0 (D = column norms)."""
    import numpy as np
    from scipy.optimize import nnls

    A = X / y[:, None]
    norms = np.linalg.norm(A, axis=0)
    live = norms > 0
    coef = np.zeros(X.shape[1])
    As = A[:, live] / norms[live]
    b = np.ones(len(y))
    if ridge > 0:
        As = np.vstack([As, math.sqrt(ridge) * np.eye(As.shape[1])])
        b = np.concatenate([b, np.zeros(As.shape[1])])
    c, _ = nnls(As, b, maxiter=50 * As.shape[1])
    coef[live] = c / norms[live]
    return coef


def _quantiles(log_resid, level: float) -> tuple[float, float]:
    import numpy as np

    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(log_resid, [a, 1.0 - a])
    return float(min(lo, 0.0)), float(max(hi, 0.0))


# --------------------------------------------------------------------------------------- predictor
@dataclass
class LatencyPredictor:
    """A fitted operator-level latency model for one device + runtime (see module docstring)."""

    groups: tuple[GroupRule, ...]
    coef: list[float]                      # aligned with feature_names
    intercept_ms: float
    interval: dict[str, float]             # {"level", "log_lo", "log_hi"}
    ranges: dict[str, list[float]]         # feature name -> [min, max] over the calibration set
    device: dict[str, Any]
    calibration: dict[str, Any] = field(default_factory=dict)
    fit_info: dict[str, Any] = field(default_factory=dict)
    transfer_info: dict[str, Any] | None = None
    created: str = ""
    # group -> [min, max] share of the predicted time seen in calibration: a variant whose kernel
    # MIX (not only its size) leaves what the calibration covered is flagged out of range
    mix_ranges: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.groups = tuple(self.groups)
        self.feature_names = _feature_names(self.groups)
        if len(self.coef) != len(self.feature_names):
            raise ConfigError("coefficients", len(self.coef), f"{len(self.feature_names)} values (one per feature)")
        if any(c < 0 or not math.isfinite(c) for c in self.coef) or self.intercept_ms < 0:
            raise ConfigError("coefficients", "negative or non-finite", ">= 0 (monotone predictor)")
        self._range_idx = [(i, n, *self.ranges[n]) for i, n in enumerate(self.feature_names) if n in self.ranges]
        self._live = [(i, c) for i, c in enumerate(self.coef) if c > 0]
        self._cache: dict[Any, list[float]] = {}
        self._lo = math.exp(self.interval["log_lo"])
        self._hi = math.exp(self.interval["log_hi"])
        names = [g.name for g in self.groups]
        self._mix_idx = [(names.index(g), g, lo, hi) for g, (lo, hi) in self.mix_ranges.items() if g in names]

    # ----------------------------------------------------------------- prediction
    def features(self, variant: Any) -> list[float]:
        """The feature vector of `variant`, cached by (config, input size) (what ``variant.id`` hashes)."""
        key = (variant.model, tuple(variant.input_size))
        f = self._cache.get(key)
        if f is None:
            f = featurize(kernels_from_config(variant), self.groups)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = f
        return f

    def features_from_kernels(self, kernels: Iterable[Kernel]) -> list[float]:
        """The feature vector of any kernel list (a traced model, an ONNX graph, an analytic space).

        Not cached: callers that predict the same graph repeatedly keep the vector themselves.
        Raises ``ConfigError`` naming the kernel type when none of this predictor's groups takes it.
        """
        return featurize(kernels, self.groups)

    def predict_features(self, f: Sequence[float]) -> Prediction:
        ms = self.intercept_ms + sum(c * f[i] for i, c in self._live)
        reasons = tuple(f"{n}={f[i]:.4g} outside [{lo:.4g}, {hi:.4g}]" for i, n, lo, hi in self._range_idx
                        if f[i] < lo * (1 - 1e-9) or f[i] > hi * (1 + 1e-9))
        if self._mix_idx and ms > 0:
            share = {g: sum(self.coef[gi * 3 + t] * f[gi * 3 + t] for t in range(3)) / ms
                     for gi, g, _lo, _hi in self._mix_idx}
            reasons += tuple(f"share of {g}={share[g]:.3f} outside [{lo:.3f}, {hi:.3f}]"
                             for _gi, g, lo, hi in self._mix_idx if not lo - 1e-9 <= share[g] <= hi + 1e-9)
        return Prediction(ms, ms * self._lo, ms * self._hi, bool(reasons), reasons)

    def predict(self, variant: Any) -> Prediction:
        """Predicted latency of `variant` (a :class:`~topnas.search_spaces.Variant`) on this device."""
        return self.predict_features(self.features(variant))

    def predict_kernels(self, kernels: Iterable[Kernel]) -> Prediction:
        """Predicted latency of any graph given as its kernel list; equals :meth:`predict` on a variant's kernels."""
        return self.predict_features(self.features_from_kernels(kernels))

    def predict_ms(self, variant: Any) -> float:
        return self.predict(variant).ms

    def provenance(self) -> str:
        """One line saying what the numbers rest on: device, runtime and each calibration source."""
        head = f"{self.device.get('device', '?')} / {self.device.get('runtime', '?')}"
        sources = self.calibration.get("sources")
        if not sources:  # a predictor fitted on one calibration file
            n = (self.transfer_info or self.fit_info).get("n_variants") or len(self.calibration.get("variant_ids", []))
            parts = [f"{n} variants of {self.calibration.get('file', 'a calibration file')}"]
            if self.transfer_info:
                parts.append(f"transferred from {self.transfer_info['base']['device'].get('device')}")
            return f"{head}: " + ", ".join(parts)
        by_role: dict[str, list[Mapping[str, Any]]] = {}
        for src in sources:
            by_role.setdefault(str(src.get("role", "")).split(" (")[0], []).append(src)
        parts = []
        for role, srcs in by_role.items():
            kinds = sorted({str(x.get("kind")) for x in srcs})
            points = sum(int(x.get("points") or 0) for x in srcs)
            parts.append(f"{role}: {len(srcs)} source(s), {points} points ({'; '.join(kinds)})")
        return f"{head}: " + " | ".join(parts)

    def contributions(self, variant: Any) -> dict[str, float]:
        """Predicted ms per kernel group (plus ``intercept``): where the time goes."""
        return self.contributions_from_features(self.features(variant))

    def contributions_from_features(self, f: Sequence[float]) -> dict[str, float]:
        """:meth:`contributions` of a feature vector (of a variant or :meth:`features_from_kernels`)."""
        out = {"intercept": self.intercept_ms}
        for gi, g in enumerate(self.groups):
            out[g.name] = sum(self.coef[gi * 3 + t] * f[gi * 3 + t] for t in range(3))
        return out

    # ----------------------------------------------------------------- fitting
    @classmethod
    def fit(
        cls,
        samples: Sequence[Any],
        device: Mapping[str, Any],
        *,
        groups: Sequence[GroupRule] = DEFAULT_GROUPS,
        ridge: float = 1e-3,
        level: float = 0.9,
        calibration: Mapping[str, Any] | None = None,
        loo: bool = True,
    ) -> "LatencyPredictor":
        """Fit on `samples` (:class:`~topnas.platform.latency.measurements.Sample`: variant + latency_ms).

        Args:
            device: the measurement target (``measurements.check_single_target`` of the file).
            ridge: ridge weight on column-normalised coefficients (stabilises collinear features).
            level: coverage of the prediction interval, from leave-one-out residuals.
            loo: compute leave-one-out residuals (interval + reported error); off only in tests.
        """
        samples = list(samples)
        cal = dict(calibration or {})
        cal.setdefault("variant_ids", [s.variant.id for s in samples])
        return cls.fit_kernels([kernels_from_config(s.variant) for s in samples], [s.latency_ms for s in samples],
                               device, groups=groups, ridge=ridge, level=level, calibration=cal, loo=loo)

    @classmethod
    def fit_kernels(
        cls,
        kernel_lists: Sequence[Iterable[Kernel]],
        latencies_ms: Sequence[float],
        device: Mapping[str, Any],
        *,
        groups: Sequence[GroupRule] = DEFAULT_GROUPS,
        ridge: float = 1e-3,
        level: float = 0.9,
        calibration: Mapping[str, Any] | None = None,
        loo: bool = True,
    ) -> "LatencyPredictor":
        """Fit on any graphs given as kernel lists (one per measured model) and their latencies in ms.

        The same fit as :meth:`fit` (which calls this with each variant's analytic kernels), for
        models that are not TopFormer variants: traced torch modules, ONNX graphs, public NAS spaces.
        """
        import numpy as np

        if len(kernel_lists) != len(latencies_ms):
            raise ConfigError("latencies", f"{len(latencies_ms)} values", f"one per kernel list ({len(kernel_lists)})")
        if len(kernel_lists) < 3:
            raise ConfigError("calibration", f"{len(kernel_lists)} variants", ">= 3 measured variants")
        if not 0 < level < 1:
            raise ConfigError("level", level, "a coverage in (0, 1)")
        groups = tuple(groups)
        X = np.array([[1.0] + featurize(ks, groups) for ks in kernel_lists])
        y = np.array(latencies_ms, dtype=float)
        if not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise ConfigError("latencies", "non-positive or non-finite", "finite latencies > 0 ms")
        coef = nnls_relative(X, y, ridge)
        fit_info: dict[str, Any] = {"method": "nnls, relative error, ridge on normalised columns", "ridge": ridge,
                                    "n_variants": len(y), "in_sample": _acc(X @ coef, y)}
        interval = {"level": level, "log_lo": 0.0, "log_hi": 0.0, "source": "none"}
        if loo:
            pred = np.array([X[i] @ nnls_relative(np.delete(X, i, 0), np.delete(y, i), ridge) for i in range(len(y))])
            lo, hi = _quantiles(np.log(y / pred), level)
            interval = {"level": level, "log_lo": lo, "log_hi": hi, "source": "leave-one-out log residuals"}
            fit_info["leave_one_out"] = _acc(pred, y)
        names = _feature_names(groups)
        ranges = {n: [float(X[:, j + 1].min()), float(X[:, j + 1].max())] for j, n in enumerate(names)}
        return cls(groups, [float(c) for c in coef[1:]], float(coef[0]), interval, ranges, dict(device),
                   dict(calibration or {}), fit_info, None, _now())

    def transfer(
        self,
        samples: Sequence[Any],
        device: Mapping[str, Any],
        *,
        shrinkage: float = 1.0,
        level: float = 0.9,
        calibration: Mapping[str, Any] | None = None,
    ) -> "LatencyPredictor":
        """Adapt this (base) predictor to a new device from a few measured variants.

        ``latency_new = s_0 * intercept + sum_g s_g * t_g(variant)`` with ``t_g`` this predictor's
        per-group times; one common scale ``s`` is fitted first, then per-group scales with a ridge
        penalty ``shrinkage * sum_g (w_g (s_g - s))^2`` (``w_g`` = the group's mean share of latency
        + 0.02), all non-negative. Leave-one-variant-out errors are stored in ``transfer_info``.
        """
        import numpy as np

        if not samples:
            raise ConfigError("transfer samples", 0, ">= 1 measured variant on the new device")
        C = np.array([self._group_times(s.variant) for s in samples])
        y = np.array([s.latency_ms for s in samples], dtype=float)
        scales, s_common = _fit_scales(C, y, shrinkage)
        loo_rows = []
        log_res = []
        global_errs = []
        if len(samples) >= 2:
            for i in range(len(samples)):
                sc, s_only = _fit_scales(np.delete(C, i, 0), np.delete(y, i), shrinkage)
                p = float(C[i] @ sc)
                global_errs.append(abs(100.0 * (s_only * C[i].sum() / y[i] - 1.0)))
                loo_rows.append({"variant_id": samples[i].variant.id, "name": samples[i].variant.name or "",
                                 "input_size": list(samples[i].variant.input_size), "measured_ms": float(y[i]),
                                 "predicted_ms": p, "error_pct": 100.0 * (p / y[i] - 1.0)})
                log_res.append(math.log(y[i] / p))
        names = ["intercept"] + [g.name for g in self.groups]
        new_coef = []
        for gi in range(len(self.groups)):
            new_coef += [c * float(scales[gi + 1]) for c in self.coef[gi * 3: gi * 3 + 3]]
        # interval: base interval widened by the transfer's worst leave-one-out miss
        r = max((abs(v) for v in log_res), default=0.0)
        lo = -math.sqrt(self.interval["log_lo"] ** 2 + r ** 2)
        hi = math.sqrt(self.interval["log_hi"] ** 2 + r ** 2)
        errs = [abs(row["error_pct"]) for row in loo_rows]
        info = {
            "method": "per-kernel-group scales of the base model, shrunk toward one common scale",
            "shrinkage": shrinkage, "common_scale": s_common,
            "scales": {n: float(s) for n, s in zip(names, scales)},
            "base": {"device": self.device, "calibration": {k: v for k, v in self.calibration.items()
                                                             if k != "variant_ids"},
                     "leave_one_out": self.fit_info.get("leave_one_out")},
            "n_variants": len(samples),
            "leave_one_out": {"rows": loo_rows, "mape": float(np.mean(errs)) if errs else None,
                              "max_ape": float(max(errs)) if errs else None,
                              "unit": "leave one VARIANT out (all its rows), percent error of the prediction"},
            "leave_one_out_common_scale_only": {
                "mape": float(np.mean(global_errs)) if global_errs else None,
                "max_ape": float(max(global_errs)) if global_errs else None,
                "note": "the same leave-one-out with one scale for every kernel group (reference)"},
            "in_sample": _acc(C @ scales, y),
        }
        cal = dict(calibration or {})
        cal.setdefault("variant_ids", [s.variant.id for s in samples])
        return LatencyPredictor(self.groups, new_coef, self.intercept_ms * float(scales[0]),
                                {"level": level, "log_lo": lo, "log_hi": hi,
                                 "source": "base leave-one-out interval widened by the worst transfer "
                                           "leave-one-out miss"},
                                dict(self.ranges), dict(device), cal, dict(self.fit_info), info, _now())

    def _group_times(self, variant: Any) -> list[float]:
        f = self.features(variant)
        return [self.intercept_ms] + [sum(self.coef[gi * 3 + t] * f[gi * 3 + t] for t in range(3))
                                      for gi in range(len(self.groups))]

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        coefs: dict[str, Any] = {"intercept_ms": self.intercept_ms}
        for gi, g in enumerate(self.groups):
            coefs[g.name] = {t: self.coef[gi * 3 + j] for j, t in enumerate(TERMS)}
        return {
            "schema": SCHEMA,
            "created": self.created,
            "device": self.device,
            "calibration": self.calibration,
            "features": {
                "groups": [g.to_dict() for g in self.groups],
                "terms": list(TERMS),
                "units": {"macs": "MMAC (1e6 multiply-accumulates)", "bytes": "MB (1e6 bytes, float32)",
                          "count": "kernels"},
                "kernels": "topnas.platform.latency.kernels (exported latency graph; conv+act fused)",
            },
            "coefficients": coefs,
            "coefficient_units": "ms per unit of each feature; intercept in ms",
            "interval": self.interval,
            "feature_range": self.ranges,
            "fit": self.fit_info,
            "transfer": self.transfer_info,
            "mix_range": self.mix_ranges,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LatencyPredictor":
        if not isinstance(d, Mapping) or d.get("schema") != SCHEMA:
            raise ConfigError("predictor.schema", d.get("schema") if isinstance(d, Mapping) else d, [SCHEMA])
        known = {"schema", "created", "device", "calibration", "features", "coefficients", "coefficient_units",
                 "interval", "feature_range", "fit", "transfer", "mix_range"}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"predictor.{sorted(unknown)[0]}", "<unknown key>", sorted(known))
        groups = tuple(GroupRule.from_dict(g) for g in d["features"]["groups"])
        coefs = d["coefficients"]
        flat = []
        for g in groups:
            if g.name not in coefs:
                raise ConfigError(f"predictor.coefficients.{g.name}", "<missing>", list(TERMS))
            flat += [float(coefs[g.name][t]) for t in TERMS]
        return cls(groups, flat, float(coefs["intercept_ms"]), dict(d["interval"]),
                   {k: list(v) for k, v in d["feature_range"].items()}, dict(d["device"]),
                   dict(d.get("calibration") or {}), dict(d.get("fit") or {}), d.get("transfer"),
                   d.get("created", ""), {k: list(v) for k, v in (d.get("mix_range") or {}).items()})

    def save(self, path: str | os.PathLike[str]) -> Path:
        from topnas.fileio import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "LatencyPredictor":
        path = Path(path)
        if not path.is_file():
            raise ConfigError("predictor", str(path), "an existing predictor JSON file (see `topnas latency fit`)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError("predictor", str(path), "a JSON file", hint=str(exc)) from None
        return cls.from_dict(data)


def _fit_scales(C, y, shrinkage: float):
    """Non-negative per-group scales shrunk toward the least-squares common scale."""
    import numpy as np
    from scipy.optimize import nnls

    total = C.sum(axis=1)
    r = total / y
    s_common = float((r @ np.ones_like(r)) / (r @ r))
    A = C / y[:, None]
    b = np.ones(len(y))
    w = (C / total[:, None]).mean(axis=0) + 0.02
    if shrinkage > 0:
        A = np.vstack([A, math.sqrt(shrinkage) * np.diag(w)])
        b = np.concatenate([b, math.sqrt(shrinkage) * w * s_common])
    s, _ = nnls(A, b, maxiter=100 * A.shape[1])
    return s, s_common


def _acc(pred, meas) -> dict[str, float]:
    from topnas.platform.latency.accuracy import accuracy

    return accuracy(pred, meas)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------- baseline
@dataclass
class FlopsBaseline:
    """``latency = a * MACs + b`` (non-negative, relative error): what a FLOPs proxy can do."""

    a_ms_per_mmac: float
    b_ms: float

    @staticmethod
    def macs(variant: Any) -> float:
        return sum(k.macs for k in kernels_from_config(variant)) / 1e6

    def predict_ms(self, variant: Any) -> float:
        return self.a_ms_per_mmac * self.macs(variant) + self.b_ms


def flops_baseline(samples: Sequence[Any]) -> FlopsBaseline:
    import numpy as np

    X = np.array([[1.0, FlopsBaseline.macs(s.variant)] for s in samples])
    y = np.array([s.latency_ms for s in samples], dtype=float)
    c = nnls_relative(X, y, 0.0)
    return FlopsBaseline(float(c[1]), float(c[0]))


def packaged_predictor(name: str = "snapdragon865_tnn_1core") -> LatencyPredictor:
    """A predictor shipped with topnas: ``snapdragon865_tnn_1core`` or ``local_cpu_ort``."""
    available = sorted(p.stem for p in PACKAGED.glob("*.json"))
    if name not in available:
        raise ConfigError("predictor", name, available)
    return LatencyPredictor.load(PACKAGED / f"{name}.json")
