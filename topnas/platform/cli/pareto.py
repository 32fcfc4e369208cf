"""`topnas pareto show`: a sweep's Pareto front as a terminal table, sortable by either objective."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pareto", help="inspect the Pareto front of a sweep",
                       description="Read a sweep's trials.jsonl (no Ray, no tracking server needed).")
    psub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = psub.add_parser("show", help="the front (or every trial) as a table")
    s.add_argument("sweep", help="sweep name (under <runs>/sweeps) or sweep folder")
    s.add_argument("--sort", choices=("latency_ms", "val_mIoU"), default="latency_ms",
                   help="latency_ms: fastest first (default); val_mIoU: most accurate first")
    s.add_argument("--all", action="store_true", help="every finished trial, not only the front")
    s.add_argument("--storage", help="sweeps folder (default: <runs>/sweeps)")
    s.add_argument("--rung", type=int, metavar="K",
                   help="the front at rung K (iteration) of an asha/moasha sweep: every trial's mIoU there")
    s.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    from topnas.platform import pareto as P
    from topnas.platform.pareto_plots import front_table
    from topnas.platform.sweep.sweep_config import OBJECTIVES
    from topnas.platform.sweep.layout import SweepState, resolve_sweep_dir
    from topnas.platform.sweep.ledger import load_trials

    folder = resolve_sweep_dir(args.sweep, args.storage)
    state = SweepState.load(folder)
    if args.rung is not None:
        return _show_rung(folder, state, args)
    df = load_trials(folder)
    if df.empty:
        print(f"sweep {state.name}: no finished trial yet ({folder})")
        _say_pending(folder, state.name)
        return 0
    counts = ", ".join(f"{n} {s}" for s, n in sorted(df["status"].value_counts().items()))
    hv = P.hypervolume(P.points_from_records(df.to_dict("records"), OBJECTIVES), state.reference_point, OBJECTIVES)
    print(f"sweep {state.name} ({state.status}): {counts}; {int(df['pareto'].sum())} on the front; "
          f"hypervolume {hv:.4g}")
    print(front_table(df, args.sort, front_only=not args.all))
    _say_resolution(folder, df)
    _say_predictor(state)
    print(f"MLflow parent run {state.parent_run_id} at {state.tracking_uri}")
    _say_pending(folder, state.name)
    return 0


def _say_resolution(folder, df) -> None:
    """With the proxy's measured seed noise (the sweep YAML named a fidelity table): is the front's mIoU order real?"""
    from topnas.platform.pareto_plots import front_mious
    from topnas.platform.sweep.fidelity import front_resolution, load_fidelity
    from topnas.platform.sweep.layout import SweepFolder

    fidelity = load_fidelity(SweepFolder(folder).fidelity)
    if fidelity is None:
        return
    line = front_resolution(front_mious(df), fidelity.seed_noise)
    if line:
        print(line)


def _say_predictor(state) -> None:
    """Which predictor priced latency_ms, and what it rests on."""
    if state.predictor_label:
        print(f"latency_ms priced by {state.predictor_label}")
        print(f"  calibration: {state.predictor_provenance}")
    else:  # a sweep started before state.json recorded provenance
        print(f"latency_ms priced by predictor {state.predictor_id} (its file is logged on the MLflow parent run)")


def _say_pending(folder, name: str) -> None:
    """Finished trials whose record failed (pending.jsonl) are not in the table: say so and what to do."""
    from topnas.platform.sweep.ledger import PendingTrials

    pending = PendingTrials(folder).entries()
    if pending:
        print(f"NOTE: {len(pending)} finished trial(s) not recorded yet ({', '.join(e['trial_id'] for e in pending[:5])}; "
              f"{PendingTrials(folder).path}): `topnas sweep --resume {name}` records them")


def _show_rung(folder, state, args: argparse.Namespace) -> int:
    from topnas.platform.pareto_plots import front_table
    from topnas.platform.sweep.moasha import rung_frame

    df = rung_frame(folder, args.rung)
    stopped = int(df["status"].str.startswith("stop").sum())
    print(f"sweep {state.name}, rung {args.rung}: {len(df)} trials reached it, {int(df['pareto'].sum())} on its "
          f"front (mIoU at iteration {args.rung}); {len(df) - stopped} continued, {stopped} stopped")
    print(front_table(df, args.sort, front_only=not args.all))
    _say_predictor(state)
    return 0
