"""What the Sampler node and each long-video segment run: the official flow shift and schedule, FantasyTalking's
guidance and core's sampler."""

from __future__ import annotations

import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch

from ..fantasy_core.guidance import official_sigmas
from .guider import FantasyTalkingGuider

OFFICIAL_SCHEDULER = "fantasytalking"


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


def sample_talking(model, positive, negative, latent: torch.Tensor, seed: int, steps: int, cfg: float, audio_cfg: float,
                   sampler_name: str, scheduler: str, shift: float, denoise: float = 1.0, batch_index=None, denoise_mask=None,
                   callback=None) -> torch.Tensor:
    """Samples ``latent`` with the official three-pass guidance; ``callback`` defaults to ComfyUI's latent preview."""
    model = with_flow_shift(model, shift)
    guider = FantasyTalkingGuider(model, cfg, audio_cfg)
    guider.set_conds(positive, negative)
    sigmas = sampling_sigmas(model, scheduler, steps, denoise, shift)
    latent = comfy.sample.fix_empty_latent_channels(model, latent)
    noise = comfy.sample.prepare_noise(latent, seed, batch_index)
    if callback is None:
        callback = latent_preview.prepare_callback(model, sigmas.shape[-1] - 1)
    return guider.sample(noise, latent, comfy.samplers.sampler_object(sampler_name), sigmas, denoise_mask=denoise_mask,
                         callback=callback, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
