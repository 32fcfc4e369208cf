"""`topnas latency measure|fit|predict|report|kernels`: calibration data and latency predictors."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from topnas.errors import ConfigError
from topnas.platform.cli.model import add_variant_args, resolve_variant

AUTO = "auto"


def _variants(args: argparse.Namespace) -> list:
    """--variants: one search-space YAML (sampled) or variant files."""
    import yaml

    from topnas.platform.latency.measure_local import calibration_variants
    from topnas.search_spaces import SearchSpace, Variant

    paths = [Path(p) for p in args.variants]
    for p in paths:
        if not p.is_file():
            raise ConfigError("--variants", str(p), "existing search-space YAML or variant YAML/JSON files")
    if len(paths) == 1 and paths[0].suffix in (".yaml", ".yml"):
        data = yaml.safe_load(paths[0].read_text())
        if isinstance(data, dict) and "search_space" in data:
            space = SearchSpace.from_yaml(paths[0])
            return calibration_variants(space, n=args.n, seed=args.seed, presets=not args.no_presets,
                                        corners=not args.no_presets)
    if args.n:
        raise ConfigError("--num-samples", args.n, "only with a search-space YAML",
                          hint="variant files are measured as given")
    return [Variant.load(p) for p in paths]


def _measure(args: argparse.Namespace) -> int:
    variants = _variants(args)
    print(f"{len(variants)} variants -> {args.out}")
    if args.device == "local":
        from topnas.platform.latency.measure_local import measure_local

        n = measure_local(variants, args.out, runs=args.runs, warmup=args.warmup, passes=args.passes,
                          core=args.core, model_dir=args.model_dir, progress=print)
    else:
        from topnas.platform.latency.adb import AdbConfig, measure_adb

        base = AdbConfig.yaml_section(args.adb_config) if args.adb_config else {}
        overrides = {k: v for k, v in {"serial": args.adb_serial, "runtime": args.adb_runtime, "core": args.core,
                                       "runs": args.runs,
                                       "warmup": args.warmup}.items() if v is not None}
        if not args.adb_config and "benchmark_binary" not in base:
            raise ConfigError("--adb-config", None, "a YAML file with an `adb:` section (benchmark_binary, ...)")
        cfg = AdbConfig.from_dict({**base, **overrides})
        n = measure_adb(variants, args.out, cfg, passes=args.passes, model_dir=args.model_dir, progress=print)
    print(f"wrote {n} rows to {args.out}")
    return 0


def _default_stat(df, stat: str, combine: str) -> tuple[str, str]:
    """Local rows: thread CPU time, fastest run, fastest pass (robust on a shared host);
    phone/published rows: the reported median/average, averaged over passes."""
    local = "cpu_min_ms" in df.columns and df["cpu_min_ms"].notna().all()
    if stat == AUTO:
        stat = "cpu_min_ms" if local else "median_ms"
    if combine == AUTO:
        combine = "min" if local else "mean"
    return stat, combine


def load_samples(path: str, stat: str = AUTO, combine: str = AUTO):
    from topnas.platform.latency.measurements import check_single_target, read_calibration, samples_from

    df = read_calibration(path)
    target = check_single_target(df, Path(path).name)
    stat, combine = _default_stat(df, stat, combine)
    samples = samples_from(df, stat, combine)
    meta = {"file": Path(path).name, "n_rows": int(len(df)), "n_variants": len(samples), "stat": stat,
            "combine_passes": combine, "passes": int(df["pass_index"].max()) + 1,
            "measured_from": str(df["timestamp"].min()), "measured_to": str(df["timestamp"].max()),
            "governors": sorted(set(df["governor"].astype(str)) - {""}),
            "cores": sorted({int(c) for c in df["core_id"].dropna()})}
    return samples, target, meta


def _fit(args: argparse.Namespace) -> int:
    from topnas.platform.latency.predictor import LatencyPredictor

    samples, target, meta = load_samples(args.calib, args.stat, args.combine)
    if args.base:
        base = LatencyPredictor.load(args.base)
        meta["base_predictor"] = Path(args.base).name
        p = base.transfer(samples, target, shrinkage=args.shrinkage, calibration=meta)
        loo = p.transfer_info["leave_one_out"]
        print(f"transferred {Path(args.base).name} -> {target['device']} / {target['runtime']} from "
              f"{len(samples)} variants; common scale {p.transfer_info['common_scale']:.3f}")
        for row in loo["rows"]:
            print(f"  leave-one-out {row['name'] or row['variant_id']} {row['input_size']}: measured "
                  f"{row['measured_ms']:.1f} ms, predicted {row['predicted_ms']:.1f} ms ({row['error_pct']:+.1f}%)")
        if loo["mape"] is not None:
            print(f"  leave-one-out MAPE {loo['mape']:.1f}%, max {loo['max_ape']:.1f}%")
    else:
        p = LatencyPredictor.fit(samples, target, ridge=args.ridge, calibration=meta)
        loo = p.fit_info["leave_one_out"]
        print(f"fitted on {len(samples)} variants ({meta['stat']}, passes combined by {meta['combine_passes']}); "
              f"leave-one-out: {100 * loo['within_10']:.0f}% within 10%, RMSPE {loo['rmspe']:.1f}%, "
              f"Spearman {loo['spearman']:.3f}")
    p.save(args.out)
    print(f"wrote {args.out}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from topnas.platform.latency.predictor import LatencyPredictor, packaged_predictor

    p = LatencyPredictor.load(args.predictor) if Path(args.predictor).suffix == ".json" else \
        packaged_predictor(args.predictor)
    if args.onnx:
        return _predict_onnx(args, p)
    v = resolve_variant(args)
    pred = p.predict(v)
    if args.json:
        print(json.dumps({"variant_id": v.id, "ms": pred.ms, "lo": pred.lo, "hi": pred.hi,
                          "out_of_range": pred.out_of_range, "reasons": list(pred.reasons),
                          "contributions_ms": p.contributions(v)}, indent=1))
        return 0
    level = int(round(100 * p.interval["level"]))
    print(f"{v.id} {v.input_size[0]}x{v.input_size[1]} on {p.device.get('device')} / {p.device.get('runtime')}: "
          f"{pred.ms:.1f} ms ({level}% interval {pred.lo:.1f} - {pred.hi:.1f} ms)")
    if pred.out_of_range:
        print("  WARNING out of the calibration range: " + "; ".join(pred.reasons[:4]))
    parts = sorted(p.contributions(v).items(), key=lambda kv: -kv[1])
    print("  " + ", ".join(f"{k} {ms:.1f}" for k, ms in parts if ms > 0.05))
    return 0


def _onnx_kernels(args: argparse.Namespace) -> list:
    from topnas.platform.latency.onnx_graph import onnx_kernels

    if args.shape or args.num_classes:
        raise ConfigError("--shape" if args.shape else "--num-classes", args.shape or args.num_classes,
                          "not with --onnx", hint="an exported graph has its own input size and classes")
    return onnx_kernels(args.onnx)


def _predict_onnx(args: argparse.Namespace, p) -> int:
    """Any exported model: its graph's kernels, priced by the same predictor (no TopFormer fast path)."""
    f = p.features_from_kernels(_onnx_kernels(args))
    pred = p.predict_features(f)
    parts = p.contributions_from_features(f)
    if args.json:
        print(json.dumps({"onnx": str(args.onnx), "ms": pred.ms, "lo": pred.lo, "hi": pred.hi,
                          "out_of_range": pred.out_of_range, "reasons": list(pred.reasons),
                          "contributions_ms": parts}, indent=1))
        return 0
    level = int(round(100 * p.interval["level"]))
    print(f"{args.onnx} on {p.device.get('device')} / {p.device.get('runtime')}: "
          f"{pred.ms:.1f} ms ({level}% interval {pred.lo:.1f} - {pred.hi:.1f} ms)")
    if pred.out_of_range:
        print("  WARNING out of the calibration range: " + "; ".join(pred.reasons[:4]))
    print("  " + ", ".join(f"{k} {ms:.1f}" for k, ms in sorted(parts.items(), key=lambda kv: -kv[1]) if ms > 0.05))
    return 0


def _report(args: argparse.Namespace) -> int:
    from topnas.platform.latency.report import evaluate, write_report

    samples, target, meta = load_samples(args.calib, args.stat, args.combine)
    result = evaluate(samples, target, holdout=args.holdout, seed=args.seed, ridge=args.ridge, folds=args.folds)
    result["calibration"] = meta
    files = write_report(result, args.out_dir, tracking_uri=args.tracking_uri, experiment=args.experiment,
                         calibration=args.calib)
    h = result["heldout"]
    print(f"held-out {result['n_heldout']} of {result['n_variants']} variants (seed {args.seed}):")
    print(f"  {'':16s}{'+-5%':>7s}{'+-10%':>7s}{'RMSPE':>8s}{'Spearman':>10s}{'Kendall':>9s}")
    for name in ("predictor", "flops_baseline"):
        m = h[name]
        print(f"  {name:16s}{100 * m['within_5']:6.0f}%{100 * m['within_10']:6.0f}%{m['rmspe']:7.1f}%"
              f"{m['spearman']:10.3f}{m['kendall']:9.3f}")
    k = result["kfold"]
    print(f"  {result['kfold']['folds']}-fold CV, all variants: predictor {100 * k['predictor']['within_10']:.0f}% "
          f"within 10%, Spearman {k['predictor']['spearman']:.3f}; FLOPs {100 * k['flops_baseline']['within_10']:.0f}%, "
          f"{k['flops_baseline']['spearman']:.3f}")
    print(f"  interval coverage {100 * h['interval_coverage']:.0f}% (nominal {100 * h['interval_level']:.0f}%); "
          f"bar (>= 90% within 10%, Spearman >= 0.95, beats FLOPs): {'MET' if h['bar_met'] else 'NOT MET'}")
    for key, path in files.items():
        print(f"  {key}: {path}")
    return 0


def _kernels(args: argparse.Namespace) -> int:
    from topnas.platform.latency.kernels import extract_kernels, kernel_summary, kernels_from_config

    if args.onnx:
        if args.traced:
            raise ConfigError("--traced", True, "not with --onnx", hint="the ONNX graph is read, not traced")
        ks = _onnx_kernels(args)
        print(f"{args.onnx}: {len(ks)} kernels (read from the ONNX graph)")
    else:
        v = resolve_variant(args)
        ks = extract_kernels(v) if args.traced else kernels_from_config(v)
        print(f"{v.id} {v.input_size[0]}x{v.input_size[1]}: {len(ks)} kernels "
              f"({'traced from the model' if args.traced else 'from the config'})")
    for t, s in sorted(kernel_summary(ks).items(), key=lambda kv: -kv[1]["macs"]):
        print(f"  {t:12s} {s['count']:4d} kernels {s['macs'] / 1e6:10.2f} MMAC {s['bytes'] / 1e6:9.2f} MB")
    if args.all:
        for k in ks:
            print(f"  {k.type:12s} {k.op:12s} {str(k.inputs):40s} -> {str(k.output):22s} "
                  f"{k.macs / 1e6:8.3f} MMAC {k.bytes / 1e6:7.3f} MB {k.act}")
    return 0


def _stat_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stat", default=AUTO,
                   help="per-pass statistic: cpu_min_ms, cpu_median_ms, median_ms, mean_ms, min_ms "
                        "(auto: cpu_min_ms for local rows, median_ms otherwise)")
    p.add_argument("--combine", default=AUTO, help="combine passes by min, median or mean "
                                                   "(auto: min for local rows, mean otherwise)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latency", help="measure latency, fit and use latency predictors")
    lsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    s = lsub.add_parser("measure", help="measure variants locally (ONNX Runtime) or on a phone (adb)")
    s.add_argument("--variants", nargs="+", required=True,
                   help="a search-space YAML (sampled with -n/--seed, presets and corners added) or variant files")
    s.add_argument("-n", "--num-samples", "--n", dest="n", type=int, default=0,
                   help="random variants to sample from a search space (--n: old spelling)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-presets", action="store_true", help="do not add the presets and the space's corners")
    s.add_argument("--device", choices=("local", "adb"), required=True)
    s.add_argument("--adb-serial", default=None, help="device serial (adb -s)")
    s.add_argument("--adb-runtime", default=None, choices=("tnn", "onnxruntime", "ort", "tflite"),
                   help="override adb.runtime of --adb-config")
    s.add_argument("--adb-config", default=None, help="YAML with an `adb:` section (see topnas.platform.latency.adb)")
    s.add_argument("--out", required=True, help="calibration CSV (appended; a rerun resumes)")
    s.add_argument("--runs", type=int, default=None, help="timed runs per pass (default 20)")
    s.add_argument("--warmup", type=int, default=None, help="warm-up runs (default 5)")
    s.add_argument("--passes", type=int, default=1, help="passes over all variants (alternating order)")
    s.add_argument("--core", type=int, default=None, help="core to pin to (local default: the last allowed core; "
                                                          "adb default: the fastest core)")
    s.add_argument("--model-dir", default=None, help="cache of exported models (default: beside --out)")
    s.set_defaults(func=_measure_defaults)

    s = lsub.add_parser("fit", help="fit a predictor on a calibration file (or transfer one with --base)")
    s.add_argument("--calib", required=True, help="calibration CSV/Parquet (or the published-figures CSV)")
    s.add_argument("--out", required=True, help="predictor JSON to write")
    s.add_argument("--base", default=None, help="base predictor JSON: few-shot transfer to the calibration's device")
    s.add_argument("--shrinkage", type=float, default=1.0, help="transfer: pull of per-kernel scales to one scale")
    s.add_argument("--ridge", type=float, default=1e-3)
    _stat_args(s)
    s.set_defaults(func=_fit)

    s = lsub.add_parser("predict", help="predict a variant's (or any exported ONNX model's) latency")
    s.add_argument("--predictor", default="snapdragon865_tnn_1core",
                   help="predictor JSON, or a packaged name: snapdragon865_tnn_1core, local_cpu_ort")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    add_variant_args(s).add_argument("--onnx", help="any exported ONNX model (fixed input size): its graph's kernels")
    s.set_defaults(func=_predict)

    s = lsub.add_parser("report", help="held-out accuracy vs a FLOPs baseline, PNG, MLflow")
    s.add_argument("--calib", required=True)
    s.add_argument("--out-dir", default="runs/latency_report")
    s.add_argument("--holdout", type=float, default=0.25, help="fraction of variants held out of fitting")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--folds", type=int, default=5)
    s.add_argument("--ridge", type=float, default=1e-3)
    s.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI; none: no logging)")
    s.add_argument("--experiment", default="latency")
    _stat_args(s)
    s.set_defaults(func=_report)

    s = lsub.add_parser("kernels", help="a variant's (or an ONNX model's) latency graph cut into kernels")
    add_variant_args(s).add_argument("--onnx", help="any exported ONNX model: read its graph")
    s.add_argument("--traced", action="store_true", help="trace the built model instead of the config")
    s.add_argument("--all", action="store_true", help="list every kernel")
    s.set_defaults(func=_kernels)

    from topnas.platform.cli.latency_transfer import register_verbs

    register_verbs(lsub)


def _measure_defaults(args: argparse.Namespace) -> int:
    if args.device == "local":
        args.runs = 20 if args.runs is None else args.runs
        args.warmup = 5 if args.warmup is None else args.warmup
    return _measure(args)

