"""A sweep's YAML, validated into one :class:`SweepConfig` before Ray or MLflow is started.

Layout (every section optional except ``name`` and ``proxy.dataset``)::

    name: demo_fixture                 # folder <runs>/sweeps/<name>/, Optuna study, MLflow parent run
    search_space: path.yaml            # or an inline mapping, or omitted: the packaged default space
    objectives: {val_mIoU: max, latency_ms: min}   # fixed; written out for the reader
    seed: 0                            # sampler seed and the proxy training seed (same for every trial)
    sampler: {name: nsga2, options: {population_size: 8}}   # nsga2 | tpe | gp | random
    num_samples: 8                     # trained trials (latency-infeasible proposals are extra)
    max_concurrent: 2
    latency:
      predictor: null                  # JSON predictor file; null: the shipped Snapdragon 865 one
      budget_ms: null                  # hard constraint: slower variants are never trained
      reference_ms: null               # hypervolume reference latency; default budget_ms or 1.1 x slowest
      max_rejections: 1000             # consecutive infeasible proposals before the sweep gives up
    proxy:                             # the fixed proxy training budget of every trial
      dataset: data/fixture            # data.root of the training config
      iterations: 20
      crop_size: [64, 64]
      eval_interval: 20                # also the checkpoint interval; the last iteration always evaluates
      samples_per_gpu: 2
      val_max_samples: 8
      fixture: {classes: 5, train: 16, val: 4, size: [64, 80]}   # generate the toy dataset if missing
      workers_per_trial: 1
      cpus_per_worker: 1
      use_gpu: false
      max_failures: 0                  # Ray Train worker restarts inside a trial
      train: {}                        # any other TrainConfig section (optimizer, data, runtime...)
      fidelity: null                   # replay table (relative to this YAML): seed noise vs spread at
                                       # `iterations`, checked at load and logged on the parent run
      fidelity_reference: null         # a longer-budget table of the same variants: the Spearman is
                                       # taken against its longest rung (needs `fidelity`)
    scheduler: {name: fifo, grace_period: null, reduction_factor: 2, rungs: null}   # fifo | asha | moasha
    replay: null                       # {table: benchmarks/data/<t>.csv}: read val_mIoU, do not train
    tracking: {uri: null, experiment: topnas-sweeps, registered_model: topformer-ade20k}
    storage: null                      # sweeps folder; default <runs>/sweeps

``proxy.train`` is a partial training config (the sections of
:class:`topnas.platform.train.train_config.TrainConfig`; ``model.init`` / ``model.pretrained`` start every
trial from sliced ImageNet weights); the sweep owns ``name``, the rest of ``model``,
``schedule.max_iters``, ``data.root`` / ``crop_size`` / ``fixture`` / ``samples_per_gpu`` /
``val_max_samples``, ``runtime.eval_interval`` / ``checkpoint_interval`` / ``seed``, the worker
fields of ``scaling`` and ``tracking``, and rejects them there (one list: ``SweepConfig._trial_settings``).
Each section is a dataclass validated by its fields (:mod:`topnas.configkit`); a sweep YAML may
compose ``_base_`` files like a training YAML. ``scaling.report_poll_s``
defaults to 0.2 s (each ``ray.train.report`` blocks about that long).

Everything is checked at load time, including one full training config built for the space's first
variant and the latency predictor file, so a typo fails with the field, the value and the allowed
values before a single Ray process exists.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import yaml

from topnas.configkit import Section, apply_overrides, compose_yaml, require_positive, resolve_path
from topnas.errors import ConfigError, check_keys
from topnas.platform.objectives import OBJECTIVES
from topnas.platform.sweep.layout import TRAIN_DIR
from topnas.search_spaces import SearchSpace, Variant, default_space

__all__ = [
    "OBJECTIVES",
    "SAMPLERS",
    "SCHEDULERS",
    "ReplayConfig",
    "SchedulerConfig",
    "LatencyConfig",
    "ProxyConfig",
    "SweepConfig",
    "load_sweep_config",
    "make_sampler",
]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


# ----------------------------------------------------------------------------- samplers
# name -> (Optuna sampler class, default options). NSGA-II is the default; Optuna suggests TPE or GP
# below ~1000 trials (its sampler-choice guide), so both are one word away. TPE's constant liar keeps
# parallel workers from getting the same proposal (it imputes a value for trials still running).
_SAMPLER_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "nsga2": ("NSGAIISampler", {}),
    "tpe": ("TPESampler", {"multivariate": True, "constant_liar": True}),
    "gp": ("GPSampler", {}),
    "random": ("RandomSampler", {}),  # the baseline benchmarks/search_quality.py compares against
}
# Constraints come from Trial.set_constraint (constraints_func is deprecated in Optuna 5).
_SAMPLER_FORBIDDEN = ("seed", "constraints_func")


def _sampler_factory(class_name: str, defaults: Mapping[str, Any]) -> Callable[..., Any]:
    def make(seed: int, **options: Any) -> Any:
        import optuna

        return getattr(optuna.samplers, class_name)(seed=seed, **{**defaults, **options})

    make.__name__ = f"make_{class_name}"
    return make


# name -> factory(seed, **options)
SAMPLERS: dict[str, Callable[..., Any]] = {name: _sampler_factory(*spec) for name, spec in _SAMPLER_SPECS.items()}


def make_sampler(name: str, seed: int, options: Mapping[str, Any] | None = None):
    """An Optuna sampler by name (see :data:`SAMPLERS`), seeded."""
    if name not in SAMPLERS:
        raise ConfigError("sampler.name", name, sorted(SAMPLERS))
    return SAMPLERS[name](seed, **dict(options or {}))


def _check_sampler_options(name: str, options: Mapping[str, Any]) -> None:
    import optuna

    cls = getattr(optuna.samplers, _SAMPLER_SPECS[name][0])
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", *_SAMPLER_FORBIDDEN)]
    check_keys("sampler.options", options, accepted)
    try:
        make_sampler(name, 0, options)
    except (TypeError, ValueError) as exc:
        raise ConfigError("sampler.options", dict(options), f"valid {cls.__name__} arguments",
                          hint=str(exc)) from None


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class LatencyConfig(Section):
    """The latency objective: predictor file, optional hard budget and the hypervolume reference."""

    predictor: str | None = None
    budget_ms: float | None = None
    reference_ms: float | None = None
    max_rejections: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "predictor", resolve_path(self.predictor))
        for name in ("budget_ms", "reference_ms"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(name, value, "a finite number > 0 or null")
        if self.budget_ms is not None and self.reference_ms is not None and self.reference_ms < self.budget_ms:
            raise ConfigError("reference_ms", self.reference_ms, f">= latency.budget_ms ({self.budget_ms})",
                              hint="the hypervolume reference must be no better than every feasible variant")
        if self.max_rejections < 1:
            raise ConfigError("max_rejections", self.max_rejections, "an int >= 1")


@dataclass(frozen=True)
class ProxyConfig(Section):
    """The fixed proxy training budget of every trial (``dataset`` may be empty only for a replay)."""

    dataset: str = ""
    iterations: int = 200
    crop_size: tuple[int, int] = (128, 128)  # a single int means a square crop
    eval_interval: int | None = None  # None: only at the last iteration
    samples_per_gpu: int = 2
    val_max_samples: int | None = None
    fixture: dict[str, Any] | None = None
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    max_failures: int = 0
    seeds: int = 1  # > 1: a trial trains its variant once per seed (seed, seed + 1, ...) and scores the mean
    train: dict[str, Any] = field(default_factory=dict)
    fidelity: str | None = None  # a replay table: seed noise vs spread at this budget (sweep.fidelity)
    fidelity_reference: str | None = None  # a longer-budget table of the same variants (the Spearman's)

    @classmethod
    def _expand(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = {k: v for k, v in data.items() if not (k == "train" and v is None)}  # `train:` left empty
        crop = data.get("crop_size")
        if isinstance(crop, int) and not isinstance(crop, bool):
            data["crop_size"] = [crop, crop]
        return data

    def __post_init__(self) -> None:
        if self.dataset:
            object.__setattr__(self, "dataset", resolve_path(self.dataset))
        for name in ("iterations", "samples_per_gpu", "workers_per_trial", "eval_interval", "val_max_samples",
                     "seeds"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(name, value, "an int >= 1")
        for i, c in enumerate(self.crop_size):
            if c < 32:
                raise ConfigError(f"crop_size[{i}]", c, "an int >= 32")
        if self.eval_interval is not None and self.eval_interval > self.iterations:
            raise ConfigError("eval_interval", self.eval_interval, f"1..proxy.iterations ({self.iterations})")
        require_positive("cpus_per_worker", self.cpus_per_worker, allow_zero=True)
        if self.max_failures < -1:
            raise ConfigError("max_failures", self.max_failures, "-1 (retry forever) or an int >= 0")

    @property
    def evaluations(self) -> int:
        """How many evaluations (Tune results) a trial reports at the full budget."""
        every = self.eval_interval or self.iterations
        return math.ceil(self.iterations / every)


@dataclass(frozen=True)
class SchedulerConfig(Section):
    """Which early stopping runs, with the training iteration as time (it only sees evaluations).

    ``fifo``: every trial trains the full proxy budget. ``asha``: Ray's ASHA on ``val_mIoU`` alone
    (kept for comparison: it stops fast low-mIoU variants that belong on the front). ``moasha``:
    multi-objective successive halving on (``val_mIoU`` at the rung, predicted latency), see
    :mod:`topnas.platform.sweep.moasha`. Rungs sit at evaluation iterations strictly below the full
    budget, so trials are only compared at equal training; :meth:`for_proxy` works them out.
    """

    name: Literal["fifo", "asha", "moasha"] = "fifo"
    grace_period: int | None = None  # the first rung; default: the first evaluation
    reduction_factor: float = 2.0
    rungs: tuple[int, ...] | None = None  # given, or resolved by for_proxy (empty for fifo)

    def __post_init__(self) -> None:
        if self.reduction_factor <= 1:
            raise ConfigError("reduction_factor", self.reduction_factor, "a number > 1")
        if self.grace_period is not None and self.grace_period < 1:
            raise ConfigError("grace_period", self.grace_period, "an int >= 1")

    @property
    def early_stopping(self) -> bool:
        return self.name != "fifo"

    def for_proxy(self, proxy: ProxyConfig) -> "SchedulerConfig":
        """The rungs resolved against the proxy budget (checked: each one an evaluation below it)."""
        every = proxy.eval_interval or proxy.iterations
        grace, rf, name = self.grace_period, self.reduction_factor, self.name
        if grace is not None and grace >= proxy.iterations:
            raise ConfigError("scheduler.grace_period", grace, f"1..{proxy.iterations - 1} (below "
                              f"proxy.iterations, the budget: the last evaluation is never a stop decision)")
        if name == "fifo":
            return dataclasses.replace(self, rungs=())
        if proxy.evaluations < 2:
            raise ConfigError("scheduler.name", name, ["fifo"],
                              hint="early stopping needs at least 2 evaluations per trial: set "
                                   "proxy.eval_interval below proxy.iterations")
        if self.rungs is None:
            grace = grace or every
            if grace % every:
                raise ConfigError("scheduler.grace_period", grace, f"a multiple of proxy.eval_interval ({every})",
                                  hint="the first rung must be an evaluation: trials are compared only there")
            rungs, r = [], float(grace)
            while r < proxy.iterations:
                if abs(r - round(r)) > 1e-9 or round(r) % every:
                    raise ConfigError("scheduler.reduction_factor", rf, "a factor that keeps every rung on an "
                                      "evaluation", hint=f"rung {r:g} = grace_period x reduction_factor^k is not "
                                      f"a multiple of proxy.eval_interval ({every}); give `scheduler.rungs`")
                rungs.append(int(round(r)))
                r *= rf
        else:
            rungs = list(self.rungs)
            if not rungs:
                raise ConfigError("scheduler.rungs", rungs, "a non-empty list of iterations or null")
            for i, r in enumerate(rungs):
                if r < 1:
                    raise ConfigError(f"scheduler.rungs[{i}]", r, "an int >= 1")
            if rungs != sorted(set(rungs)):
                raise ConfigError("scheduler.rungs", rungs, "strictly increasing iterations")
            if grace is not None and grace != rungs[0]:
                raise ConfigError("scheduler.grace_period", grace, [rungs[0]], hint="= the first of scheduler.rungs")
        for i, r in enumerate(rungs):
            if r >= proxy.iterations or r % every:
                raise ConfigError(f"scheduler.rungs[{i}]" if self.rungs is not None else
                                  "scheduler.grace_period", r,
                                  f"a multiple of proxy.eval_interval ({every}) below proxy.iterations "
                                  f"({proxy.iterations})", hint="rungs must divide the budget into "
                                  "evaluations: trials are compared only where every one of them evaluates")
        return dataclasses.replace(self, grace_period=int(rungs[0]), rungs=tuple(int(r) for r in rungs))

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "rungs": list(self.rungs) if self.rungs else None}


SCHEDULERS: tuple[str, ...] = typing.get_args(typing.get_type_hints(SchedulerConfig)["name"])


@dataclass(frozen=True)
class LegacyAsha(Section):
    """The old ``asha: {enabled, grace_period, reduction_factor}`` section (sweeps saved before ``scheduler``)."""

    enabled: bool = False
    grace_period: int | None = None
    reduction_factor: float = 2.0

    def scheduler(self) -> SchedulerConfig:
        return SchedulerConfig.from_dict({"name": "asha" if self.enabled else "fifo", "grace_period": self.grace_period,
                                          "reduction_factor": self.reduction_factor}, "scheduler")


@dataclass(frozen=True)
class ReplayConfig(Section):
    """``replay:``: trials read ``val_mIoU`` per evaluation from a benchmark table instead of training.

    Same searcher, scheduler, callback and MLflow layout; see :mod:`topnas.platform.sweep.replay`.
    A bare path is the table.
    """

    table: str  # a CSV path (variant_id,seed,iteration,val_mIoU)
    seed: int | None = None  # the table's seed to replay; default: the lowest seed of each variant
    delay_s: float = 0.0  # sleep per evaluation (tests use it to kill a sweep mid-way)

    @classmethod
    def _expand(cls, data: Any) -> Any:
        return {"table": data} if isinstance(data, str) else data

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", resolve_path(self.table))
        require_positive("delay_s", self.delay_s, allow_zero=True)


@dataclass(frozen=True)
class SamplerSpec(Section):
    """``sampler: {name, options}``: an Optuna sampler (see :data:`SAMPLERS`) and its arguments."""

    name: str = "nsga2"
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _expand(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "options" in data and data["options"] is None:  # `options:` left empty
            return {k: v for k, v in data.items() if k != "options"}
        return data

    def __post_init__(self) -> None:
        if self.name not in SAMPLERS:
            raise ConfigError("name", self.name, sorted(SAMPLERS))
        _check_sampler_options(self.name, self.options)


@dataclass(frozen=True)
class SweepTracking(Section):
    """``tracking: {uri, experiment, registered_model}`` (``uri`` null: $MLFLOW_TRACKING_URI or the local store)."""

    uri: str | None = None
    experiment: str = "topnas-sweeps"
    registered_model: str = "topformer-ade20k"  # where `topnas promote` registers versions

    def __post_init__(self) -> None:
        if not self.experiment.strip():
            raise ConfigError("experiment", self.experiment, "a non-empty MLflow experiment name")
        if not self.registered_model.strip():
            raise ConfigError("registered_model", self.registered_model, "a non-empty registered model name")


@dataclass(frozen=True)
class SweepFile(Section):
    """The keys a sweep YAML may hold, validated by field; :class:`SweepConfig` is built from it."""

    name: str
    search_space: dict[str, Any] | str | None = None  # a YAML path, an inline mapping or null (the default)
    objectives: dict[str, str] = field(default_factory=lambda: dict(OBJECTIVES))
    seed: int = 0
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    num_samples: int = 8
    max_concurrent: int = 2
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    scheduler: SchedulerConfig | None = None
    asha: LegacyAsha | None = None
    replay: ReplayConfig | None = None
    tracking: SweepTracking = field(default_factory=SweepTracking)
    storage: str | None = None  # sweeps folder; default <runs>/sweeps

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ConfigError("name", self.name, "1-100 characters of letters, digits, '.', '_' or '-' "
                                                 "(starting with a letter or digit)")
        if dict(self.objectives) != OBJECTIVES:
            raise ConfigError("objectives", self.objectives, OBJECTIVES,
                              hint="the sweep optimises measured mIoU against predicted latency")
        if self.seed < 0:
            raise ConfigError("seed", self.seed, "an int >= 0")
        for name in ("num_samples", "max_concurrent"):
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "an int >= 1")
        if self.asha is not None and self.scheduler is not None:
            raise ConfigError("asha", self.asha.to_dict(), ["<absent>"], hint="replaced by `scheduler: {name: asha}`")
        object.__setattr__(self, "storage", resolve_path(self.storage))


# ----------------------------------------------------------------------------- the sweep
@dataclass(frozen=True)
class SweepConfig:
    """One sweep, from YAML to searcher, trials and tracker (nothing re-parses it)."""

    name: str
    space: SearchSpace
    space_source: str  # the YAML path, "inline" or "default"
    proxy: ProxyConfig
    seed: int = 0
    sampler: str = "nsga2"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 8
    max_concurrent: int = 2
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    scheduler: SchedulerConfig = field(default_factory=lambda: SchedulerConfig(rungs=()))
    replay: ReplayConfig | None = None
    tracking_uri: str | None = None
    experiment: str = "topnas-sweeps"
    registered_model: str = "topformer-ade20k"  # where `topnas promote` registers versions
    storage: str | None = None
    source: str | None = None  # the YAML file it was read from

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> "SweepConfig":
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError("sweep", data, "a mapping")
        spec: SweepFile = SweepFile.from_dict(data)
        proxy = spec.proxy
        if not proxy.dataset and spec.replay is None:
            raise ConfigError("proxy.dataset", "<missing>",
                              "a dataset folder (ADE20K layout; `topnas data fixture` makes a toy one)")
        base = Path(source).parent if source else Path.cwd()
        from topnas.platform.sweep.fidelity import FIDELITY_KEYS

        for key in FIDELITY_KEYS:  # relative to the YAML's folder (the demo's tables live beside experiments/)
            if getattr(proxy, key):
                proxy = dataclasses.replace(proxy, **{key: resolve_path(getattr(proxy, key), relative_to=base)})
        space, space_source = _load_space(spec.search_space)
        scheduler = spec.asha.scheduler() if spec.asha is not None else spec.scheduler or SchedulerConfig()
        cfg = cls(
            name=spec.name, space=space, space_source=space_source, proxy=proxy, seed=spec.seed,
            sampler=spec.sampler.name, sampler_options=spec.sampler.options, num_samples=spec.num_samples,
            max_concurrent=spec.max_concurrent, latency=spec.latency, scheduler=scheduler.for_proxy(proxy),
            replay=spec.replay, tracking_uri=spec.tracking.uri, experiment=spec.tracking.experiment,
            registered_model=spec.tracking.registered_model, storage=spec.storage, source=source,
        )
        cfg._check_cross_fields()
        return cfg

    # ------------------------------------------------------------------ checks that need several sections
    def _check_cross_fields(self) -> None:
        self._check_train_keys()
        if self.proxy.seeds > 1 and self.scheduler.early_stopping:
            raise ConfigError("proxy.seeds", self.proxy.seeds, f"1 with scheduler.name {self.scheduler.name}",
                              hint="a trial trains its seeds one after another, so no rung has the mean of "
                                   "every seed: set scheduler.name fifo, or proxy.seeds 1")
        if self.proxy.seeds > 1 and self.replay is not None:
            raise ConfigError("proxy.seeds", self.proxy.seeds, [1],
                              hint="a replayed trial reads one seed of its variant from replay.table")
        if self.replay is not None:  # no training: the table must answer every evaluation instead
            from topnas.platform.sweep.replay import load_replay

            load_replay(self)
        else:
            self._check_training()
        from topnas.platform.sweep import estimates
        from topnas.platform.sweep.fidelity import fidelity_of

        fidelity_of(self)  # a table that does not fit this sweep: one error before Ray starts
        predictor = estimates.load_predictor(self.latency.predictor)
        if self.latency.budget_ms is not None:
            fastest = estimates.fastest_latency(predictor, self.space)
            if fastest > self.latency.budget_ms:
                raise ConfigError("latency.budget_ms", self.latency.budget_ms, f">= {fastest:.2f}",
                                  hint="no variant of the search space is that fast (its smallest corner "
                                       f"is predicted at {fastest:.2f} ms)")

    def _check_train_keys(self) -> None:
        """``proxy.train`` may not set what the sweep sets in every trial (:meth:`_trial_settings`)."""
        from topnas.platform.train.train_config import TrainConfig

        train, sections = self.proxy.train, typing.get_type_hints(TrainConfig)
        for key, owned in self._trial_settings(None, "validate").items():
            if key not in train:
                continue
            section = sections[key]
            whole = not isinstance(owned, Mapping) or (
                isinstance(section, type) and set(owned) >= {f.name for f in dataclasses.fields(section)})
            if whole:
                raise ConfigError(f"proxy.train.{key}", train[key], "<set by the sweep>",
                                  hint=f"the sweep sets `{key}` for every trial")
            given = _mapping(f"proxy.train.{key}", train[key])
            for sub in owned:
                if sub in given:
                    raise ConfigError(f"proxy.train.{key}.{sub}", given[sub], "<set by the sweep>",
                                      hint="set it in the `proxy` section")

    def _check_training(self) -> None:
        fixture = self.proxy.fixture
        if fixture is not None and fixture.get("classes", self.space.num_classes) != self.space.num_classes:
            raise ConfigError("proxy.fixture.classes", fixture.get("classes"), [self.space.num_classes],
                              hint="must equal search_space.num_classes")
        if fixture is None and not Path(self.proxy.dataset).is_dir():
            raise ConfigError("proxy.dataset", self.proxy.dataset, "an existing dataset folder",
                              hint="or give proxy.fixture to generate the toy dataset there")
        # The whole training config, validated by the train package for one variant of the space.
        self.first_train_config  # noqa: B018 - built (and kept) to validate it

    @functools.cached_property
    def first_train_config(self):
        """The proxy TrainConfig of :meth:`first_variant`: validated at parse, checked before Ray; built once."""
        return self.train_config(self.first_variant(), run_name="validate")

    def first_variant(self) -> Variant:
        return self.space.build({k: v[0] for k, v in self.space.parameters().items()})

    # ------------------------------------------------------------------ derived values
    @property
    def sweeps_root(self) -> Path:
        from topnas.platform.paths import sweeps_root

        return sweeps_root(self.storage)

    @property
    def sweep_dir(self) -> Path:
        return self.sweeps_root / self.name

    def resolved_tracking_uri(self) -> str:
        from topnas.platform.tracking import resolve_tracking_uri

        return resolve_tracking_uri(self.tracking_uri)

    def _trial_settings(self, variant: Variant | None, run_name: str,
                        tracking_uri: str | None = None, seed_index: int = 0) -> dict[str, Any]:
        """What the sweep sets in every trial's training config, from ``proxy`` and its own fields.

        The single list of what the sweep owns: these keys override ``proxy.train`` and are rejected
        there (a key added here is owned without further code).
        """
        p = self.proxy
        every = p.eval_interval or p.iterations
        variant_spec = None if variant is None else {k: v for k, v in variant.to_dict().items() if k != "id"}
        return {
            "name": run_name,
            "fault_injection": None,
            "model": {"preset": None, "variant": variant_spec, "num_classes": self.space.num_classes,
                      "norm": "auto", "input_size": None},  # init / pretrained: the user's
            "data": {"root": p.dataset, "crop_size": list(p.crop_size), "samples_per_gpu": p.samples_per_gpu,
                     "val_max_samples": p.val_max_samples, "fixture": p.fixture},
            "schedule": {"max_iters": p.iterations},
            "runtime": {"eval_interval": every, "checkpoint_interval": every, "seed": self.seed + seed_index},
            "scaling": {"num_workers": p.workers_per_trial, "use_gpu": p.use_gpu,
                        "cpus_per_worker": p.cpus_per_worker, "max_failures": p.max_failures,
                        "storage_path": str(self.sweep_dir / TRAIN_DIR), "ray_address": None},
            "tracking": {"enabled": True, "uri": tracking_uri or self.tracking_uri, "experiment": self.experiment,
                         "log_checkpoint": False, "export_onnx": False},
        }

    def train_config(self, variant: Variant, run_name: str, *, tracking_uri: str | None = None,
                     seed_index: int = 0):
        """The proxy :class:`~topnas.platform.train.train_config.TrainConfig` of one trial (of its
        ``seed_index``-th seed when ``proxy.seeds`` > 1: training seed ``seed + seed_index``)."""
        from topnas.platform.train.train_config import TrainConfig

        p = self.proxy
        raw: dict[str, Any] = copy.deepcopy(p.train)
        raw["scaling"] = {"report_poll_s": 0.2, **dict(raw.get("scaling") or {})}
        for key, values in self._trial_settings(variant, run_name, tracking_uri, seed_index).items():
            raw[key] = {**dict(raw.get(key) or {}), **values} if isinstance(values, Mapping) else values
        schedule = raw["schedule"]
        if schedule.get("warmup", "linear") is not None:  # a proxy run shorter than the default warm-up
            schedule.setdefault("warmup_iters", min(1500, max(1, p.iterations // 10)))
        try:
            return TrainConfig.from_dict(raw)
        except ConfigError as exc:
            raise ConfigError(f"proxy (training config).{exc.field}", exc.value, exc.allowed, hint=exc.hint) from None

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as YAML-able data (what the sweep folder stores and resume reads)."""
        return {
            "name": self.name,
            "search_space": self.space.to_dict(),
            "objectives": dict(OBJECTIVES),
            "seed": self.seed,
            "sampler": {"name": self.sampler, "options": copy.deepcopy(self.sampler_options)},
            "num_samples": self.num_samples,
            "max_concurrent": self.max_concurrent,
            "latency": self.latency.to_dict(),
            "proxy": self.proxy.to_dict(),
            "scheduler": self.scheduler.to_dict(),
            "replay": self.replay.to_dict() if self.replay else None,
            "tracking": {"uri": self.tracking_uri, "experiment": self.experiment,
                         "registered_model": self.registered_model},
            "storage": self.storage,
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)


def load_sweep_config(path: str | os.PathLike[str], overrides: Sequence[str] | Mapping[str, Any] = ()) -> SweepConfig:
    """Read a sweep YAML (``_base_`` files merged first), apply ``--set a.b=c`` overrides, validate everything.

    Relative paths in the file (search space, dataset, predictor, storage) are read against the
    current directory, like every other topnas command; ``proxy.fidelity`` against the YAML's folder.
    """
    path = Path(path)
    raw = compose_yaml(path, "sweep config")
    if not raw:
        raise ConfigError("sweep config", str(path), "a YAML mapping at the top level")
    apply_overrides(raw, overrides)
    raw.setdefault("name", path.stem)
    return SweepConfig.from_dict(raw, source=str(path.absolute()))


# ----------------------------------------------------------------------------- helpers
def _load_space(value: Any) -> tuple[SearchSpace, str]:
    if value is None:
        return default_space(), "default"
    if isinstance(value, str):
        return SearchSpace.from_yaml(resolve_path(value)), resolve_path(value)
    return SearchSpace.from_dict(value), "inline"


def _mapping(name: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, "a mapping")
    return value
