"""`topnas data`: write the synthetic ADE20K-layout fixture; check a dataset folder."""
from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("data", help="datasets: synthetic fixture, layout/label check",
                                   description="Datasets in the ADE20K layout.")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    fx = sub.add_parser("fixture", help="write a small learnable dataset in the exact ADE20K layout")
    fx.add_argument("--out", required=True, help="folder to write DIR/ADEChallengeData2016 into")
    fx.add_argument("--classes", type=int, default=8, help="training classes incl. background (default 8)")
    fx.add_argument("--train", type=int, default=32, help="training images (default 32)")
    fx.add_argument("--val", type=int, default=8, help="validation images (default 8)")
    fx.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=(128, 160),
                    help="image size (default 128 160)")
    fx.add_argument("--seed", type=int, default=0)
    fx.add_argument("--colours", type=int, default=None, metavar="K",
                    help="colour every object from K hues at random, so only texture and shape tell the classes "
                         "apart (default: each class its own colour)")
    fx.add_argument("--force", action="store_true", help="replace a fixture written there before")
    fx.set_defaults(func=_fixture)

    ck = sub.add_parser("check", help="validate a dataset (pairs, decodability, label range); print counts")
    ck.add_argument("--root", required=True, help="folder containing ADEChallengeData2016 (or that folder)")
    ck.add_argument("--split", choices=("training", "validation", "all"), default="all")
    ck.add_argument("--num-classes", type=int, default=None,
                    help="expected class count (default: dataset.json/classes.txt, else 150)")
    ck.add_argument("--max-samples", type=int, default=None,
                    help="decode only the first N pairs of each split (default: all)")
    ck.add_argument("--quick", action="store_true", help="check layout and pairing only, decode nothing")
    ck.set_defaults(func=_check)

    parser.set_defaults(func=lambda args: _help(parser))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _fixture(args: argparse.Namespace) -> int:
    from topnas.platform.data.fixture import write_fixture

    root = write_fixture(args.out, num_classes=args.classes, train=args.train, val=args.val,
                         size=tuple(args.size), seed=args.seed, overwrite=args.force,
                         colours=args.colours)
    print(f"wrote {args.train} train + {args.val} val images, {args.classes} classes: {root}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from topnas.platform.data.ade20k import ADE20KDataset, DatasetError

    splits = ("training", "validation") if args.split == "all" else (args.split,)
    failed = False
    for split in splits:
        ds = ADE20KDataset(args.root, split, num_classes=args.num_classes)
        if split == splits[0]:
            meta = ds.info.metadata_file or "built-in ADE20K class list"
            print(f"{ds.root}: {ds.num_classes} classes ({meta}), reduce_zero_label={ds.reduce_zero_label}")
        if args.quick:
            print(f"{split}: {len(ds)} image/label pairs (not decoded: --quick)")
            continue
        report = ds.validate(max_samples=args.max_samples, raise_on_error=False)
        print(report.summary())
        failed |= not report.ok
    if failed:
        raise DatasetError(f"{args.root}: invalid samples found (listed above)")
    return 0
