"""The TopFormer model family: exact official architecture, parameterised by one config."""
from topnas.topformer.arch_config import PRESETS, BlockSpec, TopFormerConfig, make_divisible, preset_config
from topnas.topformer.model import TopFormer, TopFormerBackbone

__all__ = [
    "PRESETS",
    "BlockSpec",
    "TopFormer",
    "TopFormerBackbone",
    "TopFormerConfig",
    "make_divisible",
    "preset_config",
]
