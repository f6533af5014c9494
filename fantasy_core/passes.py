"""What one sampling pass hears and sees. Each pass's conditioning carries its own ``PassSettings``, so the choice
travels with the data rather than with a pass's position, whose meaning differs from guider to guider.

A scale of 0 turns a modality off for that pass: the pass then runs exactly as the model without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class PassSettings:
    audio_scale: float = 0.0  # strength of the audio attention (official audio_scale, 1.0); 0 = the pass is silent

    def __post_init__(self):
        if not math.isfinite(self.audio_scale):
            raise ValueError(f"audio_scale must be a finite number, got {self.audio_scale}.")

    def with_audio(self, audio_scale: float) -> PassSettings:
        return replace(self, audio_scale=float(audio_scale))


def audio_scales(rows: Sequence[PassSettings], device=None) -> torch.Tensor:
    """One audio scale per batch row, in fp32 (the scale is applied in the model's dtype, as officially)."""
    return torch.tensor([row.audio_scale for row in rows], dtype=torch.float32, device=device)
