"""Scoped environment variables come back exactly as they were (set, unset, or overridden)."""
from __future__ import annotations

import os

import pytest

from topnas.platform.envvars import env_default, scoped_environ


def test_scoped_environ_restores_set_and_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPNAS_T_SET", "before")
    monkeypatch.delenv("TOPNAS_T_UNSET", raising=False)
    with scoped_environ(TOPNAS_T_SET="during", TOPNAS_T_UNSET="new"):
        assert os.environ["TOPNAS_T_SET"] == "during"
        assert os.environ["TOPNAS_T_UNSET"] == "new"
    assert os.environ["TOPNAS_T_SET"] == "before"
    assert "TOPNAS_T_UNSET" not in os.environ


def test_scoped_environ_restores_after_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOPNAS_T_UNSET", raising=False)
    with pytest.raises(RuntimeError), scoped_environ(TOPNAS_T_UNSET="x"):
        raise RuntimeError("boom")
    assert "TOPNAS_T_UNSET" not in os.environ


def test_env_default_keeps_the_users_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPNAS_T_USER", "mine")
    monkeypatch.delenv("TOPNAS_T_DEFAULT", raising=False)
    with env_default("TOPNAS_T_USER", "ours"), env_default("TOPNAS_T_DEFAULT", "ours"):
        assert os.environ["TOPNAS_T_USER"] == "mine"
        assert os.environ["TOPNAS_T_DEFAULT"] == "ours"
    assert os.environ["TOPNAS_T_USER"] == "mine"
    assert "TOPNAS_T_DEFAULT" not in os.environ
