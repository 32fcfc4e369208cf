"""`topnas` command line: one root group, one module per noun (mlflow CLI style).

Each noun module exposes ``register(subparsers)`` that adds its sub-commands and sets
``func`` on the parsed namespace. Heavy imports (torch, ray, mlflow) happen inside the command
functions so `topnas --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Callable, Sequence

from topnas.errors import TopnasError

# noun -> module under topnas.platform.cli
NOUNS = ("model", "data", "train", "latency", "sweep", "pareto", "promote", "ui", "demo")


class _RootParser(argparse.ArgumentParser):
    """The ``topnas`` parser: a noun module's ``legacy_argv(tokens)`` turns an old spelling of its
    arguments into the current one before parsing, so old command lines (scripts, Ray job
    entrypoints already submitted) keep working while ``--help`` shows only the current spelling."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rewrites: dict[str, Callable[[list[str]], list[str]]] = {}

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self.rewrites:
            args = list(sys.argv[1:] if args is None else args)
            i = next((k for k, a in enumerate(args) if not a.startswith("-")), None)
            if i is not None and args[i] in self.rewrites:
                args = args[:i + 1] + self.rewrites[args[i]](args[i + 1:])
        return super().parse_known_args(args, namespace)


def build_parser() -> argparse.ArgumentParser:
    parser = _RootParser(
        prog="topnas",
        description="Ray-distributed experiment and architecture search platform for TopFormer.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging; sweep/train/demo also show Ray's, Tune's and MLflow's own output")
    sub = parser.add_subparsers(dest="noun", metavar="COMMAND", parser_class=argparse.ArgumentParser)
    for noun in NOUNS:
        try:
            module = importlib.import_module(f"topnas.platform.cli.{noun}")
        except ModuleNotFoundError as exc:  # a noun not written yet
            if exc.name == f"topnas.platform.cli.{noun}":
                continue
            raise
        module.register(sub)
        if hasattr(module, "legacy_argv"):
            parser.rewrites[noun] = module.legacy_argv
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the real command line: glibc reads its malloc settings at process start
        from topnas.platform.malloc import reexec_with_malloc_env

        reexec_with_malloc_env()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except TopnasError as exc:
        print(f"topnas {args.noun}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; everything already computed is kept on disk", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
