"""Every command in the README's code blocks runs through the real CLI parser with its real arguments.

A command line is taken from each fenced block (comments dropped). ``topnas ...`` lines are parsed by
``topnas.platform.cli.build_parser()`` exactly as a shell would split them; lines with optional
``[...]`` parts must be listed in :data:`EXPANSIONS` (so a README edit forces this test to follow),
and every expansion is parsed. Every repository path a command reads (``experiments/...``,
``topnas/...``, ``scripts/...``) must exist, and commands that take a config YAML are run with
``--print-config`` (the config is loaded and validated, nothing else happens). Python blocks must
import what they use.
"""
from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from topnas.platform.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# README line (comment stripped) -> the concrete command lines it stands for.
EXPANSIONS = {
    "topnas sweep experiments/sweep_demo_fixture.yaml [--address auto | ray://host:10001] [--resume NAME]": [
        "topnas sweep experiments/sweep_demo_fixture.yaml",
        "topnas sweep experiments/sweep_demo_fixture.yaml --address auto",
        "topnas sweep experiments/sweep_demo_fixture.yaml --address ray://host:10001",
        "topnas sweep experiments/sweep_demo_fixture.yaml --resume NAME",
    ],
}
READ_PREFIXES = ("experiments/", "topnas/", "scripts/", "cluster/")


def _blocks() -> list[tuple[str, list[str]]]:
    """(language, lines) of every fenced code block."""
    out, lang, lines = [], None, []
    for line in README.read_text().splitlines():
        fence = re.match(r"^\s*```(\w*)", line)
        if fence and lang is None:
            lang, lines = fence.group(1) or "text", []
        elif fence:
            out.append((lang, lines))
            lang = None
        elif lang is not None:
            lines.append(line)
    return out


def _commands() -> list[str]:
    cmds = []
    for lang, lines in _blocks():
        if lang == "python":
            continue
        for line in lines:
            line = line.split(" #", 1)[0].strip()
            if re.match(r"^(topnas|bash|python)\b", line):
                cmds.extend(EXPANSIONS.get(line, [line]))
    return cmds


COMMANDS = _commands()


def test_readme_has_commands_and_every_bracket_line_is_expanded():
    assert sum(c.startswith("topnas ") for c in COMMANDS) >= 10
    assert not [c for c in COMMANDS if "[" in c], "a README line with [...] options is missing from EXPANSIONS"


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command(command):
    argv = shlex.split(command)
    for token in argv[1:]:
        if token.startswith(READ_PREFIXES):
            assert (ROOT / token).exists(), f"{command}: {token} does not exist in the repository"
    if argv[0] == "bash":
        assert (ROOT / argv[1]).is_file()
        return
    if argv[0] == "python":
        assert argv[1] == "-m" or (ROOT / argv[1]).is_file()
        return
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = build_parser().parse_args(argv[1:])
        except SystemExit as exc:
            pytest.fail(f"{command}: argparse rejected it (exit {exc.code}): {err.getvalue().strip()}")
    assert getattr(args, "func", None), f"{command}: no sub-command selected"
    if hasattr(args, "print_config") and getattr(args, "config", None) and not getattr(args, "resume", None) \
            and not getattr(args, "address", None):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([*argv[1:], "--print-config"])
        assert rc == 0, f"{command} --print-config: {err.getvalue()}"


def test_readme_python_block_imports():
    for lang, lines in _blocks():
        if lang != "python":
            continue
        for line in lines:
            if line.startswith(("from ", "import ")):
                exec(line, {})  # noqa: S102 - the README's own import lines
