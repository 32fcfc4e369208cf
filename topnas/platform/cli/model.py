"""`topnas model summary|sample|export`: inspect, sample and export TopFormer variants.

`topnas export` (the first spelling of `topnas model export`) stays as an alias."""
from __future__ import annotations

import argparse

from topnas.errors import ConfigError


def add_variant_args(p: argparse.ArgumentParser, shape_default: tuple[int, int] | None = None):
    """Shared options: which variant (--preset or --variant) and at which input size.

    Returns the required either-or group, so a command can offer another source (e.g. ``--onnx``).
    """
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--preset", help="official preset: tiny, small or base")
    g.add_argument("--variant", help="variant YAML/JSON file (see `topnas model sample`)")
    p.add_argument("--shape", nargs=2, type=int, metavar=("H", "W"), default=shape_default,
                   help="input size (default: the variant's own, 512 512 for presets)")
    p.add_argument("--num-classes", type=int, default=None, help="override the number of classes")
    return g


def resolve_variant(args: argparse.Namespace):
    from topnas.search_spaces import Variant, preset_variant
    from topnas.topformer import PRESETS

    if args.preset:
        if args.preset not in PRESETS:
            raise ConfigError("--preset", args.preset, sorted(PRESETS))
        v = preset_variant(args.preset, num_classes=args.num_classes or 150)
    else:
        v = Variant.load(args.variant)
        if args.num_classes:
            v = Variant(v.model.replace(num_classes=args.num_classes), v.input_size, v.name)
    if args.shape:
        v = Variant(v.model, tuple(args.shape), v.name)
    return v


def _summary(args: argparse.Namespace) -> int:
    from topnas.topformer.summary import summarize

    v = resolve_variant(args)
    _, table = summarize(v.build(norm="BN"), v.input_size)
    print(f"variant {v.id}" + (f" (preset {v.preset})" if v.preset else ""))
    print(table)
    return 0


def _sample(args: argparse.Namespace) -> int:
    import random
    from pathlib import Path

    from topnas.search_spaces import SearchSpace, default_space

    space = SearchSpace.from_yaml(args.space) if args.space else default_space()
    rng = random.Random(args.seed)
    out = Path(args.out)
    for _ in range(args.n):
        v = space.sample(rng)
        path = v.save(out / f"{v.id}.yaml")
        print(path)
    return 0


def _export(args: argparse.Namespace) -> int:
    from topnas.topformer.weights import load_checkpoint
    from topnas.topformer.export import export_onnx

    v = resolve_variant(args)
    model = v.build(norm="BN")
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint)
    path = export_onnx(model, args.output, v.input_size, opset=args.opset)
    print(f"wrote {path}  (variant {v.id}, input 1x3x{v.input_size[0]}x{v.input_size[1]}, opset {args.opset})")
    return 0


HELP = "export a variant to ONNX (official latency graph)"


def add_export_args(p: argparse.ArgumentParser) -> None:
    """The export options and action, shared by `topnas model export` and `topnas export`."""
    add_variant_args(p)
    p.add_argument("-o", "--output", required=True, help="output .onnx path")
    p.add_argument("--checkpoint", help="official or topnas checkpoint to load first")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 13)")
    p.set_defaults(func=_export)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="inspect, sample and export TopFormer variants")
    msub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = msub.add_parser("summary", help="per-stage shapes, params and MACs")
    add_variant_args(s)
    s.set_defaults(func=_summary)
    s = msub.add_parser("sample", help="write random variants of a search space as YAML files")
    s.add_argument("--space", help="search space YAML (default: the packaged default space)")
    s.add_argument("-n", "--num-samples", "--n", dest="n", type=int, default=1, help="how many variants")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=".", help="output folder")
    s.set_defaults(func=_sample)
    add_export_args(msub.add_parser("export", help=HELP, description=HELP))
    add_export_args(sub.add_parser("export", help="same as `topnas model export`", description=HELP))
