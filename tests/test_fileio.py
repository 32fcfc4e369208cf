"""Atomic writes: a failing writer leaves the old file untouched and no temporary behind."""
from __future__ import annotations

from pathlib import Path

import pytest

from topnas.errors import error_line
from topnas.fileio import atomic_path, atomic_write_text, last_line


def test_atomic_write_replaces_and_creates_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "state.json"
    atomic_write_text(target, "one\n")
    atomic_write_text(target, "two\n")
    assert target.read_text() == "two\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]


def test_a_writer_that_fails_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="exporter died"):
        with atomic_path(target) as tmp:
            tmp.write_text("half of a new fi")
            raise RuntimeError("exporter died")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_last_line_and_error_line() -> None:
    assert last_line("Traceback...\n  File x\nValueError: bad\n\n") == "ValueError: bad"
    assert last_line("", empty="<none>") == "<none>"
    assert last_line("x" * 50, limit=10) == "xxxxxxx..."
    assert error_line(RuntimeError("wrapped\nKeyError: 'a'")) == "KeyError: 'a'"
    assert error_line(KeyboardInterrupt()) == "KeyboardInterrupt"
