"""The one home of Wan2.1 image-to-video reference conditioning (what core WanImageToVideo builds): the known start
frames encoded among mid-grey ones and a mask over their latent frames. Used by every long-video segment, by the
dataset preparation and by the training's validation render."""

from __future__ import annotations

import comfy.model_management
import comfy.utils
import node_helpers
import torch

from fantasy_core.frames import latent_frames


def reference_latents(vae, start_frames: torch.Tensor, width: int, height: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``start_frames`` [N, H, W, C] in 0..1 (resized to width x height; exact when already that size) -> the
    reference latents [1, 16, T, h, w] of a ``length``-frame video and the mask [1, 1, T, h, w], 0 on the start's
    latent frames."""
    start = comfy.utils.common_upscale(start_frames[:length].movedim(-1, 1), width, height, "bilinear", "center").movedim(1, -1)
    video = torch.full((length, height, width, start.shape[-1]), 0.5, device=start.device, dtype=start.dtype)
    video[: start.shape[0]] = start
    latents = vae.encode(video[:, :, :, :3])
    mask = torch.ones((1, 1, latents.shape[2], *latents.shape[-2:]), device=start.device, dtype=start.dtype)
    mask[:, :, : latent_frames(start.shape[0])] = 0.0
    return latents, mask


def i2v_conditioning(positive, negative, vae, width: int, height: int, length: int, start_frames, clip_vision_output):
    """(positive, negative, empty latent) as core WanImageToVideo returns them for a batch of one."""
    latent = torch.zeros([1, 16, latent_frames(length), height // 8, width // 8], device=comfy.model_management.intermediate_device())
    latents, mask = reference_latents(vae, start_frames, width, height, length)
    values = {"concat_latent_image": latents, "concat_mask": mask}
    if clip_vision_output is not None:
        values["clip_vision_output"] = clip_vision_output
    return node_helpers.conditioning_set_values(positive, values), node_helpers.conditioning_set_values(negative, values), latent
