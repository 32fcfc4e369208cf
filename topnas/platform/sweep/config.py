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
    scheduler: {name: fifo, grace_period: null, reduction_factor: 2, rungs: null}   # fifo | asha | moasha
    replay: null                       # {table: benchmarks/data/<t>.csv}: read val_mIoU, do not train
    tracking: {uri: null, experiment: topnas-sweeps, registered_model: topformer-ade20k}
    storage: null                      # sweeps folder; default <runs>/sweeps

``proxy.train`` is a partial training config (the sections of
:class:`topnas.platform.train.config.TrainConfig`; ``model.init`` / ``model.pretrained`` start every
trial from sliced ImageNet weights); the sweep owns ``name``, the rest of ``model``,
``schedule.max_iters``, ``data.root`` / ``crop_size`` / ``fixture`` / ``samples_per_gpu`` /
``val_max_samples``, ``runtime.eval_interval`` / ``checkpoint_interval`` / ``seed``, the worker
fields of ``scaling`` and ``tracking``, and rejects them there. ``scaling.report_poll_s``
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from topnas.errors import ConfigError, check_keys, check_type
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
_TOP_KEYS = ("name", "search_space", "objectives", "seed", "sampler", "num_samples", "max_concurrent",
             "latency", "proxy", "scheduler", "asha", "replay", "tracking",
             "storage")
# Sections of the training config the sweep sets itself (per trial, from `proxy`).
_OWNED_TRAIN_KEYS = {
    "name": None, "tracking": None, "fault_injection": None,
    "model": ("preset", "variant", "num_classes", "norm", "input_size"),  # init / pretrained: the user's
    "scaling": ("num_workers", "use_gpu", "cpus_per_worker", "max_failures", "storage_path", "ray_address"),
    "schedule": ("max_iters",), "data": ("root", "crop_size", "fixture", "samples_per_gpu", "val_max_samples"),
    "runtime": ("eval_interval", "checkpoint_interval", "seed"),
}


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
class LatencyConfig:
    predictor: str | None = None
    budget_ms: float | None = None
    reference_ms: float | None = None
    max_rejections: int = 1000

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "LatencyConfig":
        data = _mapping("latency", data)
        check_keys("latency", data, ("predictor", "budget_ms", "reference_ms", "max_rejections"))
        predictor = data.get("predictor")
        if predictor is not None:
            check_type("latency.predictor", predictor, str, "a predictor JSON path or null")
            predictor = _abs_path(predictor)
        budget = _opt_positive("latency.budget_ms", data.get("budget_ms"))
        reference = _opt_positive("latency.reference_ms", data.get("reference_ms"))
        if budget is not None and reference is not None and reference < budget:
            raise ConfigError("latency.reference_ms", reference, f">= latency.budget_ms ({budget})",
                              hint="the hypervolume reference must be no better than every feasible variant")
        max_rej = check_type("latency.max_rejections", data.get("max_rejections", 1000), int, "an int >= 1")
        if max_rej < 1:
            raise ConfigError("latency.max_rejections", max_rej, "an int >= 1")
        return cls(predictor, budget, reference, max_rej)


@dataclass(frozen=True)
class ProxyConfig:
    dataset: str
    iterations: int = 200
    crop_size: tuple[int, int] = (128, 128)
    eval_interval: int | None = None  # None: only at the last iteration
    samples_per_gpu: int = 2
    val_max_samples: int | None = None
    fixture: dict[str, Any] | None = None
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    max_failures: int = 0
    train: dict[str, Any] = field(default_factory=dict)
    fidelity: str | None = None  # a replay table: seed noise vs spread at this budget (sweep.fidelity)

    @property
    def evaluations(self) -> int:
        """How many evaluations (Tune results) a trial reports at the full budget."""
        every = self.eval_interval or self.iterations
        return math.ceil(self.iterations / every)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, replay: bool = False) -> "ProxyConfig":
        """``replay``: trials read a benchmark table, so no dataset is needed."""
        data = _mapping("proxy", data)
        keys = ("dataset", "iterations", "crop_size", "eval_interval", "samples_per_gpu", "val_max_samples",
                "fixture", "workers_per_trial", "cpus_per_worker", "use_gpu", "max_failures", "train",
                "fidelity")
        check_keys("proxy", data, keys)
        if not data.get("dataset") and not replay:
            raise ConfigError("proxy.dataset", data.get("dataset", "<missing>"),
                              "a dataset folder (ADE20K layout; `topnas data fixture` makes a toy one)")
        dataset = _abs_path(check_type("proxy.dataset", data["dataset"], str, "a folder path")) \
            if data.get("dataset") else ""
        iterations = _pos_int("proxy.iterations", data.get("iterations", 200))
        crop = data.get("crop_size", [128, 128])
        if isinstance(crop, int) and not isinstance(crop, bool):
            crop = [crop, crop]
        if not isinstance(crop, (list, tuple)) or len(crop) != 2:
            raise ConfigError("proxy.crop_size", crop, "[height, width] of ints >= 32")
        for i, c in enumerate(crop):
            if isinstance(c, bool) or not isinstance(c, int) or c < 32:
                raise ConfigError(f"proxy.crop_size[{i}]", c, "an int >= 32")
        eval_interval = data.get("eval_interval")
        if eval_interval is not None:
            eval_interval = _pos_int("proxy.eval_interval", eval_interval)
            if eval_interval > iterations:
                raise ConfigError("proxy.eval_interval", eval_interval, f"1..proxy.iterations ({iterations})")
        val_max = data.get("val_max_samples")
        if val_max is not None:
            val_max = _pos_int("proxy.val_max_samples", val_max)
        fixture = data.get("fixture")
        if fixture is not None:
            fixture = dict(_mapping("proxy.fixture", fixture))
        cpus = check_type("proxy.cpus_per_worker", data.get("cpus_per_worker", 1.0), (int, float), "a number >= 0")
        if cpus < 0:
            raise ConfigError("proxy.cpus_per_worker", cpus, "a number >= 0")
        max_failures = check_type("proxy.max_failures", data.get("max_failures", 0), int, "-1 or an int >= 0")
        if max_failures < -1:
            raise ConfigError("proxy.max_failures", max_failures, "-1 (retry forever) or an int >= 0")
        train = dict(_mapping("proxy.train", data.get("train")))
        for key, owned in _OWNED_TRAIN_KEYS.items():
            if key not in train:
                continue
            if owned is None:
                raise ConfigError(f"proxy.train.{key}", train[key], "<set by the sweep>",
                                  hint=f"the sweep sets `{key}` for every trial")
            section = _mapping(f"proxy.train.{key}", train[key])
            for sub in owned:
                if sub in section:
                    raise ConfigError(f"proxy.train.{key}.{sub}", section[sub], "<set by the sweep>",
                                      hint="set it in the `proxy` section")
        return cls(
            dataset=dataset, iterations=iterations, crop_size=(crop[0], crop[1]), eval_interval=eval_interval,
            samples_per_gpu=_pos_int("proxy.samples_per_gpu", data.get("samples_per_gpu", 2)),
            val_max_samples=val_max, fixture=fixture,
            workers_per_trial=_pos_int("proxy.workers_per_trial", data.get("workers_per_trial", 1)),
            cpus_per_worker=float(cpus),
            use_gpu=check_type("proxy.use_gpu", data.get("use_gpu", False), bool, "true or false"),
            max_failures=max_failures, train=copy.deepcopy(train),
            fidelity=check_type("proxy.fidelity", data.get("fidelity"), (str, type(None)), "a replay-table CSV path"),
        )


SCHEDULERS: tuple[str, ...] = ("fifo", "asha", "moasha")


@dataclass(frozen=True)
class SchedulerConfig:
    """Which early stopping runs, with the training iteration as time (it only sees evaluations).

    ``fifo``: every trial trains the full proxy budget. ``asha``: Ray's ASHA on ``val_mIoU`` alone
    (kept for comparison: it stops fast low-mIoU variants that belong on the front). ``moasha``:
    multi-objective successive halving on (``val_mIoU`` at the rung, predicted latency), see
    :mod:`topnas.platform.sweep.moasha`. Rungs sit at evaluation iterations strictly below the full
    budget, so trials are only compared at equal training.
    """

    name: str = "fifo"
    grace_period: int | None = None  # the first rung; default: the first evaluation
    reduction_factor: float = 2.0
    rungs: tuple[int, ...] = ()  # resolved rung iterations (empty for fifo)

    @property
    def early_stopping(self) -> bool:
        return self.name != "fifo"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, proxy: ProxyConfig) -> "SchedulerConfig":
        data = _mapping("scheduler", data)
        check_keys("scheduler", data, ("name", "grace_period", "reduction_factor", "rungs"))
        name = data.get("name", "fifo")
        if name not in SCHEDULERS:
            raise ConfigError("scheduler.name", name, list(SCHEDULERS))
        rf = check_type("scheduler.reduction_factor", data.get("reduction_factor", 2.0), (int, float),
                        "a number > 1")
        if rf <= 1:
            raise ConfigError("scheduler.reduction_factor", rf, "a number > 1")
        every = proxy.eval_interval or proxy.iterations
        grace = data.get("grace_period")
        if grace is not None:
            grace = _pos_int("scheduler.grace_period", grace)
            if grace >= proxy.iterations:
                raise ConfigError("scheduler.grace_period", grace, f"1..{proxy.iterations - 1} (below "
                                  f"proxy.iterations, the budget: the last evaluation is never a stop decision)")
        rungs = data.get("rungs")
        if name == "fifo":
            return cls(name, grace, float(rf), ())
        if proxy.evaluations < 2:
            raise ConfigError("scheduler.name", name, ["fifo"],
                              hint="early stopping needs at least 2 evaluations per trial: set "
                                   "proxy.eval_interval below proxy.iterations")
        if rungs is None:
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
            if not isinstance(rungs, (list, tuple)) or not rungs:
                raise ConfigError("scheduler.rungs", rungs, "a non-empty list of iterations or null")
            for i, r in enumerate(rungs):
                _pos_int(f"scheduler.rungs[{i}]", r)
            if list(rungs) != sorted(set(rungs)):
                raise ConfigError("scheduler.rungs", list(rungs), "strictly increasing iterations")
            if grace is not None and grace != rungs[0]:
                raise ConfigError("scheduler.grace_period", grace, [rungs[0]], hint="= the first of scheduler.rungs")
        for i, r in enumerate(rungs):
            if r >= proxy.iterations or r % every:
                raise ConfigError(f"scheduler.rungs[{i}]" if data.get("rungs") is not None else
                                  "scheduler.grace_period", r,
                                  f"a multiple of proxy.eval_interval ({every}) below proxy.iterations "
                                  f"({proxy.iterations})", hint="rungs must divide the budget into "
                                  "evaluations: trials are compared only where every one of them evaluates")
        return cls(name, int(rungs[0]), float(rf), tuple(int(r) for r in rungs))

    @classmethod
    def from_legacy_asha(cls, data: Mapping[str, Any] | None, proxy: ProxyConfig) -> "SchedulerConfig":
        """The old ``asha: {enabled, grace_period, reduction_factor}`` section (sweeps saved before ``scheduler``)."""
        data = dict(_mapping("asha", data))
        check_keys("asha", data, ("enabled", "grace_period", "reduction_factor"))
        enabled = check_type("asha.enabled", data.pop("enabled", False), bool, "true or false")
        return cls.from_dict({"name": "asha" if enabled else "fifo", **data}, proxy)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "grace_period": self.grace_period, "reduction_factor": self.reduction_factor,
                "rungs": list(self.rungs) if self.rungs else None}


@dataclass(frozen=True)
class ReplayConfig:
    """``replay:``: trials read ``val_mIoU`` per evaluation from a benchmark table instead of training.

    Same searcher, scheduler, callback and MLflow layout; see :mod:`topnas.platform.sweep.replay`.
    """

    table: str
    seed: int | None = None  # the table's seed to replay; default: the lowest seed of each variant
    delay_s: float = 0.0  # sleep per evaluation (tests use it to kill a sweep mid-way)

    @classmethod
    def from_dict(cls, data: Any) -> "ReplayConfig | None":
        if data is None:
            return None
        if isinstance(data, str):
            data = {"table": data}
        data = _mapping("replay", data)
        check_keys("replay", data, ("table", "seed", "delay_s"))
        table = check_type("replay.table", data.get("table"), str, "a CSV path (variant_id,seed,iteration,val_mIoU)")
        seed = data.get("seed")
        if seed is not None:
            check_type("replay.seed", seed, int, "an int or null")
        delay = check_type("replay.delay_s", data.get("delay_s", 0.0), (int, float), "a number >= 0")
        if delay < 0:
            raise ConfigError("replay.delay_s", delay, "a number >= 0")
        return cls(_abs_path(table), seed, float(delay))

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "seed": self.seed, "delay_s": self.delay_s}


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
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    replay: ReplayConfig | None = None
    tracking_uri: str | None = None
    experiment: str = "topnas-sweeps"
    registered_model: str = "topformer-ade20k"  # where `topnas promote` registers versions
    storage: str | None = None
    source: str | None = None  # the YAML file it was read from

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> "SweepConfig":
        data = _mapping("sweep", data)
        check_keys("", data, _TOP_KEYS)
        name = data.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ConfigError("name", name, "1-100 characters of letters, digits, '.', '_' or '-' "
                                            "(starting with a letter or digit)")
        objectives = data.get("objectives", OBJECTIVES)
        if not isinstance(objectives, Mapping) or dict(objectives) != OBJECTIVES:
            raise ConfigError("objectives", objectives, OBJECTIVES,
                              hint="the sweep optimises measured mIoU against predicted latency")
        space, space_source = _load_space(data.get("search_space"))
        latency = LatencyConfig.from_dict(data.get("latency"))
        replay = ReplayConfig.from_dict(data.get("replay"))
        proxy = ProxyConfig.from_dict(data.get("proxy"), replay=replay is not None)
        if proxy.fidelity:  # relative to the YAML's folder (the demo's table lives beside experiments/)
            base = Path(source).parent if source else Path.cwd()
            proxy = dataclasses.replace(proxy, fidelity=str((base / os.path.expanduser(proxy.fidelity)).resolve()))
        storage = data.get("storage")
        if storage is not None:
            storage = _abs_path(check_type("storage", storage, str, "a folder path or null"))
        seed = check_type("seed", data.get("seed", 0), int, "an int >= 0")
        if seed < 0:
            raise ConfigError("seed", seed, "an int >= 0")
        sampler = _mapping("sampler", data.get("sampler"))
        check_keys("sampler", sampler, ("name", "options"))
        sampler_name = sampler.get("name", "nsga2")
        if sampler_name not in SAMPLERS:
            raise ConfigError("sampler.name", sampler_name, sorted(SAMPLERS))
        sampler_options = dict(_mapping("sampler.options", sampler.get("options")))
        _check_sampler_options(sampler_name, sampler_options)
        num_samples = _pos_int("num_samples", data.get("num_samples", 8))
        max_concurrent = _pos_int("max_concurrent", data.get("max_concurrent", 2))
        tracking = _mapping("tracking", data.get("tracking"))
        check_keys("tracking", tracking, ("uri", "experiment", "registered_model"))
        uri = tracking.get("uri")
        if uri is not None:
            check_type("tracking.uri", uri, str, "an MLflow tracking URI or null")
        experiment = check_type("tracking.experiment", tracking.get("experiment", "topnas-sweeps"), str,
                                "a non-empty MLflow experiment name")
        if not experiment.strip():
            raise ConfigError("tracking.experiment", experiment, "a non-empty MLflow experiment name")
        registered_model = check_type("tracking.registered_model",
                                      tracking.get("registered_model", "topformer-ade20k"), str,
                                      "a non-empty MLflow registered model name")
        if not registered_model.strip():
            raise ConfigError("tracking.registered_model", registered_model, "a non-empty registered model name")
        cfg = cls(
            name=name, space=space, space_source=space_source, proxy=proxy, seed=seed, sampler=sampler_name,
            sampler_options=sampler_options, num_samples=num_samples, max_concurrent=max_concurrent,
            latency=latency, scheduler=_scheduler(data, proxy), replay=replay, tracking_uri=uri,
            experiment=experiment, registered_model=registered_model, storage=storage, source=source,
        )
        cfg._check_cross_fields()
        return cfg

    # ------------------------------------------------------------------ checks that need several sections
    def _check_cross_fields(self) -> None:
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

    def train_config(self, variant: Variant, run_name: str, *, tracking_uri: str | None = None):
        """The proxy :class:`~topnas.platform.train.config.TrainConfig` of one trial."""
        from topnas.platform.train.config import TrainConfig

        p = self.proxy
        raw: dict[str, Any] = copy.deepcopy(p.train)
        variant_spec = {k: v for k, v in variant.to_dict().items() if k != "id"}
        every = p.eval_interval or p.iterations
        sections = {
            "model": {"preset": None, "variant": variant_spec, "num_classes": self.space.num_classes},
            "data": {"root": p.dataset, "crop_size": list(p.crop_size), "samples_per_gpu": p.samples_per_gpu,
                     "val_max_samples": p.val_max_samples, "fixture": p.fixture},
            "schedule": {"max_iters": p.iterations},
            "runtime": {"eval_interval": every, "checkpoint_interval": every, "seed": self.seed},
            "scaling": {"report_poll_s": 0.2, **dict(raw.get("scaling") or {}),
                        "num_workers": p.workers_per_trial, "use_gpu": p.use_gpu,
                        "cpus_per_worker": p.cpus_per_worker, "max_failures": p.max_failures,
                        "storage_path": str(self.sweep_dir / TRAIN_DIR)},
            "tracking": {"enabled": True, "uri": tracking_uri or self.tracking_uri, "experiment": self.experiment,
                         "log_checkpoint": False, "export_onnx": False},
        }
        for key, values in sections.items():
            raw[key] = {**dict(raw.get(key) or {}), **values}
        schedule = raw["schedule"]
        if schedule.get("warmup", "linear") is not None:  # a proxy run shorter than the default warm-up
            schedule.setdefault("warmup_iters", min(1500, max(1, p.iterations // 10)))
        raw["name"] = run_name
        try:
            return TrainConfig.from_dict(raw)
        except ConfigError as exc:
            raise ConfigError(f"proxy (training config).{exc.field}", exc.value, exc.allowed) from None

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as YAML-able data (what the sweep folder stores and resume reads)."""
        p = self.proxy
        return {
            "name": self.name,
            "search_space": self.space.to_dict(),
            "objectives": dict(OBJECTIVES),
            "seed": self.seed,
            "sampler": {"name": self.sampler, "options": copy.deepcopy(self.sampler_options)},
            "num_samples": self.num_samples,
            "max_concurrent": self.max_concurrent,
            "latency": {"predictor": self.latency.predictor, "budget_ms": self.latency.budget_ms,
                        "reference_ms": self.latency.reference_ms, "max_rejections": self.latency.max_rejections},
            "proxy": {"dataset": p.dataset, "iterations": p.iterations, "crop_size": list(p.crop_size),
                      "eval_interval": p.eval_interval, "samples_per_gpu": p.samples_per_gpu,
                      "val_max_samples": p.val_max_samples, "fixture": copy.deepcopy(p.fixture),
                      "workers_per_trial": p.workers_per_trial, "cpus_per_worker": p.cpus_per_worker,
                      "use_gpu": p.use_gpu, "max_failures": p.max_failures, "train": copy.deepcopy(p.train),
                      "fidelity": p.fidelity},
            "scheduler": self.scheduler.to_dict(),
            "replay": self.replay.to_dict() if self.replay else None,
            "tracking": {"uri": self.tracking_uri, "experiment": self.experiment,
                         "registered_model": self.registered_model},
            "storage": self.storage,
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)


def load_sweep_config(path: str | os.PathLike[str], overrides: Sequence[str] | Mapping[str, Any] = ()) -> SweepConfig:
    """Read a sweep YAML, apply ``--set a.b=c`` overrides, validate everything.

    Relative paths in the file (search space, dataset, predictor, storage) are read against the
    current directory, like every other topnas command.
    """
    from topnas.platform.train.config import apply_overrides, parse_override

    from topnas.yamlio import read_yaml_mapping

    path = Path(path)
    raw = read_yaml_mapping(path, "sweep config")
    if not raw:
        raise ConfigError("sweep config", str(path), "a YAML mapping at the top level")
    items = overrides.items() if isinstance(overrides, Mapping) else [parse_override(o) for o in overrides]
    for key, value in items:
        apply_overrides(raw, key, value)
    raw.setdefault("name", path.stem)
    return SweepConfig.from_dict(raw, source=str(path.absolute()))


# ----------------------------------------------------------------------------- helpers
def _scheduler(data: Mapping[str, Any], proxy: ProxyConfig) -> SchedulerConfig:
    if data.get("asha") is not None:
        if data.get("scheduler") is not None:
            raise ConfigError("asha", data["asha"], ["<absent>"], hint="replaced by `scheduler: {name: asha}`")
        return SchedulerConfig.from_legacy_asha(data["asha"], proxy)
    return SchedulerConfig.from_dict(data.get("scheduler"), proxy)


def _load_space(value: Any) -> tuple[SearchSpace, str]:
    if value is None:
        return default_space(), "default"
    if isinstance(value, str):
        return SearchSpace.from_yaml(_abs_path(value)), _abs_path(value)
    if isinstance(value, Mapping):
        return SearchSpace.from_dict(value), "inline"
    raise ConfigError("search_space", value, "a YAML path, an inline mapping or null (the default space)")


def _mapping(name: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, "a mapping")
    return value


def _pos_int(name: str, value: Any) -> int:
    check_type(name, value, int, "an int >= 1")
    if value < 1:
        raise ConfigError(name, value, "an int >= 1")
    return value


def _opt_positive(name: str, value: Any) -> float | None:
    if value is None:
        return None
    check_type(name, value, (int, float), "a number > 0 or null")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(name, value, "a finite number > 0 or null")
    return float(value)


def _abs_path(text: str) -> str:
    """``~``, ``$VARS`` and a leading ``{runs}`` expanded, made absolute (the train config's rule)."""
    from topnas.platform.train.config import resolve_path

    return str(resolve_path(text))
