"""Reading the motion network's weights strictly: its architecture (``MotionConfig``) and calibration
(``MotionCalibration``) come from the file's metadata as JSON, and every tensor must be what that architecture needs.
The file format around it is ``fantasy_core.module_file``; here keys are already stripped of their ``motion.`` prefix.
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
    metadata_json,
)
from .intensity import CalibrationError, MotionCalibration
from .model import MotionConfig, MotionNetwork

RETRAIN = "Export the motion module again with the FantasyTalking trainer; the file may be truncated or edited."
CONFIG_KEY = "fantasytalking.motion"
CALIBRATION_KEY = "fantasytalking.motion.calibration"


class MotionCheckpointError(CheckpointError):
    """The file's motion module is unusable."""


@dataclass(frozen=True)
class MotionWeights:
    state_dict: dict[str, torch.Tensor]
    config: MotionConfig
    calibration: MotionCalibration
    path: str


def _fail(path: str, problem: str, key: str | None = None, advice: str = RETRAIN):
    where = f" (key 'motion.{key}')" if key is not None else ""
    raise MotionCheckpointError(f"FantasyTalking motion module in '{os.path.basename(path)}': {problem}{where}. {advice}")


def motion_config_from_metadata(metadata: dict[str, str], path: str) -> MotionConfig:
    return config_from_metadata(MotionConfig, metadata, CONFIG_KEY, "motion architecture", lambda problem: _fail(path, problem))


def motion_calibration_from_metadata(metadata: dict[str, str], path: str) -> MotionCalibration:
    try:
        values = metadata_json(metadata, CALIBRATION_KEY, "motion calibration", lambda problem: _fail(path, problem))
        return MotionCalibration.from_json(values, source=os.path.basename(path))
    except CalibrationError as error:
        _fail(path, f"its calibration metadata is invalid: {error}")


def parse_motion_state(state: dict[str, torch.Tensor], metadata: dict[str, str], path: str) -> MotionWeights:
    config = motion_config_from_metadata(metadata, path)
    calibration = motion_calibration_from_metadata(metadata, path)
    check_module_state(state, MotionNetwork, config, lambda problem, key, advice=RETRAIN: _fail(path, problem, key, advice))
    return MotionWeights(dict(state), config, calibration, path)


def build_motion_network(weights: MotionWeights, operations=CastingOps, device=None) -> MotionNetwork:
    """A network holding the file's tensors (no random initialisation, strict key match), with its calibration."""
    network = build_module(MotionNetwork, weights.config, weights.state_dict, operations, device)
    network.calibration = weights.calibration
    return network
