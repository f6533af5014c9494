"""The modules a run trains, together: the audio adapter (always), the identity module and the motion network (as the
config asks), built for the Wan model they attach to, started from a FantasyTalking file or fresh, and saved in the
pack's one-file format that the nodes load."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from ..audio.adapter import AudioAdapter, AudioAdapterConfig, initialise_audio_adapter
from ..audio.weights import build_adapter
from ..identity.model import IdentityConfig, IdentityModule, initialise_identity_module
from ..identity.weights import build_identity_module
from ..module_file import load_fantasytalking_file, save_fantasytalking_file
from ..motion.intensity import MotionCalibration
from ..motion.model import MotionConfig, MotionNetwork, initialise_motion_network
from ..motion.weights import build_motion_network
from .config import ModulesConfig


@dataclass(frozen=True)
class WanShape:
    num_blocks: int
    model_dim: int  # block width = time-embedding width


class StartError(ValueError):
    """The modules cannot start from the given file."""


class TrainableModules(nn.Module):
    def __init__(
        self, audio: AudioAdapter, identity: IdentityModule | None, motion: MotionNetwork | None, calibration: MotionCalibration | None
    ):
        super().__init__()
        self.audio = audio
        self.identity = identity
        self.motion = motion
        self.calibration = calibration  # the dataset's, stored with the motion weights

    def save(self, path: str, metadata: dict[str, str] | None = None, state: dict[str, torch.Tensor] | None = None) -> str:
        """``state``: this object's ``state_dict`` gathered elsewhere (a distributed engine's shards made whole);
        by default the module's own tensors."""
        whole = self.state_dict() if state is None else state
        if state is not None and state.keys() != self.state_dict().keys():
            expected = set(self.state_dict())
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ValueError(f"The weights to save do not match the modules: missing {missing[:4]}, unexpected {extra[:4]}.")

        def part(prefix):
            return {key[len(prefix) :]: value.detach().float().cpu() for key, value in whole.items() if key.startswith(prefix)}

        identity = None if self.identity is None else (part("identity."), self.identity.config)
        motion = None if self.motion is None else (part("motion."), self.motion.config, self.calibration)
        return save_fantasytalking_file(path, audio=part("audio."), identity=identity, motion=motion, metadata=metadata)


def _trainable(module: nn.Module) -> nn.Module:
    return module.float().train().requires_grad_(True)


def build_trainable(
    config: ModulesConfig, wan: WanShape, audio_dim: int, face_dim: int, calibration: MotionCalibration | None, seed: int = 0
) -> tuple[TrainableModules, list[str]]:
    """The modules and a report line per module saying where it starts from."""
    start = load_fantasytalking_file(config.init) if config.init else None
    name = os.path.basename(config.init)
    report = []

    def fits(what: str, num_blocks: int, model_dim: int) -> None:
        if (num_blocks, model_dim) != (wan.num_blocks, wan.model_dim):
            raise StartError(
                f"modules.init: the {what} in '{name}' has {num_blocks} blocks of width {model_dim}, but the "
                f"Wan model has {wan.num_blocks} of width {wan.model_dim}. Start from a file made for this model."
            )

    if start is not None and start.audio is not None:
        fits("audio adapter", start.audio.config.num_blocks, start.audio.config.model_dim)
        if start.audio.config.audio_dim != audio_dim:
            raise StartError(
                f"modules.init: the audio adapter in '{name}' takes {start.audio.config.audio_dim}-wide audio "
                f"features but the dataset's are {audio_dim} wide (wav2vec2-base: 768)."
            )
        audio = build_adapter(start.audio)
        report.append(f"audio adapter: from {name}")
    else:
        audio = initialise_audio_adapter(
            AudioAdapter(AudioAdapterConfig(audio_dim, config.audio_context_dim, wan.model_dim, wan.num_blocks)), seed
        )
        report.append("audio adapter: fresh (zero keys/values)")

    identity = None
    if config.identity:
        if start is not None and start.identity is not None:
            fits("identity module", start.identity.config.num_blocks, start.identity.config.model_dim)
            identity = build_identity_module(start.identity)
            report.append(f"identity module: from {name}")
        else:
            size = config.identity_size
            identity = initialise_identity_module(
                IdentityModule(
                    IdentityConfig(
                        face_dim, size.width, size.num_queries, size.num_layers, size.num_heads, size.ffn_dim, wan.model_dim, wan.num_blocks
                    )
                ),
                seed + 1,
            )
            report.append("identity module: fresh (zero keys/values)")
        if identity.config.face_dim != face_dim:
            raise StartError(
                f"modules.init: the identity module in '{name}' takes {identity.config.face_dim}-wide ArcFace "
                f"embeddings but the dataset's are {face_dim} wide."
            )
    elif start is not None and start.identity is not None:
        report.append(f"identity module: in {name} but not trained ([modules] identity = false), so not saved")

    motion = None
    if config.motion:
        if start is not None and start.motion is not None:
            if start.motion.config.model_dim != wan.model_dim:
                raise StartError(
                    f"modules.init: the motion network in '{name}' makes {start.motion.config.model_dim}-wide "
                    f"embeddings but the Wan model's time embedding is {wan.model_dim} wide."
                )
            motion = build_motion_network(start.motion)
            report.append(f"motion network: from {name}")
        else:
            motion = initialise_motion_network(MotionNetwork(MotionConfig(config.motion_hidden_dim, wan.model_dim)), seed + 2)
            report.append("motion network: fresh (zero output layer)")
    elif start is not None and start.motion is not None:
        report.append(f"motion network: in {name} but not trained ([modules] motion = false), so not saved")

    modules = TrainableModules(_trainable(audio), identity and _trainable(identity), motion and _trainable(motion), calibration)
    return modules, report
