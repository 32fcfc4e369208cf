"""`topnas promote`: a Pareto-front variant -> 160k YAML, registry challenger, full training, champion."""
from __future__ import annotations

import argparse
import math
import sys

from topnas.errors import ConfigError

EPILOG = """examples:
  topnas promote --sweep demo_fixture --knee                       # YAML + registry + local full run
  topnas promote --sweep demo_fixture --max-latency-ms 30 --no-launch
  topnas promote --sweep demo_fixture --trial 3c1a_00004 --force   # off the front, on purpose
  topnas promote --sweep demo_fixture --knee --address http://127.0.0.1:8265   # Ray job
  topnas promote --sweep demo_fixture --knee --scale-down          # the demo: fixture-sized full run
  topnas promote --finalize <mlflow run id>    # final mIoU + export latency, trained model version
  topnas promote --accept <mlflow run id>      # alias champion moves unless the champion dominates

The full run is `topnas promote --run-full <yaml> --run-name NAME --model-name M --model-version V`:
`topnas train` of the YAML, then the --finalize step, in one process (the Ray job's entrypoint).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("promote", help="promote a Pareto-front variant to the full 160k training",
                       description="Pick a variant on a sweep's Pareto front, write its 160k ADE20K YAML, "
                                   "register it (alias challenger) and launch its full training.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--sweep", help="sweep name (under <runs>/sweeps), sweep folder, or MLflow sweep tag")
    mode.add_argument("--finalize", metavar="RUN", help="finalize full-training MLflow run RUN")
    mode.add_argument("--accept", metavar="RUN", help="move alias champion to RUN's model unless dominated")
    mode.add_argument("--run-full", metavar="YAML", help="(job entrypoint) train YAML, then finalize")

    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--trial", help="trial id, variant id or child run id to promote")
    pick.add_argument("--max-latency-ms", type=float, metavar="MS",
                      help="the most accurate front member with predicted latency <= MS")
    pick.add_argument("--knee", action="store_true", help="the knee of the front")
    p.add_argument("--force", action="store_true", help="promote a trial that is not on the front; with "
                   "--accept: compare runs that differ in dataset, classes, input size, iterations or predictor")

    p.add_argument("--model-name", default=None,
                   help="registered model (default: sweep YAML tracking.registered_model, else topformer-ade20k)")
    p.add_argument("--model-version", help="(with --run-full) the promoted model version")
    p.add_argument("--run-name", help="(with --run-full) the full run's name")
    p.add_argument("--out-dir", help="where promoted YAMLs go (default experiments/promoted)")
    p.add_argument("--scale-down", nargs="?", const=True, default=False, metavar="FIXTURE_YAML",
                   help="train a scaled-down copy (same recipe; dataset, crop, workers, iterations of "
                        "FIXTURE_YAML, default experiments/demo_tiny_fixture.yaml)")
    p.add_argument("--max-iters", type=int, help="with --scale-down: iterations of the scaled-down run")
    p.add_argument("--no-launch", action="store_true", help="write the YAML and register; do not train")
    p.add_argument("--address", help="Ray dashboard / Jobs API URL (http://HOST:8265): submit a Ray job "
                                     "instead of training in this process")
    p.add_argument("--cluster-python", help="interpreter on the cluster nodes (default: this one; "
                                            "$TOPNAS_CLUSTER_PYTHON)")
    p.add_argument("--cluster-tracking-uri", help="MLflow URI as the cluster sees it (default: the one used here)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra job env var (repeatable)")
    p.add_argument("--wait", type=float, default=60.0, metavar="S",
                   help="with --address: seconds to wait for the job's MLflow run to appear (default 60)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, the sweep's, or runs/mlflow.db)")
    p.add_argument("--predictor", help="latency predictor JSON or packaged name that prices the full run's "
                                       "ONNX export (default: exactly the one the sweep recorded; an error if "
                                       "it cannot be found)")
    p.add_argument("--storage", help="sweeps folder (default <runs>/sweeps)")
    p.set_defaults(func=_promote)


def _promote(args: argparse.Namespace) -> int:
    if args.finalize:
        return _finalize(args)
    if args.accept:
        return _accept(args)
    if args.run_full:
        return _run_full(args)
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
    if args.no_launch:
        print("not launched (--no-launch). Start the full training with:")
        print("  topnas " + " ".join(P.full_run_command(promo, "python", str(promo.train_yaml))[3:]))
        print(f"  or: topnas train {promo.train_yaml} --run-name {promo.run_name}  "
              f"then  topnas promote --finalize <run id>")
        return 0
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
        print("  when it finishes: topnas promote --accept <run id>")
        return 0
    print(f"training locally: run {promo.run_name} ({promo.train_yaml})", flush=True)
    res = P.launch_local(promo, predictor=args.predictor)
    _print_finalize(res.finalized)
    print(f"  next: topnas promote --accept {res.mlflow_run_id}")
    return 0


def _run_full(args: argparse.Namespace) -> int:
    from topnas.platform import promote as P

    missing = [o for o, v in (("--run-name", args.run_name), ("--model-version", args.model_version)) if not v]
    if missing:
        raise ConfigError(missing[0], None, "a value (required with --run-full)")
    res = P.run_full_training(args.run_full, run_name=args.run_name, model_name=args.model_name or P.DEFAULT_MODEL_NAME,
                              model_version=args.model_version, tracking_uri=args.tracking_uri,
                              predictor=args.predictor)
    _print_finalize(res)
    return 0


def _finalize(args: argparse.Namespace) -> int:
    from topnas.platform import promote as P

    res = P.finalize(args.finalize, tracking_uri=args.tracking_uri,
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
        tracking.get_client(uri).get_run(args.accept)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ConfigError("--accept", args.accept, "the MLflow run id of a finished full training run",
                          hint=f"no such run at {uri}; `topnas promote --sweep ...` prints it as `next: ...`") from None
    d = P.accept(args.accept, tracking_uri=args.tracking_uri, model_name=args.model_name or P.DEFAULT_MODEL_NAME,
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
