"""Distributed TopFormer training on Ray Train with the official ADE20K recipe.

Public API (what ``topnas train`` and the sweep use)::

    cfg = load_config("experiments/topformer_tiny_512x512_160k_ade20k.yaml", ["scaling.num_workers=2"])
    result = run_training(cfg, run_name=None, resume="auto", callbacks=(), parent_run_id=None)

Modules: ``train_config`` (typed YAML config, ``_base_`` + ``--set``), ``schedule`` (poly + warm-up),
``optim`` (AdamW, mmcv custom keys), ``loss`` (mmseg 0.19 CE), ``sampling`` (iteration-indexed data
order), ``training_state`` (resumable state), ``loop`` (per-worker loop), ``mlflow_logger`` (MLflow, rank 0),
``trainer`` (``TorchTrainer`` wiring).
"""
from topnas.platform.train.train_config import TrainConfig, load_config
from topnas.platform.train.loop import LocalSession, TrainJob, run_loop, train_loop_per_worker
from topnas.platform.train.loss import seg_cross_entropy
from topnas.platform.train.optim import build_optimizer, build_param_groups
from topnas.platform.train.schedule import apply_lr, lr_at
from topnas.platform.train.trainer import TrainingFailed, TrainResult, check_ready, run_training

__all__ = [
    "LocalSession",
    "TrainConfig",
    "TrainJob",
    "TrainResult",
    "TrainingFailed",
    "apply_lr",
    "build_optimizer",
    "build_param_groups",
    "check_ready",
    "load_config",
    "lr_at",
    "run_loop",
    "run_training",
    "seg_cross_entropy",
    "train_loop_per_worker",
]
