"""Search spaces over TopFormer variants: YAML-defined, validated, Optuna-ready."""
from topnas.search_spaces.space import DEFAULT_SPACE_PATH, SearchSpace, StageSpace, default_space
from topnas.search_spaces.variant import Variant, preset_variant

__all__ = ["DEFAULT_SPACE_PATH", "SearchSpace", "StageSpace", "Variant", "default_space", "preset_variant"]
