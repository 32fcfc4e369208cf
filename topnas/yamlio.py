"""Reading YAML files users edit, with errors that name the file and what was expected."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from topnas.errors import ConfigError

__all__ = ["read_yaml_mapping"]


def read_yaml_mapping(path: str | os.PathLike[str], what: str = "config") -> dict[str, Any]:
    """The top-level mapping of a YAML file ({} for an empty file); ConfigError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(what, str(path), "an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(what, str(path), "valid YAML", hint=str(exc).replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(what, str(path), "a YAML mapping at the top level")
    return data
