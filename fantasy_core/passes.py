"""What one sampling pass hears and sees. Each pass's conditioning carries its own ``PassSettings``, so the choice
travels with the data rather than with a pass's position, whose meaning differs from guider to guider.

A scale of 0 turns a modality off for that pass: the pass then runs exactly as the model without it. Motion is a
level, not a scale: a pass's ``motion`` is the ω it is sampled with, None meaning the ω given to FantasyTalking Apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .motion.intensity import MotionIntensity

IDENTITY_SCALE = 0.5  # the paper's λ2


@dataclass(frozen=True)
class PassSettings:
    audio_scale: float = 0.0  # strength of the audio attention (official audio_scale, 1.0); 0 = the pass is silent
    # λ2 of the identity attention, used where an identity is applied; 0 = the pass does not see the identity.
    identity_scale: float = IDENTITY_SCALE
    # ω_l, ω_b of the motion embedding, used where a motion module is loaded; None = what FantasyTalking Apply was given.
    motion: MotionIntensity | None = None

    def __post_init__(self):
        for name in ("audio_scale", "identity_scale"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}.")

    def with_audio(self, audio_scale: float) -> PassSettings:
        return replace(self, audio_scale=float(audio_scale))

    def with_identity(self, identity_scale: float) -> PassSettings:
        return replace(self, identity_scale=float(identity_scale))

    def with_motion(self, motion: MotionIntensity) -> PassSettings:
        return replace(self, motion=motion)
