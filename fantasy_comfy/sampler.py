"""What the Sampler node and each long-video segment run: the official flow shift and schedule, FantasyTalking's
guidance and core's sampler."""

from __future__ import annotations

from dataclasses import dataclass

import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch

from fantasy_core.guidance import official_sigmas

from .guider import FantasyTalkingGuider

OFFICIAL_SCHEDULER = "fantasytalking"


@dataclass(frozen=True)
class SamplingSettings:
    """How to sample: the Sampler node's widgets (official defaults: 30 Euler steps, cfg 5, audio_cfg 4.5, shift 5)."""

    seed: int = 0
    steps: int = 30
    cfg: float = 5.0
    audio_cfg: float = 4.5
    sampler_name: str = "euler"
    scheduler: str = OFFICIAL_SCHEDULER
    shift: float = 5.0
    denoise: float = 1.0


def with_flow_shift(model, shift: float):
    """The model with a flow-matching sigma shift (what core ModelSamplingSD3 does)."""

    class ModelSamplingShifted(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
        pass

    sampling = ModelSamplingShifted(model.model.model_config)
    sampling.set_parameters(shift=shift, multiplier=1000)
    patched = model.clone()
    patched.add_object_patch("model_sampling", sampling)
    return patched


def sampling_sigmas(model, scheduler: str, steps: int, denoise: float, shift: float) -> torch.Tensor:
    if scheduler == OFFICIAL_SCHEDULER:
        return official_sigmas(steps, shift, denoise)
    total = int(steps / denoise)
    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, total)[-(steps + 1) :].cpu()


def sample_talking(
    model, positive, negative, latent: torch.Tensor, settings: SamplingSettings, batch_index=None, denoise_mask=None, callback=None
) -> torch.Tensor:
    """Samples ``latent`` with the official three-pass guidance; ``callback`` defaults to ComfyUI's latent preview."""
    model = with_flow_shift(model, settings.shift)
    guider = FantasyTalkingGuider(model, settings.cfg, settings.audio_cfg)
    guider.set_conds(positive, negative)
    sigmas = sampling_sigmas(model, settings.scheduler, settings.steps, settings.denoise, settings.shift)
    latent = comfy.sample.fix_empty_latent_channels(model, latent)
    noise = comfy.sample.prepare_noise(latent, settings.seed, batch_index)
    if callback is None:
        callback = latent_preview.prepare_callback(model, sigmas.shape[-1] - 1)
    return guider.sample(
        noise,
        latent,
        comfy.samplers.sampler_object(settings.sampler_name),
        sigmas,
        denoise_mask=denoise_mask,
        callback=callback,
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
        seed=settings.seed,
    )
