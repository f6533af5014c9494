"""FantasyTalking's classifier-free guidance and schedule (official ``WanVideoPipeline.__call__``).

With audio guidance, three passes per step: ``cond`` (positive prompt, audio on), ``noaudio`` (positive prompt,
audio off) and ``uncond`` (negative prompt, audio off -- audio is OFF in the official negative pass)::

    out = uncond + cfg * (noaudio - uncond) + audio_cfg * (cond - noaudio)

At ``cfg == 1`` the uncond terms cancel, so two passes suffice: ``noaudio + audio_cfg * (cond - noaudio)``; this keeps
audio guidance for distilled few-step LoRAs that run at cfg 1.

Without audio guidance (the official pipeline with ``audio_cfg_scale=None``; here: steps outside the audio-guidance
range) two passes hear the audio, positive and negative: ``negative + cfg * (positive - negative)``.
"""

from __future__ import annotations

import torch

# The official negative prompt (Wan's), which the shipped workflows and the training's validation renders use.
OFFICIAL_NEGATIVE_PROMPT = (
    "人物静止不动，静止，色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，"
    "残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)


def check_audio_guidance_range(start: float, end: float) -> None:
    if not 0.0 <= start <= end <= 1.0:
        raise ValueError(f"audio_cfg_start/end must satisfy 0 <= start <= end <= 1, got start={start}, end={end}.")


def audio_guidance_active(step: int, total_steps: int, start: float = 0.0, end: float = 1.0) -> bool:
    """Whether step ``step`` of ``total_steps`` uses audio guidance: its progress ``step / total_steps`` lies in
    [start, end). start=0, end=0.1 at 30 steps covers steps 0-2."""
    check_audio_guidance_range(start, end)
    if total_steps < 1 or not 0 <= step < total_steps:
        raise ValueError(f"step {step} is outside 0..{total_steps - 1}.")
    return start <= step / total_steps < end


def step_of_sigma(sample_sigmas: torch.Tensor, sigma: float) -> int:
    """The step whose sigma interval holds ``sigma`` (multi-stage samplers evaluate between a step's sigmas)."""
    total = len(sample_sigmas) - 1
    step = int((sample_sigmas[:-1] >= sigma - 1e-6).sum()) - 1
    return min(max(step, 0), total - 1)


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
