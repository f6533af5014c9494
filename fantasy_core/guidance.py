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


def official_sigmas(steps: int, shift: float = 5.0, denoise: float = 1.0) -> torch.Tensor:
    """The official flow-matching schedule (DiffSynth ``FlowMatchScheduler(shift=5, extra_one_step=True)``):
    ``sigma_k = shift*s / (1 + (shift-1)*s)`` with ``s = 1 - k/N``, k = 0..N-1, then 0. ``denoise < 1`` keeps the
    last ``steps`` of a longer schedule, as ComfyUI's schedulers do."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    if not 0.0 < denoise <= 1.0:
        raise ValueError(f"denoise must be in (0, 1], got {denoise}.")
    total = int(steps / denoise)
    s = 1.0 - torch.arange(total, dtype=torch.float64) / total
    sigmas = shift * s / (1 + (shift - 1) * s)
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])[-(steps + 1) :].float()
