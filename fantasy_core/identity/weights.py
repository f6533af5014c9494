"""Reading the identity module's weights strictly: the architecture comes from the file's metadata
(``IdentityConfig`` as JSON), and every tensor must be exactly what that architecture needs.

The file format that carries them (alone or beside the audio adapter and the motion module) is
``fantasy_core.module_file``; here the keys are already stripped of their ``identity.`` prefix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..dit.layers import CastingOps
from ..weights import (
    CheckpointError,
    build_module,
    check_module_state,
    config_from_metadata,
)
from .model import IdentityConfig, IdentityModule

CONFIG_KEY = "fantasytalking.identity"
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


def identity_config_from_metadata(metadata: dict[str, str], path: str) -> IdentityConfig:
    return config_from_metadata(IdentityConfig, metadata, CONFIG_KEY, "identity architecture", lambda problem: _fail(path, problem))


def parse_identity_state(state: dict[str, torch.Tensor], config: IdentityConfig, path: str) -> IdentityWeights:
    check_module_state(state, IdentityModule, config, lambda problem, key, advice=RETRAIN: _fail(path, problem, key, advice))
    return IdentityWeights(dict(state), config, path)


def build_identity_module(weights: IdentityWeights, operations=CastingOps, device=None) -> IdentityModule:
    """A module holding the file's tensors (no random initialisation, strict key match)."""
    return build_module(IdentityModule, weights.config, weights.state_dict, operations, device)
