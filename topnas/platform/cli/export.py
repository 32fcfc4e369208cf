"""`topnas model export` (also `topnas export`, its first spelling): ONNX in the official latency
protocol (stride-8 logits, BN folded)."""
from __future__ import annotations

import argparse

from topnas.platform.cli.model import add_variant_args, resolve_variant


def _export(args: argparse.Namespace) -> int:
    from topnas.topformer.checkpoint import load_checkpoint
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
    add_export_args(sub.add_parser("export", help="same as `topnas model export`", description=HELP))
