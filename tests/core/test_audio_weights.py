import os

import pytest
import torch
from tiny_models import TINY_ADAPTER, in_layout, random_adapter_state, write_checkpoint

from fantasy_core import AdapterCheckpointError, build_adapter, load_adapter_weights

LAYOUT_FILES = [
    ("nested", "fantasytalking_model.ckpt", "official nested .ckpt"),
    ("official_flat", "fantasytalking_model.safetensors", "official flat"),
    ("repack", "fantasytalking_fp16.safetensors", "fp16 repack"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_every_layout_loads_to_identical_tensors(tmp_path, dtype):
    state = random_adapter_state(dtype=dtype)
    loaded = []
    for layout, name, description in LAYOUT_FILES:
        weights = load_adapter_weights(write_checkpoint(str(tmp_path / name), in_layout(state, layout)))
        assert weights.layout.startswith(description)
        assert weights.config == TINY_ADAPTER
        assert weights.dtype == dtype
        loaded.append(weights.state_dict)
    for state_dict in loaded:
        assert state_dict.keys() == state.keys()
        for key, tensor in state.items():
            assert torch.equal(state_dict[key], tensor), key


def test_flat_layout_in_a_torch_file_is_accepted(tmp_path):
    state = random_adapter_state()
    weights = load_adapter_weights(write_checkpoint(str(tmp_path / "repack.pt"), in_layout(state, "repack")))
    assert weights.layout.startswith("fp16 repack")


def test_built_adapter_holds_the_file_weights_and_projects(tmp_path):
    state = random_adapter_state(seed=3)
    weights = load_adapter_weights(write_checkpoint(str(tmp_path / "a.ckpt"), in_layout(state, "nested")))
    adapter = build_adapter(weights)
    assert all(torch.equal(adapter.state_dict()[k], v) for k, v in state.items())
    features = torch.randn(1, 10, TINY_ADAPTER.audio_dim)
    expected = torch.nn.functional.layer_norm(
        features @ state["proj_model.proj.weight"].T,
        (TINY_ADAPTER.context_dim,),
        state["proj_model.norm.weight"],
        state["proj_model.norm.bias"],
        eps=1e-5,
    )
    torch.testing.assert_close(adapter.proj_model(features), expected)


def test_sizes_come_from_the_checkpoint(tmp_path):
    from fantasy_core import AudioAdapterConfig

    config = AudioAdapterConfig(audio_dim=16, context_dim=8, model_dim=128, num_blocks=5)
    weights = load_adapter_weights(write_checkpoint(str(tmp_path / "b.safetensors"), in_layout(random_adapter_state(config), "repack")))
    assert weights.config == config
    assert build_adapter(weights).blocks[4].k_proj.weight.shape == (128, 8)


def _expect_error(tmp_path, mapping, name, *fragments):
    path = write_checkpoint(str(tmp_path / name), mapping)
    with pytest.raises(AdapterCheckpointError) as error:
        load_adapter_weights(path)
    message = str(error.value)
    assert name in message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("layout, name, description", LAYOUT_FILES)
def test_missing_key_is_named(tmp_path, layout, name, description):
    mapping = in_layout(random_adapter_state(), layout)
    if layout == "nested":
        del mapping["audio_processor"]["blocks.1.cross_attn.processor.v_proj.weight"]
        key = "audio_processor.blocks.1.cross_attn.processor.v_proj.weight"
    elif layout == "official_flat":
        key = "audio_processor.blocks.1.cross_attn.processor.v_proj.weight"
        del mapping[key]
    else:
        key = "blocks.1.cross_attn.v_proj.weight"
        del mapping[key]
    _expect_error(tmp_path, mapping, name, description, "lacks its v_proj", key)


@pytest.mark.parametrize("layout, name, description", LAYOUT_FILES)
def test_missing_projection_key_is_named(tmp_path, layout, name, description):
    mapping = in_layout(random_adapter_state(), layout)
    if layout == "nested":
        del mapping["proj_model"]["norm.bias"]
    else:
        del mapping["proj_model.norm.bias"]
    _expect_error(tmp_path, mapping, name, description, "missing", "proj_model.norm.bias")


@pytest.mark.parametrize("layout, name, description", LAYOUT_FILES)
def test_extra_key_is_named(tmp_path, layout, name, description):
    mapping = in_layout(random_adapter_state(), layout)
    extra = "blocks.0.cross_attn.processor.k_proj.bias"
    if layout == "nested":
        mapping["audio_processor"][extra] = torch.zeros(3)
        extra = "audio_processor." + extra
    else:
        extra = {"official_flat": "audio_processor." + extra, "repack": "blocks.0.cross_attn.k_proj.bias"}[layout]
        mapping[extra] = torch.zeros(3)
    _expect_error(tmp_path, mapping, name, description, "a key this layout does not have", extra)


def test_wrong_shape_is_named(tmp_path):
    mapping = in_layout(random_adapter_state(), "repack")
    mapping["blocks.1.cross_attn.k_proj.weight"] = torch.zeros(128, TINY_ADAPTER.context_dim)
    _expect_error(
        tmp_path, mapping, "x.safetensors", "has shape [128, 512] while block 0 has [256, 512]", "blocks.1.cross_attn.k_proj.weight"
    )


def test_projection_width_mismatch_is_named(tmp_path):
    mapping = in_layout(random_adapter_state(), "nested")
    mapping["proj_model"]["norm.weight"] = torch.ones(7)
    _expect_error(tmp_path, mapping, "x.ckpt", "proj_model.norm.weight", "expected [512]")


def test_non_contiguous_blocks_are_named(tmp_path):
    from fantasy_core import AudioAdapterConfig

    state = random_adapter_state(AudioAdapterConfig(32, 24, 256, 4))
    for name in ("k_proj", "v_proj"):
        del state[f"blocks.2.{name}.weight"]
    _expect_error(
        tmp_path,
        in_layout(state, "official_flat"),
        "x.safetensors",
        "not contiguous",
        "block 2 is missing",
        "audio_processor.blocks.3.cross_attn.processor.k_proj.weight",
    )


def test_wrong_top_level_layout_is_named(tmp_path):
    nested = in_layout(random_adapter_state(), "nested")
    nested["image_proj"] = {"w": torch.zeros(1)}
    _expect_error(tmp_path, nested, "x.ckpt", "official nested .ckpt", "expected exactly ['proj_model', 'audio_processor']", "image_proj")
    wrapped = {"state_dict": in_layout(random_adapter_state(), "nested")}
    _expect_error(tmp_path, wrapped, "y.ckpt", "top level holds ['state_dict']", "state_dict")


def test_a_wan_model_file_is_not_an_adapter(tmp_path):
    wan_like = {"patch_embedding.weight": torch.zeros(2, 2), "blocks.0.self_attn.q.weight": torch.zeros(2, 2)}
    _expect_error(tmp_path, wan_like, "wan2.1_i2v.safetensors", "is not a FantasyTalking adapter", "blocks.0.self_attn.q.weight")


def test_integer_tensors_are_rejected(tmp_path):
    mapping = in_layout(random_adapter_state(), "repack")
    mapping["proj_model.norm.bias"] = torch.zeros(24, dtype=torch.int64)
    _expect_error(tmp_path, mapping, "x.safetensors", "not a float tensor", "proj_model.norm.bias")


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_code_is_never_executed(tmp_path):
    path = str(tmp_path / "evil.ckpt")
    torch.save({"proj_model": {"proj.weight": Payload()}, "audio_processor": {}}, path)
    with pytest.raises(AdapterCheckpointError, match="never executed"):
        load_adapter_weights(path)


def test_corrupt_and_truncated_files_are_reported(tmp_path):
    good = write_checkpoint(str(tmp_path / "good.safetensors"), in_layout(random_adapter_state(), "repack"))
    data = open(good, "rb").read()
    for name, content in (("cut.safetensors", data[: len(data) // 2]), ("cut.ckpt", b"PK\x03\x04garbage")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(AdapterCheckpointError, match=f"'{name}' could not be read.*download it again"):
            load_adapter_weights(str(tmp_path / name))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(AdapterCheckpointError, match="not found: .*nothing.ckpt"):
        load_adapter_weights(str(tmp_path / "nothing.ckpt"))


@pytest.mark.parametrize(
    "layout, name, first_bad_key",
    [
        ("nested", "nan.ckpt", "audio_processor.blocks.1.cross_attn.processor.k_proj.weight"),
        ("repack", "nan.safetensors", "blocks.1.cross_attn.k_proj.weight"),
    ],
)
def test_non_finite_weights_are_rejected_at_load_naming_the_file_and_first_bad_key(tmp_path, layout, name, first_bad_key):
    state = random_adapter_state(dtype=torch.float16)
    state["blocks.1.k_proj.weight"][3, 2] = float("nan")
    state["blocks.1.v_proj.weight"][0, 0] = float("inf")
    path = write_checkpoint(str(tmp_path / name), in_layout(state, layout))
    with pytest.raises(AdapterCheckpointError, match=f"'{name}'.*NaN or infinite.*first offending key: '{first_bad_key}'.*export it again"):
        load_adapter_weights(path)
