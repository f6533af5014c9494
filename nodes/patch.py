"""Everything the pack does to a native Wan2.1 model, in one place.

``FantasyTalkingPatch.apply`` clones the ModelPatcher and adds two things, both owned by the clone: a DIFFUSION_MODEL
wrapper (key ``fantasytalking``) and the adapter's own ModelPatcher as an additional model, so ComfyUI loads,
offloads and streams it with the diffusion model. For each model call the wrapper reads every batch row's
``PassSettings`` (carried by the row's conditioning, see ``passes.py``), builds the modality branches and installs
them through ``fantasy_core.dit.injection.DiTInjection`` for that call only (removed in ``finally``). Nothing is
stored in ``model_options``, so later ``clone()`` calls never copy the adapter.

With core context windows (WanContextWindowsManual) each model call sees a subset of the latent frames, listed in
``transformer_options["context_window"].index_list``; those frames get exactly their own audio windows, sliced from
the whole track's windows (computed once), so window boundaries never shift the audio.
"""

from __future__ import annotations

import comfy.ldm.wan.model
import comfy.model_base
import comfy.patcher_extension

from ..fantasy_core.audio.adapter import AudioAdapter, AudioBranch
from ..fantasy_core.audio.embeds import AudioEmbeds
from ..fantasy_core.dit.injection import DiTInjection, ModelMismatchError, check_blocks_fit
from ..fantasy_core.frames import video_frames
from ..fantasy_core.passes import audio_scales
from .passes import PASS_KEY, set_audio

WRAPPER_KEY = "fantasytalking"
WAN_I2V_14B = "Load wan2.1_i2v_720p_14B (Wan2.1-I2V-14B) with the core 'Load Diffusion Model' node."


def wan_i2v_model(model) -> comfy.ldm.wan.model.WanModel:
    """The WanModel inside a MODEL, or a clear error naming what the MODEL is instead."""
    base = getattr(model, "model", None)
    diffusion_model = getattr(base, "diffusion_model", None)
    if not isinstance(base, comfy.model_base.WAN21) or not isinstance(diffusion_model, comfy.ldm.wan.model.WanModel):
        raise ValueError(f"FantasyTalking needs a Wan2.1 image-to-video model, but the MODEL input is {type(base).__name__}. {WAN_I2V_14B}")
    if isinstance(base, comfy.model_base.WAN22):
        raise ValueError(f"FantasyTalking was trained on Wan2.1-I2V-14B, but this is a Wan2.2 TI2V model (48-channel latents). {WAN_I2V_14B}")
    if not hasattr(diffusion_model.blocks[0].cross_attn, "k_img"):
        if diffusion_model.patch_embedding.in_channels == 36:
            raise ValueError(
                "FantasyTalking was trained on Wan2.1-I2V-14B, but this is a Wan2.2 image-to-video model (it takes the "
                f"start image as latents but has no CLIP image cross-attention, which FantasyTalking builds on). {WAN_I2V_14B}"
            )
        raise ValueError(
            "FantasyTalking was trained on Wan2.1-I2V-14B, but this Wan model is text-to-video (its cross-attention "
            f"has no image branch). {WAN_I2V_14B}"
        )
    return diffusion_model


class FantasyTalkingPatch:
    """The DIFFUSION_MODEL wrapper: each batch row gets the modalities its pass settings ask for, during one model call."""

    def __init__(self, adapter_patcher, audio: AudioEmbeds):
        self.adapter_patcher = adapter_patcher
        self.audio = audio

    @property
    def adapter(self) -> AudioAdapter:
        return self.adapter_patcher.model

    def apply(self, model):
        diffusion_model = wan_i2v_model(model)
        config = self.adapter.config
        check_blocks_fit("FantasyTalking audio adapter", config.num_blocks, config.model_dim, diffusion_model.blocks)
        if self.audio.features.shape[-1] != config.audio_dim:
            raise ModelMismatchError(
                f"The audio embeds are {self.audio.features.shape[-1]} wide but the FantasyTalking adapter expects "
                f"{config.audio_dim}-wide wav2vec2 features. Encode the audio with wav2vec2-base-960h."
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
                f"frames ({video_frames(shown)} frames). Connect the audio embeds node's num_frames output "
                "to WanImageToVideo's length."
            )
        return windows if context_window is None else windows.select(frames)

    def __call__(self, executor, x, timestep, context, clip_fea=None, time_dim_concat=None, transformer_options={}, **kwargs):
        rows = kwargs.pop(PASS_KEY, None)
        if rows is None:
            raise ValueError(
                "FantasyTalking: this model has FantasyTalking applied, but a conditioning reached it without saying "
                "whether it hears the audio. Take positive and negative from 'FantasyTalking Apply' (positive hears "
                "the audio, negative does not); give any other conditioning (e.g. a guider's extra one) the "
                "'FantasyTalking Conditioning Settings' node."
            )
        if len(rows) != x.shape[0]:
            raise RuntimeError(f"FantasyTalking: {len(rows)} pass settings for a batch of {x.shape[0]}.")
        branches = []
        scales = audio_scales(rows, device=x.device)
        if bool((scales != 0).any()):
            windows = self._windows_for(x.shape[2], transformer_options)
            branches.append(AudioBranch(self.adapter, self.adapter.frame_context(self.audio.features, windows, x.device), scales))
        with DiTInjection(executor.class_obj, branches):
            return executor(x, timestep, context, clip_fea, time_dim_concat, transformer_options, **kwargs)


def apply_fantasytalking(model, adapter_patcher, audio: AudioEmbeds, audio_scale: float, positive, negative):
    """The model with the adapter, the positive conditioning hearing the audio at ``audio_scale`` and the negative
    silent (the official negative pass)."""
    patched = FantasyTalkingPatch(adapter_patcher, audio).apply(model)
    return patched, set_audio(positive, audio_scale), set_audio(negative, 0.0)
