"""Options shared by several commands, defined once (mlflow/utils/cli_args.py style)."""
from __future__ import annotations

import argparse


def add_config_options(p: argparse.ArgumentParser, config_help: str, example: str) -> None:
    """Positional YAML, repeatable dotted ``--set`` overrides and ``--print-config``."""
    p.add_argument("config", nargs="?", help=config_help)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"dotted override, value parsed as YAML (repeatable), e.g. {example}")
    p.add_argument("--print-config", action="store_true", help="validate, print the resolved config and exit")


def add_verbose_option(p: argparse.ArgumentParser) -> None:
    """``-v/--verbose`` on a command that runs Ray (also accepted before the command: ``topnas -v sweep``)."""
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show Ray's, Tune's and MLflow's own output here instead of the compact live view "
                        "(which keeps them in a log file under the run folder)")
