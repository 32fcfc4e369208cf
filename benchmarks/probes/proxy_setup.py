"""What every proxy probe starts from: a table's variants, and the demo proxy's config with its fixture.

The probes train table variants exactly as a sweep trial would (``SweepConfig.train_config``) on
the sweep YAML's fixture, generated under the probe's ``--work`` folder, with ``--set`` overrides
and without the sweep's fidelity tables (a probe may change what they were measured with).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence


def read_variants(path: str | Path) -> dict[str, Any]:
    """``{id: Variant}`` of a replay table's ``<stem>_variants.jsonl`` (one ``Variant.to_json()`` per line)."""
    from topnas.search_spaces.variant import Variant

    found = (Variant.from_json(ln) for ln in Path(path).read_text().splitlines() if ln.strip())
    return {v.id: v for v in found}


def proxy_config(sweep: str | Path, overrides: Sequence[str], work: str | Path,
                 fixture: Mapping[str, Any] | None = None) -> Any:
    """The sweep's config with ``overrides`` (``KEY=VALUE``), its proxy fixture written to ``<work>/fixture``.

    ``fixture``: spec keys changed for the generated fixture only (e.g. more validation images;
    images are seeded per index, so the first ones are the proxy's own).
    """
    from topnas.platform.sweep import load_sweep_config
    from topnas.platform.sweep.fidelity import NO_FIDELITY
    from topnas.platform.train.train_config import FixtureSpec, parse_override

    sets = {**NO_FIDELITY, **dict(parse_override(o) for o in overrides)}
    cfg = load_sweep_config(sweep, sets)
    if not cfg.proxy.fixture:
        return cfg
    out = Path(work).absolute() / "fixture"
    FixtureSpec.from_dict({**dict(cfg.proxy.fixture), **dict(fixture or {})}, "proxy.fixture").ensure(out)
    return load_sweep_config(sweep, {**sets, "proxy.dataset": str(out)})
