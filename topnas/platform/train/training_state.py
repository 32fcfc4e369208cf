"""Training checkpoints: everything needed to continue at the exact iteration and learning rate.

One checkpoint is one folder (Ray Train merges the folders written by every worker)::

    model.pt              {"state_dict": backbone.*/decode_head.* weights, "meta": {...}}   (rank 0)
    optimizer.pt          {"optimizer": AdamW state incl. param groups, "scaler": GradScaler}  (rank 0)
    trainer_state.json    iteration, variant id, norm, world size, lr, metrics             (rank 0)
    config.yaml           the resolved TrainConfig                                         (rank 0)
    rng_rank<r>.pt        python / numpy / torch (/ CUDA) generator states of rank r        (every rank)

``model.pt`` is an mmcv-style checkpoint: :func:`topnas.topformer.weights.load_checkpoint` reads it.
The schedule needs no state (the lr is a function of the iteration, see :mod:`.schedule`), and the
data order and augmentations are functions of the iteration too (:mod:`.sampling`).
"""
from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from topnas.errors import ConfigError, TopnasError

if TYPE_CHECKING:
    from topnas.platform.train.train_config import TrainConfig

__all__ = [
    "CONFIG_FILE",
    "MODEL_FILE",
    "OPTIMIZER_FILE",
    "STATE_FILE",
    "ResumeState",
    "TrainCheckpointError",
    "capture_rng",
    "load_training_state",
    "restore_rng",
    "save_training_state",
]

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.json"
CONFIG_FILE = "config.yaml"
RNG_FILE = "rng_rank{rank}.pt"


class TrainCheckpointError(TopnasError):
    """A training checkpoint that cannot be resumed (missing files, another architecture)."""


@dataclass
class ResumeState:
    iteration: int
    meta: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] | None = None  # this rank's generator states; restore with restore_rng()
    # what the run reported with this checkpoint (rank 0's trainer_state.json): a run resumed at its
    # last iteration trains nothing and must still return its final evaluation
    metrics: dict[str, Any] = field(default_factory=dict)


def capture_rng() -> dict[str, Any]:
    """Generator states of this process, storable with ``torch.save`` and loadable ``weights_only``."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["key"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (or the model itself)."""
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) else model


def save_training_state(
    directory: str | os.PathLike[str],
    *,
    rank: int,
    world_size: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    iteration: int,
    cfg: TrainConfig,
    norm: str,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write this rank's part of the checkpoint of ``iteration`` (iterations done) into ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(capture_rng(), out / RNG_FILE.format(rank=rank))
    if rank != 0:
        return out
    variant = cfg.variant
    meta = {
        "iteration": iteration,
        "variant_id": variant.id,
        "variant": variant.to_dict(),
        "norm": norm,
        "world_size": world_size,
        "run_name": cfg.name,
        "torch": str(torch.__version__),
    }
    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    torch.save({"state_dict": state, "meta": meta}, out / MODEL_FILE)
    torch.save({"optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None},
               out / OPTIMIZER_FILE)
    record = {**meta, "lr": [g["lr"] for g in optimizer.param_groups], "metrics": metrics or {}}
    (out / STATE_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
    (out / CONFIG_FILE).write_text(cfg.to_yaml())
    return out


def load_training_state(
    directory: str | os.PathLike[str],
    *,
    rank: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    cfg: TrainConfig,
) -> ResumeState:
    """Restore model, optimizer and scaler from a checkpoint folder; returns the iteration and RNG states.

    The RNG states are returned, not applied: the caller restores them right before the first
    iteration, after everything that draws random numbers while setting up (DataLoader iterators).
    """
    src = Path(directory)
    missing = [f for f in (MODEL_FILE, OPTIMIZER_FILE) if not (src / f).is_file()]
    if missing:
        raise TrainCheckpointError(f"{src}: not a topnas training checkpoint (missing {missing})")
    blob = torch.load(src / MODEL_FILE, map_location="cpu", weights_only=True)
    meta = dict(blob.get("meta") or {})
    want = cfg.variant.id
    if meta.get("variant_id") != want:
        raise ConfigError("model", f"checkpoint variant {meta.get('variant_id')}", [want],
                          hint=f"{src} was trained with another architecture; use a new run name")
    unwrap(model).load_state_dict(blob["state_dict"])
    opt = torch.load(src / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(opt["optimizer"])
    if scaler is not None and opt.get("scaler") is not None:
        scaler.load_state_dict(opt["scaler"])
    rng_path = src / RNG_FILE.format(rank=rank)
    rng = torch.load(rng_path, map_location="cpu", weights_only=True) if rng_path.is_file() else None
    if rng is None:
        log.warning("%s: no RNG state for rank %d (world size changed?); reseeding", src, rank)
    metrics: dict[str, Any] = {}
    if (src / STATE_FILE).is_file():
        metrics = dict(json.loads((src / STATE_FILE).read_text()).get("metrics") or {})
    return ResumeState(iteration=int(meta["iteration"]), meta=meta, rng=rng, metrics=metrics)
