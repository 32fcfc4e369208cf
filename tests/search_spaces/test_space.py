"""Search space: presets are points, validation errors name fields, variants round-trip."""
import random

import pytest
import torch
import yaml

from topnas.errors import ConfigError
from topnas.search_spaces import SearchSpace, Variant, default_space, preset_variant
from topnas.search_spaces.space import DEFAULT_SPACE_PATH
from topnas.topformer import preset_config


def _space_dict():
    return yaml.safe_load(DEFAULT_SPACE_PATH.read_text())["search_space"]


@pytest.mark.parametrize("name", ["tiny", "small", "base"])
def test_presets_are_points_of_default_space(name):
    space = default_space()
    v = preset_variant(name)
    point = space.point_of(v)
    assert point is not None
    assert space.build(point).id == v.id
    assert space.build(point).preset == name


def test_variant_id_stable_and_roundtrips(tmp_path):
    space = default_space()
    rng = random.Random(3)
    for _ in range(10):
        v = space.sample(rng)
        assert Variant.from_yaml(v.to_yaml()).id == v.id
        assert Variant.from_json(v.to_json()) == v
        assert Variant.load(v.save(tmp_path / f"{v.id}.yaml")).id == v.id
        assert Variant.load(v.save(tmp_path / f"{v.id}.json")).id == v.id
    a, b = preset_variant("tiny"), preset_variant("tiny", input_size=(448, 448))
    assert a.id != b.id and a.id.startswith("tf-") and len(a.id) == 13
    assert preset_variant("tiny").id == a.id  # deterministic
    # norm is how it is trained, not which graph it is
    assert Variant(a.model.replace(norm="BN"), a.input_size).id == a.id


def test_tampered_id_rejected():
    d = preset_variant("tiny").to_dict()
    d["model"]["depths"] = 3
    with pytest.raises(ConfigError, match="variant.id"):
        Variant.from_dict(d)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["stages"][1].update(channels=[32, 44]), "search_space.stages[1].channels[1]"),
    (lambda d: d["transformer"].update(num_heads=[4, 16]), "search_space.transformer.num_heads"),
    (lambda d: d.update(input_size=[[128, 128]]), "search_space.transformer.c2t_stride"),
    (lambda d: d.update(colour="red"), "search_space.colour"),
    (lambda d: d["transformer"].update(depths=[0, 2]), "search_space.transformer.depths[0]"),
    (lambda d: d["transformer"].update(depths=["4"]), "search_space.transformer.depths[0]"),
    (lambda d: d["transformer"].update(c2t_stride=[3]), "search_space.transformer.c2t_stride[0]"),
    (lambda d: d["head"].update(injection_type=["concat"]), "search_space.head.injection_type[0]"),
    (lambda d: d["stages"][0].update(kernels=[4]), "search_space.stages[0].kernels[0]"),
    (lambda d: d.update(width_mult=[1.0, 1.5]), "search_space.width_mult"),
    (lambda d: d["stages"].pop(), "search_space.stages"),
])
def test_invalid_space_rejected_with_field(mutate, field):
    d = _space_dict()
    mutate(d)
    with pytest.raises(ConfigError) as err:
        SearchSpace.from_dict(d)
    assert err.value.field == field
    assert "allowed" in str(err.value)


def test_width_multiplier_space_rounds_to_multiples_of_8():
    d = _space_dict()
    for st in d["stages"]:
        st["channels"] = st["channels"][:1]
    d["width_mult"] = [0.75, 1.0, 1.33]
    space = SearchSpace.from_dict(d)
    rng = random.Random(0)
    seen = set()
    for _ in range(20):
        v = space.sample(rng)
        assert all(c % 8 == 0 for c in v.model.channels)
        seen.add(v.model.channels)
    assert (16, 24, 48, 72) in seen and (16, 32, 64, 96) in seen and (24, 40, 88, 128) in seen


@pytest.mark.parametrize("changes, field", [
    (dict(channels=[16, 32, 64, 128]), "channels[3]"),
    (dict(num_heads=20), "num_heads"),
    (dict(c2t_stride=0), "c2t_stride"),
    (dict(injection_type="muli"), "injection_type"),
    (dict(norm="GN"), "norm"),
    (dict(out_channels=[None, 128, 96, 128]), "out_channels[2]"),
    (dict(embed_out_indice=[2, 4, 4, 8]), "embed_out_indice"),
    (dict(depths=2.5), "depths"),
    (dict(head_is_dw="yes"), "head_is_dw"),
    (dict(blocks=[[3, 1, 16, 1], [3, 4, 20, 2]]), "blocks[1].out_channels"),
    (dict(blocks=[[3, 1, 16, 3]]), "blocks[0].stride"),
])
def test_invalid_model_config_rejected(changes, field):
    with pytest.raises(ConfigError) as err:
        preset_config("tiny", **changes)
    assert err.value.field == field


def test_unknown_model_key_and_token_stride_too_large():
    with pytest.raises(ConfigError, match="variant.model.heads"):
        Variant.from_dict({"preset": "tiny", "model": {"heads": 4}})
    with pytest.raises(ConfigError) as err:
        Variant.from_dict({"preset": "tiny", "input_size": [64, 64], "model": {"c2t_stride": 4}})
    assert err.value.field == "c2t_stride" and err.value.allowed == [1]
    with pytest.raises(ConfigError, match="preset"):
        Variant.from_dict({"preset": "huge"})


def test_every_sampled_variant_builds_runs_and_exports(tmp_path):
    """Property test over the default space at a reduced input size (the space is shape-agnostic)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from topnas.topformer.export import export_onnx, run_onnx

    d = _space_dict()
    d["input_size"] = [[128, 128], [160, 96]]
    d["transformer"]["c2t_stride"] = [1, 2]
    d["num_classes"] = 11
    space = SearchSpace.from_dict(d)
    exported = []

    @settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.integers(0, 2**31 - 1))
    def check(seed):
        v = space.sample(random.Random(seed))
        model = v.build(norm="BN").eval()
        x = torch.randn(1, 3, *v.input_size)
        with torch.no_grad():
            out = model(x)
        assert out.shape == (1, 11, -(-v.input_size[0] // 8), -(-v.input_size[1] // 8))
        if len(exported) < 2:  # export is ~7 s; check a couple of samples end to end
            path = export_onnx(model, tmp_path / f"{v.id}.onnx", v.input_size)
            assert abs(run_onnx(path, x) - out.numpy()).max() < 1e-4
            exported.append(v.id)

    check()
    assert len(exported) == 2
