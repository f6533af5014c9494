"""Everything the pack does to a native Wan2.1 model, in one place.

``FantasyTalkingPatch.apply`` clones the ModelPatcher and adds two things, both owned by the clone:
a DIFFUSION_MODEL wrapper (key ``fantasytalking``) and the adapter's own ModelPatcher as an additional model, so
ComfyUI loads, offloads and streams it with the diffusion model. The wrapper installs the core's temporary
cross-attention hooks (``fantasy_core.AudioInjection``) for the duration of one model call and removes them in
``finally``. Nothing is stored in ``model_options``, so later ``clone()`` calls never copy the adapter.

With core context windows (WanContextWindowsManual) each model call sees a subset of the latent frames, listed in
``transformer_options["context_window"].index_list``; those frames get exactly their own audio windows, sliced from
the whole track's windows (computed once), so window boundaries never shift the audio.

Which batch entries hear the audio: ComfyUI batches conditionings and records each entry's index in
``transformer_options["cond_or_uncond"]``. Index 0 is the positive conditioning in KSampler, CFGGuider and
FantasyTalkingCFGGuider (whose passes are [positive with audio, positive without, negative without]); every other
index runs without audio, as the official negative pass does.
"""

from __future__ import annotations

import comfy.ldm.wan.model
import comfy.model_base
import comfy.patcher_extension
import torch

from ..fantasy_core import AdapterMismatchError, AudioConditioning, AudioInjection, FantasyTalkingAdapter
from ..fantasy_core.injection import check_adapter_fits

WRAPPER_KEY = "fantasytalking"
AUDIO_COND_INDEX = 0


def wan_i2v_model(model) -> comfy.ldm.wan.model.WanModel:
    """The WanModel inside a MODEL, or a clear error when the MODEL is something else."""
    base = getattr(model, "model", None)
    diffusion_model = getattr(base, "diffusion_model", None)
    if not isinstance(base, comfy.model_base.WAN21) or not isinstance(diffusion_model, comfy.ldm.wan.model.WanModel):
        raise ValueError(
            f"FantasyTalking needs a Wan2.1 image-to-video model, but the MODEL input is "
            f"{type(base).__name__}. Load wan2.1_i2v_720p_14B with the core 'Load Diffusion Model' node."
        )
    if not hasattr(diffusion_model.blocks[0].cross_attn, "k_img"):
        raise ValueError(
            "FantasyTalking was trained on Wan2.1-I2V-14B, but this Wan model is text-to-video (its cross-attention "
            "has no image branch). Load the image-to-video model (wan2.1_i2v_720p_14B)."
        )
    return diffusion_model


class FantasyTalkingPatch:
    """The DIFFUSION_MODEL wrapper: audio conditioning for every Wan block during one model call."""

    def __init__(self, adapter_patcher, audio: AudioConditioning, audio_scale: float):
        self.adapter_patcher = adapter_patcher
        self.audio = audio
        self.audio_scale = float(audio_scale)

    @property
    def adapter(self) -> FantasyTalkingAdapter:
        return self.adapter_patcher.model

    def apply(self, model):
        diffusion_model = wan_i2v_model(model)
        check_adapter_fits(self.adapter, diffusion_model.blocks)
        if self.audio.features.shape[-1] != self.adapter.config.audio_dim:
            raise AdapterMismatchError(
                f"The audio embeds are {self.audio.features.shape[-1]} wide but the FantasyTalking adapter expects "
                f"{self.adapter.config.audio_dim}-wide wav2vec2 features. Encode the audio with wav2vec2-base-960h."
            )
        patched = model.clone()
        patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY)
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, self)
        patched.set_additional_models(WRAPPER_KEY, [self.adapter_patcher])
        return patched

    def _windows_for(self, latent_frames: int, transformer_options: dict):
        """The audio windows of the latent frames in this call: all of them, or a context window's own frames."""
        windows = self.audio.windows
        context_window = transformer_options.get("context_window")
        if context_window is None:
            frames, total = list(range(latent_frames)), latent_frames
        else:  # ComfyUI before v0.4 does not record the full length; then the window must at least fit the audio
            frames = list(context_window.index_list)
            total = getattr(context_window, "total_frames", 0) or windows.latent_frames
        if total != windows.latent_frames or max(frames) >= windows.latent_frames:
            shown = max(total, max(frames) + 1)
            raise ValueError(
                f"FantasyTalking: the audio embeds were made for {windows.num_frames} frames "
                f"({windows.latent_frames} latent frames), but the latent being sampled has {shown} latent "
                f"frames ({4 * (shown - 1) + 1} frames). Connect the audio embeds node's num_frames output "
                "to WanImageToVideo's length."
            )
        return windows if context_window is None else windows.select(frames)

    def _scales(self, batch: int, transformer_options: dict, device) -> torch.Tensor:
        cond_or_uncond = transformer_options.get("cond_or_uncond") or [AUDIO_COND_INDEX]
        per_cond = batch // len(cond_or_uncond)
        scales = [self.audio_scale if index == AUDIO_COND_INDEX else 0.0 for index in cond_or_uncond]
        return torch.tensor(scales, device=device).repeat_interleave(per_cond)

    def __call__(self, executor, x, timestep, context, clip_fea=None, time_dim_concat=None, transformer_options={}, **kwargs):
        windows = self._windows_for(x.shape[2], transformer_options)
        wan = executor.class_obj
        features = self.audio.features[None].to(x.device, torch.float32)
        audio = self.adapter.frame_context(features, windows)  # fp32 projection, as officially
        scales = self._scales(x.shape[0], transformer_options, x.device)
        with AudioInjection(wan.blocks, self.adapter, audio, scales):
            return executor(x, timestep, context, clip_fea, time_dim_concat, transformer_options, **kwargs)
