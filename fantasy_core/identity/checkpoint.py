"""Reading the identity module's weights strictly: the architecture comes from the file's metadata
(``IdentityConfig`` as JSON), and every tensor must be exactly what that architecture needs.

The file format that carries them (alone or beside the audio adapter and, later, the motion module) is
``fantasy_core.modules_file``; here the keys are already stripped of their ``identity.`` prefix.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields

import torch

from ..dit.layers import CastingOps
from ..weights import CheckpointError, all_finite
from .model import IdentityConfig, IdentityModule

RETRAIN = "Export the identity module again with the FantasyTalking trainer; the file may be truncated or edited."


class IdentityCheckpointError(CheckpointError):
    """The file's identity module is unusable."""


@dataclass(frozen=True)
class IdentityWeights:
    state_dict: dict[str, torch.Tensor]
    config: IdentityConfig
    path: str


def _fail(path: str, problem: str, key: str | None = None, advice: str = RETRAIN):
    where = f" (key 'identity.{key}')" if key is not None else ""
    raise IdentityCheckpointError(f"FantasyTalking identity module in '{os.path.basename(path)}': {problem}{where}. {advice}")


def identity_config_from_metadata(text: str | None, path: str) -> IdentityConfig:
    if text is None:
        _fail(path, "the file's metadata has no identity architecture ('fantasytalking.identity')")
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        _fail(path, f"its architecture metadata is not valid JSON ({error})")
    names = [field.name for field in fields(IdentityConfig)]
    if not isinstance(values, dict) or sorted(values) != sorted(names):
        found = sorted(values) if isinstance(values, dict) else type(values).__name__
        _fail(path, f"its architecture metadata holds {found}, expected exactly {sorted(names)}")
    try:
        return IdentityConfig(**values)
    except ValueError as error:
        _fail(path, f"its architecture metadata is invalid: {error}")


def expected_shapes(config: IdentityConfig) -> dict[str, torch.Size]:
    with torch.device("meta"):
        module = IdentityModule(config)
    return {key: value.shape for key, value in module.state_dict().items()}


def parse_identity_state(state: dict[str, torch.Tensor], config: IdentityConfig, path: str) -> IdentityWeights:
    expected = expected_shapes(config)
    missing = [key for key in expected if key not in state]
    if missing:
        _fail(path, f"{len(missing)} weight(s) its architecture needs are missing", missing[0])
    unexpected = sorted(key for key in state if key not in expected)
    if unexpected:
        _fail(path, f"it holds {len(unexpected)} weight(s) its architecture does not have", unexpected[0])
    for key, shape in expected.items():
        value = state[key]
        if not value.is_floating_point():
            _fail(path, f"the value is {value.dtype}, not a float tensor", key)
        if value.shape != shape:
            _fail(path, f"the tensor has shape {list(value.shape)}, but the metadata's architecture ({config}) needs "
                  f"{list(shape)}", key)
        if not all_finite(value):
            _fail(path, "a weight holds NaN or infinite values, which would make every video NaN", key,
                  "The file is damaged (or was saved after a diverged training run): export it again from a good checkpoint.")
    return IdentityWeights(dict(state), config, path)


def build_identity_module(weights: IdentityWeights, operations=CastingOps, device=None) -> IdentityModule:
    """A module holding the file's tensors (no random initialisation, strict key match)."""
    with torch.device("meta"):
        module = IdentityModule(weights.config, operations)
    module.load_state_dict(weights.state_dict, strict=True, assign=True)
    if device is not None:
        module.to(device=device)
    return module.eval().requires_grad_(False)
