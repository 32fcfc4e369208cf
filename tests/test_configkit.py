"""The config toolkit: YAML composition, --set overrides, typed sections and paths."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from topnas.configkit import (
    Section,
    apply_overrides,
    compose_yaml,
    load_yaml,
    parse_override,
    resolve_path,
    set_dotted,
)
from topnas.errors import ConfigError


@dataclass(frozen=True)
class Inner(Section):
    size: tuple[int, int] = (8, 8)
    scale: float = 1.0
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer(Section):
    name: str  # required
    count: int = 1
    enabled: bool = False
    tags: tuple[str, ...] = ()
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError("count", self.count, "an int >= 1")


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


# ----------------------------------------------------------------------------- composition
def test_bases_merge_in_order_relative_to_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "base" / "root.yaml", {"inner": {"size": [1, 2], "scale": 3.0}, "tags": ["x", "y"]})
    _write(tmp_path / "base" / "mid.yaml", {"_base_": "root.yaml", "inner": {"scale": 4.0}, "count": 2})
    child = _write(tmp_path / "exp" / "child.yaml", {"_base_": ["../base/mid.yaml"], "tags": ["z"], "name": "c"})
    raw = compose_yaml(child)
    assert raw == {"inner": {"size": [1, 2], "scale": 4.0}, "tags": ["z"], "count": 2, "name": "c"}
    cfg = Outer.from_dict(raw)
    assert cfg.inner == Inner(size=(1, 2), scale=4.0) and cfg.tags == ("z",) and cfg.count == 2


def test_base_errors_name_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    _write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle a.yaml -> b.yaml -> a.yaml"):
        compose_yaml(tmp_path / "a.yaml")
    bad = _write(tmp_path / "bad.yaml", {"_base_": {"x": 1}})
    with pytest.raises(ConfigError) as info:
        compose_yaml(bad)
    assert info.value.field == "bad.yaml:_base_"
    missing = _write(tmp_path / "m.yaml", {"_base_": ["nope.yaml"]})
    with pytest.raises(ConfigError, match="nope.yaml"):
        compose_yaml(missing, what="sweep config")


# ----------------------------------------------------------------------------- overrides
@pytest.mark.parametrize("text, key, value", [
    ("count=3", "count", 3),
    ("inner.scale=2.5", "inner.scale", 2.5),
    ("enabled=true", "enabled", True),
    ("tags=[a, b]", "tags", ["a", "b"]),
    ("extra={k: {j: 1}}", "extra", {"k": {"j": 1}}),
    ("maybe=null", "maybe", None),
    ("maybe=", "maybe", None),
    ("name=[unclosed", "name", "[unclosed"),  # not valid YAML: kept as the string
])
def test_override_values_are_parsed_as_yaml(text: str, key: str, value: Any) -> None:
    assert parse_override(text) == (key, value)


def test_overrides_coerce_into_the_typed_fields(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", {"name": "c", "inner": {"mode": "b"}})
    raw = load_yaml(path, ["count=3", "inner.scale=1e-3", "inner.size=[4, 5]", "enabled=true", "tags=[p, q]",
                           "maybe.scale=2", "extra.deep.k=1"])
    cfg = Outer.from_dict(raw)
    assert cfg == Outer(name="c", count=3, enabled=True, tags=("p", "q"),
                        inner=Inner(size=(4, 5), scale=1e-3, mode="b"), maybe=Inner(scale=2.0),
                        extra={"deep": {"k": 1}})
    assert isinstance(cfg.inner.scale, float) and isinstance(cfg.maybe.scale, float)
    assert apply_overrides({"a": 1}, {"b.c": 2}) == {"a": 1, "b": {"c": 2}}


def test_an_override_through_a_scalar_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        set_dotted({"count": 3}, "count.x", 1)
    assert info.value.field == "count" and "cannot set count.x" in str(info.value)
    with pytest.raises(ConfigError, match="--set"):
        parse_override("a..b=1")


# ----------------------------------------------------------------------------- validation by field
@pytest.mark.parametrize("data, field_name, allowed", [
    ({"name": "c", "bogus": 1}, "bogus", None),
    ({"name": "c", "inner": {"sise": [1, 1]}}, "inner.sise", ["mode", "scale", "size"]),
    ({"name": "c", "maybe": {"oops": 1}}, "maybe.oops", ["mode", "scale", "size"]),
    ({"name": "c", "count": True}, "count", "an integer"),
    ({"name": "c", "count": 1.5}, "count", "an integer"),
    ({"name": "c", "enabled": "yes"}, "enabled", "true or false"),
    ({"name": "c", "inner": {"scale": "fast"}}, "inner.scale", "a number"),
    ({"name": "c", "inner": {"size": [1]}}, "inner.size", "[int, int]"),
    ({"name": "c", "inner": {"size": [1, "x"]}}, "inner.size[1]", "an integer"),
    ({"name": "c", "inner": {"mode": "c"}}, "inner.mode", ["a", "b"]),
    ({"name": "c", "inner": 3}, "inner", None),
    ({"name": "c", "count": 0}, "count", "an int >= 1"),  # __post_init__, named without the prefix
    ({"count": 2}, "name", "string"),  # a field without a default is required
])
def test_bad_values_name_the_dotted_field(data: dict, field_name: str, allowed: Any) -> None:
    with pytest.raises(ConfigError) as info:
        Outer.from_dict(data)
    assert info.value.field == field_name, str(info.value)
    if allowed is not None:
        assert info.value.allowed == allowed


def test_unknown_keys_list_every_allowed_key() -> None:
    with pytest.raises(ConfigError) as info:
        Outer.from_dict({"name": "c", "inner": {"bogus_key": 1}}, "top")
    assert info.value.field == "top.inner.bogus_key"
    assert info.value.allowed == ["mode", "scale", "size"]
    assert "top.inner.bogus_key" in str(info.value) and "['mode', 'scale', 'size']" in str(info.value)


def test_a_new_field_is_validated_without_extra_code() -> None:
    """Adding a field to a section is all it takes: its type is checked and it is no longer unknown."""
    with pytest.raises(ConfigError, match="limit"):
        Inner.from_dict({"limit": 3})  # not a field yet
    Extended = dataclasses.make_dataclass("Extended", [("limit", int, dataclasses.field(default=1))],
                                          bases=(Inner,), frozen=True)
    assert Extended.from_dict({"limit": 3, "scale": 2}).limit == 3
    with pytest.raises(ConfigError) as info:
        Extended.from_dict({"limit": "3"}, "outer.inner")
    assert info.value.field == "outer.inner.limit" and info.value.allowed == "an integer"
    assert Extended.from_dict({"limit": 3}).to_dict() == {"size": [8, 8], "scale": 1.0, "mode": "a", "limit": 3}


def test_round_trip_and_no_shared_state() -> None:
    extra = {"k": [1, 2]}
    cfg = Outer.from_dict({"name": "c", "tags": ["a"], "extra": extra, "maybe": {"size": [2, 3]}})
    extra["k"].append(3)
    assert cfg.extra == {"k": [1, 2]}  # the frozen config does not share the caller's lists
    assert Outer.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg


def test_a_post_init_hint_survives_the_prefix() -> None:
    @dataclass(frozen=True)
    class Hinted(Section):
        x: int = 0

        def __post_init__(self) -> None:
            if self.x:
                raise ConfigError("x", self.x, [0], hint="must stay zero")

    with pytest.raises(ConfigError) as info:
        Hinted.from_dict({"x": 1}, "sec")
    assert info.value.field == "sec.x" and info.value.hint == "must stay zero" and "must stay zero" in str(info.value)


# ----------------------------------------------------------------------------- paths
def test_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOPNAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SOME_DIR", "/opt/x")
    assert resolve_path("a/b") == str(tmp_path / "a" / "b")
    assert resolve_path("$SOME_DIR/f") == "/opt/x/f"
    assert resolve_path("~/f") == str(Path.home() / "f")
    assert resolve_path("{runs}/sweeps").endswith("/sweeps") and resolve_path("{runs}/s").startswith(str(tmp_path))
    assert resolve_path("../t.csv", relative_to=tmp_path / "exp") == str(tmp_path / "t.csv")
    assert resolve_path("/abs/p", relative_to=tmp_path) == "/abs/p"
    assert resolve_path(None) is None
