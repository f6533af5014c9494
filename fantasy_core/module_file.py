"""One loader for every FantasyTalking weight file: what a file holds is recognised, not declared by the user.

* The released audio adapter, in any of its published layouts (``audio.weights``): audio only.
* The pack's own format, written by the trainer: a ``.safetensors`` file holding one or more modules, each under its
  own key prefix, with the architecture in the metadata::

      metadata  fantasytalking.format   = "1"
                fantasytalking.modules  = '["audio", "identity", "motion"]'   (JSON list, any non-empty subset)
                fantasytalking.<module> = '{...}'                         (JSON architecture of that module)
                fantasytalking.motion.calibration = '{...}'               (motion: percentiles of ω, see motion.intensity)
      tensors   audio.proj_model.{proj.weight,norm.weight,norm.bias}
                audio.blocks.{i}.cross_attn.{k_proj,v_proj}.weight      (the fp16-repack names)
                identity.<IdentityModule state-dict key>                (see identity.model)
                motion.<MotionNetwork state-dict key>                   (see motion.model)

Loading is strict: every key a declared module needs, nothing else, shapes as the architecture says, finite values.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .audio.weights import AdapterWeights, parse_adapter_state, read_checkpoint_file
from .identity.model import IdentityConfig
from .identity.weights import CONFIG_KEY as IDENTITY_CONFIG_KEY
from .identity.weights import IdentityWeights, identity_config_from_metadata, parse_identity_state
from .motion.intensity import MotionCalibration
from .motion.model import MotionConfig
from .motion.weights import CALIBRATION_KEY, MotionWeights, parse_motion_state
from .motion.weights import CONFIG_KEY as MOTION_CONFIG_KEY
from .weights import CheckpointError, read_weights_file

FORMAT_KEY = "fantasytalking.format"
FORMAT_VERSION = "1"
MODULES_KEY = "fantasytalking.modules"
MODULES = ("audio", "identity", "motion")  # the order modules are listed and reported in


@dataclass(frozen=True)
class FantasyTalkingWeights:
    """What one file holds: each module's validated weights, or None where the file has none."""

    path: str
    audio: AdapterWeights | None = None
    identity: IdentityWeights | None = None
    motion: MotionWeights | None = None

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(name for name in MODULES if getattr(self, name) is not None)


def _safetensors_metadata(path: str) -> dict[str, str]:
    try:
        with safe_open(path, framework="pt") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"'{os.path.basename(path)}' could not be read as a safetensors file ({type(error).__name__}: {error}). "
            "The file is corrupt or incomplete: download or export it again."
        ) from error


def _fail(path: str, problem: str) -> None:
    raise CheckpointError(f"FantasyTalking file '{os.path.basename(path)}': {problem}")


def _declared_modules(metadata: dict[str, str], path: str) -> list[str]:
    version = metadata.get(FORMAT_KEY)
    if version != FORMAT_VERSION:
        _fail(
            path,
            f"it is in FantasyTalking file format version {version!r}, but this pack reads version "
            f"{FORMAT_VERSION!r}. Update the FantasyTalking nodes (ComfyUI Manager → Update).",
        )
    try:
        declared = json.loads(metadata.get(MODULES_KEY, "null"))
    except json.JSONDecodeError:
        declared = None
    if not isinstance(declared, list) or not declared or not all(isinstance(name, str) for name in declared):
        _fail(
            path,
            f"its metadata '{MODULES_KEY}' must be a non-empty JSON list of module names, found "
            f"{metadata.get(MODULES_KEY)!r}. Export the file again with the FantasyTalking trainer.",
        )
    unknown = [name for name in declared if name not in MODULES]
    if unknown or len(set(declared)) != len(declared):
        _fail(
            path,
            f"it declares the modules {declared}; this version of the pack knows {list(MODULES)} (each once). "
            "If the file is newer than the pack, update the FantasyTalking nodes.",
        )
    return declared


def _split_by_module(state: dict[str, torch.Tensor], declared: list[str], path: str) -> dict[str, dict[str, torch.Tensor]]:
    parts: dict[str, dict[str, torch.Tensor]] = {name: {} for name in declared}
    for key, value in state.items():
        prefix, _, rest = key.partition(".")
        if prefix not in parts or not rest:
            _fail(
                path,
                f"the key '{key}' belongs to none of the declared modules {declared}. Export the file again "
                "with the FantasyTalking trainer.",
            )
        parts[prefix][rest] = value
    for name, part in parts.items():
        if not part:
            _fail(
                path,
                f"the metadata declares a '{name}' module but the file holds none of its weights. Export the "
                "file again with the FantasyTalking trainer.",
            )
    return parts


def parse_module_file(state: dict[str, torch.Tensor], metadata: dict[str, str], path: str) -> FantasyTalkingWeights:
    declared = _declared_modules(metadata, path)
    parts = _split_by_module(state, declared, path)
    audio = parse_adapter_state(parts["audio"], path) if "audio" in parts else None
    identity = None
    if "identity" in parts:
        config = identity_config_from_metadata(metadata, path)
        identity = parse_identity_state(parts["identity"], config, path)
    motion = parse_motion_state(parts["motion"], metadata, path) if "motion" in parts else None
    return FantasyTalkingWeights(path, audio=audio, identity=identity, motion=motion)


def load_fantasytalking_file(path: str) -> FantasyTalkingWeights:
    """Whatever FantasyTalking modules the file holds, validated. Never executes pickled code."""
    if os.path.isfile(path) and path.lower().endswith((".safetensors", ".sft")):
        metadata = _safetensors_metadata(path)
        if FORMAT_KEY in metadata:
            return parse_module_file(read_weights_file(path), metadata, path)
        state = read_weights_file(path)
        if any(str(key).startswith(tuple(f"{name}." for name in MODULES)) for key in state):
            _fail(
                path,
                "it holds FantasyTalking module weights but no 'fantasytalking.format' metadata, so its "
                "architecture is unknown. Save it with the FantasyTalking trainer (or "
                "fantasy_core.module_file.save_fantasytalking_file), which records the metadata.",
            )
        return FantasyTalkingWeights(path, audio=parse_adapter_state(state, path))
    return FantasyTalkingWeights(path, audio=parse_adapter_state(read_checkpoint_file(path), path))


def _audio_file_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Canonical ``AudioAdapter`` keys -> the fp16-repack names the file format uses."""
    out = {}
    for key, value in state.items():
        if key.startswith("blocks."):
            _, index, name, leaf = key.split(".")
            key = f"blocks.{index}.cross_attn.{name}.{leaf}"
        out[key] = value
    return out


def save_fantasytalking_file(
    path: str,
    audio: dict[str, torch.Tensor] | None = None,
    identity: tuple[dict[str, torch.Tensor], IdentityConfig] | None = None,
    motion: tuple[dict[str, torch.Tensor], MotionConfig, MotionCalibration] | None = None,
    metadata: dict[str, str] | None = None,
) -> str:
    """Write modules in the pack's format. ``audio``: an ``AudioAdapter`` state dict; ``identity``: an
    ``IdentityModule`` state dict with its config; ``motion``: a ``MotionNetwork`` state dict with its config and the
    calibration its ω were measured with. ``metadata``: extra string entries (e.g. training provenance)."""
    tensors: dict[str, torch.Tensor] = {}
    info = {FORMAT_KEY: FORMAT_VERSION, **(metadata or {})}
    declared = []
    if audio is not None:
        declared.append("audio")
        tensors.update({f"audio.{key}": value for key, value in _audio_file_keys(audio).items()})
    if identity is not None:
        state, config = identity
        declared.append("identity")
        info[IDENTITY_CONFIG_KEY] = json.dumps(asdict(config), sort_keys=True)
        tensors.update({f"identity.{key}": value for key, value in state.items()})
    if motion is not None:
        state, config, calibration = motion
        declared.append("motion")
        info[MOTION_CONFIG_KEY] = json.dumps(asdict(config), sort_keys=True)
        info[CALIBRATION_KEY] = json.dumps(calibration.to_json(), sort_keys=True)
        tensors.update({f"motion.{key}": value for key, value in state.items()})
    if not declared:
        raise ValueError("save_fantasytalking_file: give at least one module (audio, identity, motion).")
    info[MODULES_KEY] = json.dumps(declared)
    save_file({key: value.detach().contiguous() for key, value in tensors.items()}, path, metadata=info)
    parse_module_file(load_file(path), info, path)  # what is written must load
    return path
