"""One loader recognises what a FantasyTalking file holds: the released adapter, an identity module, or both; strictly."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import TINY_ADAPTER, TINY_IDENTITY, in_layout, random_adapter_state, random_identity_state, write_checkpoint

from fantasy_core.module_file import FORMAT_KEY, MODULES_KEY, load_fantasytalking_file, save_fantasytalking_file
from fantasy_core.weights import CheckpointError


@pytest.fixture(scope="module")
def states():
    return {"audio": random_adapter_state(TINY_ADAPTER, seed=2), "identity": random_identity_state(TINY_IDENTITY, seed=3)}


def rewrite(path, tmp_path, change_tensors=None, change_metadata=None, name="edited.safetensors"):
    """The same file with its tensors and/or metadata edited, to make each kind of damage."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
    tensors = load_file(str(path))
    if change_tensors:
        change_tensors(tensors)
    if change_metadata:
        change_metadata(metadata)
    out = tmp_path / name
    save_file(tensors, str(out), metadata=metadata)
    return str(out)


def test_released_adapter_layouts_load_as_audio_only(tmp_path, states):
    for layout, name in (("nested", "a.ckpt"), ("repack", "b.safetensors"), ("official_flat", "c.safetensors")):
        weights = load_fantasytalking_file(write_checkpoint(str(tmp_path / name), in_layout(states["audio"], layout)))
        assert weights.modules == ("audio",)
        for key, value in states["audio"].items():
            assert torch.equal(weights.audio.state_dict[key], value)


def test_identity_file_round_trips_with_its_architecture(tmp_path, states):
    path = save_fantasytalking_file(str(tmp_path / "identity.safetensors"), identity=(states["identity"], TINY_IDENTITY))
    weights = load_fantasytalking_file(path)
    assert weights.modules == ("identity",) and weights.audio is None
    assert weights.identity.config == TINY_IDENTITY
    for key, value in states["identity"].items():
        assert torch.equal(weights.identity.state_dict[key], value), key


def test_combined_file_holds_both_and_uses_the_published_audio_names(tmp_path, states):
    path = save_fantasytalking_file(
        str(tmp_path / "both.safetensors"),
        audio=states["audio"],
        identity=(states["identity"], TINY_IDENTITY),
        metadata={"fantasytalking.trained_steps": "100"},
    )
    raw = load_file(path)
    assert "audio.blocks.1.cross_attn.v_proj.weight" in raw and "identity.blocks.1.v_proj.weight" in raw
    weights = load_fantasytalking_file(path)
    assert weights.modules == ("audio", "identity")
    assert weights.audio.config == TINY_ADAPTER
    assert torch.equal(weights.audio.state_dict["blocks.1.v_proj.weight"], states["audio"]["blocks.1.v_proj.weight"])


def test_module_weights_without_the_metadata_are_rejected(tmp_path, states):
    path = tmp_path / "bare.safetensors"
    save_file({f"identity.{k}": v for k, v in states["identity"].items()}, str(path))
    with pytest.raises(CheckpointError, match="'bare.safetensors'.*no 'fantasytalking.format' metadata"):
        load_fantasytalking_file(str(path))


def test_truncated_file_is_reported_as_corrupt(tmp_path, states):
    path = save_fantasytalking_file(str(tmp_path / "full.safetensors"), identity=(states["identity"], TINY_IDENTITY))
    data = open(path, "rb").read()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="'cut.safetensors' could not be read.*corrupt or incomplete"):
        load_fantasytalking_file(str(tmp_path / "cut.safetensors"))


def set_config(**changes):
    def change(metadata):
        config = json.loads(metadata["fantasytalking.identity"])
        config.update(changes)
        metadata["fantasytalking.identity"] = json.dumps(config)

    return change


@pytest.mark.parametrize(
    "damage, message",
    [
        (dict(change_metadata=set_config(width=64)), r"shape \[4, 32\].*needs \[4, 64\].*'identity.qformer.queries'"),
        (
            dict(change_metadata=set_config(num_blocks=3)),
            r"2 weight\(s\) its architecture needs are missing.*'identity.blocks.2.k_proj.weight'",
        ),
        (dict(change_tensors=lambda t: t.pop("identity.blocks.1.k_proj.weight")), r"missing.*'identity.blocks.1.k_proj.weight'"),
        (
            dict(change_tensors=lambda t: t.update({"identity.blocks.2.k_proj.weight": torch.zeros(256, 32)})),
            r"does not have.*'identity.blocks.2.k_proj.weight'",
        ),
        (
            dict(change_tensors=lambda t: t["identity.qformer.layers.1.ffn.fc1.weight"].__setitem__((0, 0), float("nan"))),
            r"NaN or infinite.*'identity.qformer.layers.1.ffn.fc1.weight'",
        ),
        (
            dict(change_tensors=lambda t: t.update({"motion.mlp.weight": torch.zeros(2)})),
            r"'motion.mlp.weight' belongs to none of the declared modules",
        ),
        (
            dict(change_metadata=lambda m: m.update({MODULES_KEY: '["identity", "lipsync"]'})),
            r"declares the modules \['identity', 'lipsync'\].*update",
        ),
        (dict(change_metadata=lambda m: m.update({FORMAT_KEY: "2"})), r"format version '2'.*Update the FantasyTalking nodes"),
        (dict(change_metadata=lambda m: m.update({"fantasytalking.identity": "{not json"})), r"not valid JSON"),
        (dict(change_metadata=lambda m: m.pop("fantasytalking.identity")), r"no identity architecture"),
        (
            dict(change_metadata=lambda m: m.update({"fantasytalking.identity": '{"width": 32}'})),
            r"metadata holds \['width'\], expected exactly",
        ),
        (dict(change_metadata=lambda m: m.update({MODULES_KEY: '"identity"'})), r"must be a non-empty JSON list of module names"),
        (
            dict(change_tensors=lambda t: t.update({"identity.qformer.queries": torch.zeros(4, 32, dtype=torch.int32)})),
            r"torch.int32, not a float tensor.*'identity.qformer.queries'",
        ),
    ],
)
def test_damaged_identity_files_name_the_problem(tmp_path, states, damage, message):
    path = save_fantasytalking_file(str(tmp_path / "good.safetensors"), identity=(states["identity"], TINY_IDENTITY))
    with pytest.raises(CheckpointError, match=message):
        load_fantasytalking_file(rewrite(path, tmp_path, **damage))


def test_declared_module_without_weights_is_rejected(tmp_path, states):
    path = save_fantasytalking_file(str(tmp_path / "good.safetensors"), identity=(states["identity"], TINY_IDENTITY))
    edited = rewrite(path, tmp_path, change_metadata=lambda m: m.update({MODULES_KEY: '["audio", "identity"]'}))
    with pytest.raises(CheckpointError, match="declares a 'audio' module but the file holds none of its weights"):
        load_fantasytalking_file(edited)


def test_saving_nothing_is_refused(tmp_path):
    with pytest.raises(ValueError, match="give at least one module"):
        save_fantasytalking_file(str(tmp_path / "empty.safetensors"))
