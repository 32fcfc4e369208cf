"""`topnas promote select|run|finalize|accept`: a Pareto-front variant -> 160k YAML, registry
challenger, full training, champion.

The flag spellings of earlier versions (``--sweep NAME [--no-launch]``, ``--finalize RUN``,
``--accept RUN``, ``--run-full YAML``) are rewritten to these sub-verbs before parsing
(:func:`legacy_argv`), so old scripts and the Ray jobs already submitted keep working.
"""
from __future__ import annotations

import argparse
import math
import sys

from topnas.errors import ConfigError

EPILOG = """examples:
  topnas promote run demo_fixture --knee                       # YAML + registry + local full run
  topnas promote select demo_fixture --max-latency-ms 30       # YAML + registry only
  topnas promote select demo_fixture --trial 3c1a_00004 --force   # off the front, on purpose
  topnas promote run demo_fixture --knee --address http://127.0.0.1:8265   # Ray job
  topnas promote run demo_fixture --knee --scale-down          # the demo: fixture-sized full run
  topnas promote finalize <mlflow run id>    # final mIoU + export latency, trained model version
  topnas promote accept <mlflow run id>      # alias champion moves unless the champion dominates

The full run is `topnas promote run --yaml <yaml> --run-name NAME --model-name M --model-version V`:
`topnas train` of the YAML, then the finalize step, in one process (the Ray job's entrypoint).
Old spellings still work: --sweep NAME (= run, or select with --no-launch), --finalize RUN,
--accept RUN, --run-full YAML (= run --yaml YAML).
"""
VERBS = ("select", "run", "finalize", "accept")
# old mode flag -> (verb, option the value goes to; None: the positional)
LEGACY_MODES = {"--sweep": ("run", None), "--finalize": ("finalize", None), "--accept": ("accept", None),
                "--run-full": ("run", "--yaml")}


def legacy_argv(tokens: list[str]) -> list[str]:
    """``promote``'s arguments in an old spelling -> the sub-verb spelling (anything else unchanged).

    ``--sweep N ... --no-launch`` -> ``select N ...``; ``--sweep N ...`` -> ``run N ...``;
    ``--finalize R`` / ``--accept R`` -> ``finalize R`` / ``accept R``; ``--run-full Y`` ->
    ``run --yaml Y``. Zero or several mode flags are left for argparse to reject.
    """
    if not tokens or tokens[0] in VERBS or not tokens[0].startswith("-"):
        return tokens
    found = []  # (index, flag, value, tokens used)
    for i, tok in enumerate(tokens):
        flag, eq, value = tok.partition("=")
        if flag in LEGACY_MODES:
            if eq:
                found.append((i, flag, value, 1))
            elif i + 1 < len(tokens):
                found.append((i, flag, tokens[i + 1], 2))
    if len(found) != 1:
        return tokens
    i, flag, value, used = found[0]
    rest = tokens[:i] + tokens[i + used:]
    verb, option = LEGACY_MODES[flag]
    if flag == "--sweep" and "--no-launch" in rest:
        verb = "select"
        rest = [t for t in rest if t != "--no-launch"]
    return [verb, *([option, value] if option else [value]), *rest]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("promote", help="promote a Pareto-front variant to the full 160k training",
                       description="Pick a variant on a sweep's Pareto front, write its 160k ADE20K YAML, "
                                   "register it (alias challenger), train it, finalize, accept.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    psub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    s = psub.add_parser("select", help="pick a front member, write its 160k YAML, register it (no training)")
    s.add_argument("sweep", metavar="SWEEP", help="sweep name (under <runs>/sweeps), sweep folder, or MLflow "
                                                 "sweep tag")
    _selection_args(s)
    s.set_defaults(func=_select)

    r = psub.add_parser("run", help="select, then train the full run (here or as a Ray job) and finalize it")
    r.add_argument("sweep", metavar="SWEEP", nargs="?", help="sweep name, sweep folder, or MLflow sweep tag")
    r.add_argument("--yaml", metavar="YAML", help="(the Ray job's entrypoint, instead of SWEEP) train this "
                                                  "promoted YAML, then finalize")
    _selection_args(r)
    r.add_argument("--run-name", help="(with --yaml) the full run's name")
    r.add_argument("--model-version", help="(with --yaml) the promoted model version")
    r.add_argument("--address", help="Ray dashboard / Jobs API URL (http://HOST:8265): submit a Ray job "
                                     "instead of training in this process")
    r.add_argument("--cluster-python", help="interpreter on the cluster nodes (default: this one; "
                                            "$TOPNAS_CLUSTER_PYTHON)")
    r.add_argument("--cluster-tracking-uri", help="MLflow URI as the cluster sees it (default: the one used here)")
    r.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra job env var (repeatable)")
    r.add_argument("--wait", type=float, default=60.0, metavar="S",
                   help="with --address: seconds to wait for the job's MLflow run to appear (default 60)")
    _predictor_arg(r)
    r.set_defaults(func=_run)

    f = psub.add_parser("finalize", help="final mIoU + ONNX latency of a full run; registers the trained model")
    f.add_argument("run_id", metavar="RUN", help="the full-training MLflow run id")
    _common_args(f)
    _predictor_arg(f)
    f.set_defaults(func=_finalize)

    a = psub.add_parser("accept", help="move alias champion to RUN's model unless the champion dominates it")
    a.add_argument("run_id", metavar="RUN", help="the MLflow run id of a finished full training run")
    a.add_argument("--force", action="store_true", help="compare runs that differ in dataset, classes, input "
                                                        "size, iterations or predictor")
    _common_args(a)
    _predictor_arg(a)
    a.set_defaults(func=_accept)


def _common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-name", default=None,
                   help="registered model (default: sweep YAML tracking.registered_model, else topformer-ade20k)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, the sweep's, or "
                                          "runs/mlflow.db)")


def _predictor_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictor", help="latency predictor JSON or packaged name that prices the full run's "
                                       "ONNX export (default: exactly the one the sweep recorded; an error if "
                                       "it cannot be found)")


def _selection_args(p: argparse.ArgumentParser) -> None:
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--trial", help="trial id, variant id or child run id to promote")
    pick.add_argument("--max-latency-ms", type=float, metavar="MS",
                      help="the most accurate front member with predicted latency <= MS")
    pick.add_argument("--knee", action="store_true", help="the knee of the front")
    p.add_argument("--force", action="store_true", help="promote a trial that is not on the front")
    _common_args(p)
    p.add_argument("--out-dir", help="where promoted YAMLs go (default experiments/promoted)")
    p.add_argument("--scale-down", nargs="?", const=True, default=False, metavar="FIXTURE_YAML",
                   help="train a scaled-down copy (same recipe; dataset, crop, workers, iterations of "
                        "FIXTURE_YAML, default experiments/demo_tiny_fixture.yaml)")
    p.add_argument("--max-iters", type=int, help="with --scale-down: iterations of the scaled-down run")
    p.add_argument("--storage", help="sweeps folder (default <runs>/sweeps)")


def _promotion(args: argparse.Namespace):
    """Select a front member of ``args.sweep``, write its YAML and register it; printed."""
    if not (args.trial or args.max_latency_ms is not None or args.knee):
        raise ConfigError("selection", None, "one of --trial ID, --max-latency-ms MS, --knee")
    if args.max_iters is not None and not args.scale_down:
        raise ConfigError("--max-iters", args.max_iters, "only with --scale-down")
    from topnas.platform import promote as P

    record = P.load_sweep(args.sweep, tracking_uri=args.tracking_uri, storage=args.storage)
    sel = P.select_trial(record, trial=args.trial, max_latency_ms=args.max_latency_ms, knee=args.knee,
                         force=args.force)
    promo = P.promote(sel, record, model_name=args.model_name, out_dir=args.out_dir,
                      scale_down=args.scale_down, max_iters=args.max_iters)
    _print_promotion(promo, record)
    return promo


def _select(args: argparse.Namespace) -> int:
    from topnas.platform import promote as P

    promo = _promotion(args)
    print("not launched (`promote select`). Start the full training with:")
    noun, *rest = P.full_run_command(promo, "python", str(promo.train_yaml))[3:]  # the job's (old) spelling
    print("  topnas " + " ".join([noun, *legacy_argv(rest)]))
    print(f"  or: topnas train {promo.train_yaml} --run-name {promo.run_name}  "
          f"then  topnas promote finalize <run id>")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.yaml:
        if args.sweep:
            raise ConfigError("--yaml", args.yaml, "either SWEEP or --yaml YAML, not both")
        return _run_full(args)
    if not args.sweep:
        raise ConfigError("SWEEP", None, "a sweep name, sweep folder or MLflow sweep tag (or --yaml YAML)")
    for option, value in (("--run-name", args.run_name), ("--model-version", args.model_version)):
        if value:
            raise ConfigError(option, value, "only with --yaml (the run name and version of a sweep's "
                                             "promotion are chosen by `promote`)")
    from topnas.platform import promote as P

    promo = _promotion(args)
    if args.address:
        env = dict(_kv("--env", e) for e in args.env)
        res = P.submit_ray_job(promo, address=args.address, python=args.cluster_python,
                               tracking_uri=args.cluster_tracking_uri, env=env)
        print(f"submitted Ray job {res.job_id} to {args.address}")
        print(f"  entrypoint: {res.command}")
        print(f"  follow:     ray job logs --address {args.address} --follow {res.job_id}")
        run_id = P.find_full_run(promo.tracking_uri, promo.run_name, timeout_s=max(args.wait, 0.0))
        if run_id:
            print(f"  MLflow run: {run_id} (name {promo.run_name}) at {promo.tracking_uri}")
        else:
            print(f"  MLflow run: {promo.run_name} (not started yet; it appears under experiment "
                  f"{P.FULL_EXPERIMENT} at {promo.tracking_uri})")
        print("  when it finishes: topnas promote accept <run id>")
        return 0
    print(f"training locally: run {promo.run_name} ({promo.train_yaml})", flush=True)
    res = P.launch_local(promo, predictor=args.predictor)
    _print_finalize(res.finalized)
    print(f"  next: topnas promote accept {res.mlflow_run_id}")
    return 0


def _run_full(args: argparse.Namespace) -> int:
    from topnas.platform import promote as P

    missing = [o for o, v in (("--run-name", args.run_name), ("--model-version", args.model_version)) if not v]
    if missing:
        raise ConfigError(missing[0], None, "a value (required with --yaml)")
    res = P.run_full_training(args.yaml, run_name=args.run_name, model_name=args.model_name or P.DEFAULT_MODEL_NAME,
                              model_version=args.model_version, tracking_uri=args.tracking_uri,
                              predictor=args.predictor)
    _print_finalize(res)
    return 0


def _finalize(args: argparse.Namespace) -> int:
    from topnas.platform import promote as P

    res = P.finalize(args.run_id, tracking_uri=args.tracking_uri,
                     model_name=args.model_name or P.DEFAULT_MODEL_NAME, predictor=args.predictor)
    _print_finalize(res)
    return 0


def _accept(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from topnas.platform import promote as P
    from topnas.platform import tracking

    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    tracking.check_reachable(uri, "--tracking-uri")
    try:
        tracking.get_client(uri).get_run(args.run_id)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ConfigError("RUN", args.run_id, "the MLflow run id of a finished full training run",
                          hint=f"no such run at {uri}; `topnas promote run ...` prints it as `next: ...`") from None
    d = P.accept(args.run_id, tracking_uri=args.tracking_uri, model_name=args.model_name or P.DEFAULT_MODEL_NAME,
                 predictor=args.predictor, force=args.force)
    verb = "moved" if d.moved else "kept"
    print(f"{d.model_name}: champion {verb} -> v{d.champion}. {d.reason}")
    return 0


def _kv(option: str, text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(option, text, "KEY=VALUE")
    return key.strip(), value


def _fmt(v: float, spec: str = ".4f") -> str:
    return format(v, spec) if isinstance(v, float) and math.isfinite(v) else "n/a"


def _print_promotion(promo, record) -> None:
    sel, size = promo.selection, promo.size
    forced = " [FORCED: not on the front]" if sel.forced else ""
    print(f"promoted trial {sel.trial_id} (variant {sel.variant_id}) of sweep {record.name}: {sel.rule}{forced}")
    print(f"  proxy mIoU {_fmt(sel.value('val_mIoU'))}, predicted latency {_fmt(sel.value('latency_ms'), '.2f')} ms "
          f"[{_fmt(sel.value('latency_lo'), '.2f')}, {_fmt(sel.value('latency_hi'), '.2f')}]")
    print(f"  size class {size.name}: {size.params / 1e6:.2f} M params, {size.macs / 1e9:.3f} GMACs at 512x512 "
          f"(nearest preset by params and MACs{'; equals the preset' if size.exact_preset else ''})")
    print(f"  wrote {promo.yaml_path}")
    if promo.train_yaml != promo.yaml_path:
        print(f"  wrote {promo.train_yaml} (scaled down)")
    print(f"  registered {promo.model_name} v{promo.version}, alias challenger (tracking {promo.tracking_uri})")


def _print_finalize(res) -> None:
    if res is None:
        return
    p = res.promoted
    print(f"full run {res.run_id}: final mIoU {_fmt(res.final_miou)} (proxy at promotion {_fmt(p.get('proxy_mIoU'))})")
    print(f"  ONNX {res.onnx_artifact}: predicted {_fmt(res.latency_ms, '.2f')} ms [{_fmt(res.latency_lo, '.2f')}, "
          f"{_fmt(res.latency_hi, '.2f')}] (at promotion {_fmt(p.get('latency_ms'), '.2f')} ms)"
          + (" OUT OF PREDICTOR RANGE" if res.out_of_range else "")
          + (f"; priced by {res.predictor_id}" if res.predictor_id else ""))
    print(f"  registered {res.model_name} v{res.version} (trained), alias challenger", file=sys.stdout)
