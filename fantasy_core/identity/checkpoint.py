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
from ..weights import CheckpointError, build_module, check_module_state
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


def parse_identity_state(state: dict[str, torch.Tensor], config: IdentityConfig, path: str) -> IdentityWeights:
    check_module_state(state, IdentityModule, config, lambda problem, key, advice=RETRAIN: _fail(path, problem, key, advice))
    return IdentityWeights(dict(state), config, path)


def build_identity_module(weights: IdentityWeights, operations=CastingOps, device=None) -> IdentityModule:
    """A module holding the file's tensors (no random initialisation, strict key match)."""
    return build_module(IdentityModule, weights.config, weights.state_dict, operations, device)
