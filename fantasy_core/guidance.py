"""FantasyTalking's classifier-free guidance (official ``WanVideoPipeline.__call__``).

Three passes per step: ``cond`` (positive prompt, audio on), ``noaudio`` (positive prompt, audio_scale 0) and
``uncond`` (negative prompt, audio_scale 0 -- audio is OFF in the negative pass)::

    out = uncond + cfg * (noaudio - uncond) + audio_cfg * (cond - noaudio)

At ``cfg == 1`` the uncond terms cancel, so two passes suffice: ``noaudio + audio_cfg * (cond - noaudio)``;
this keeps audio guidance for distilled few-step LoRAs that run at cfg 1.
"""

from __future__ import annotations

import torch


def needs_uncond_pass(cfg: float) -> bool:
    return cfg != 1.0


def combine_guidance(
    cond: torch.Tensor, noaudio: torch.Tensor, uncond: torch.Tensor | None, cfg: float, audio_cfg: float
) -> torch.Tensor:
    audio_term = audio_cfg * (cond - noaudio)
    if uncond is None:
        if needs_uncond_pass(cfg):
            raise ValueError(f"cfg = {cfg} needs the negative (uncond) pass; only cfg = 1 runs without it.")
        return noaudio + audio_term
    return uncond + cfg * (noaudio - uncond) + audio_term


def scheduled_audio_cfg(step: int, total_steps: int, audio_cfg: float, start: float = 0.0, end: float = 1.0) -> float:
    """``audio_cfg`` on steps whose progress ``step / total_steps`` lies in [start, end), else 1.

    Outside the range audio stays on, without extra guidance. start=0, end=0.1 at 30 steps covers steps 0-2.
    """
    if not 0.0 <= start <= end <= 1.0:
        raise ValueError(f"audio_cfg_start/end must satisfy 0 <= start <= end <= 1, got start={start}, end={end}.")
    if total_steps < 1 or not 0 <= step < total_steps:
        raise ValueError(f"step {step} is outside 0..{total_steps - 1}.")
    progress = step / total_steps
    return audio_cfg if start <= progress < end else 1.0
