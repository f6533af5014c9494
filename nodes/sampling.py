"""FantasyTalking's three-pass guidance as a core GUIDER, and a one-node sampler with the official schedule."""

from __future__ import annotations

import comfy.model_management
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch
from comfy_api.latest import io

from ..fantasy_core import combine_guidance, needs_uncond_pass, scheduled_audio_cfg
from ..fantasy_core.guidance import official_sigmas
from .types import CATEGORY

OFFICIAL_SCHEDULER = "fantasytalking"


class FantasyTalkingGuider(comfy.samplers.CFGGuider):
    """Passes per step, batched by ComfyUI where memory allows: [positive with audio, positive without audio,
    negative without audio] (the last dropped at cfg == 1). The audio switch follows the pass index (see patch.py)."""

    def __init__(self, model_patcher, cfg: float, audio_cfg: float, audio_cfg_start: float = 0.0, audio_cfg_end: float = 1.0):
        super().__init__(model_patcher)
        self.set_cfg(cfg)
        scheduled_audio_cfg(0, 1, audio_cfg, audio_cfg_start, audio_cfg_end)  # validates the range up front
        self.audio_cfg, self.audio_cfg_start, self.audio_cfg_end = audio_cfg, audio_cfg_start, audio_cfg_end

    def audio_cfg_at(self, timestep: torch.Tensor, model_options: dict) -> float:
        sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
        if sigmas is None or (self.audio_cfg_start == 0.0 and self.audio_cfg_end == 1.0):
            return self.audio_cfg
        # The step whose sigma interval holds this evaluation (multi-stage samplers evaluate between sigmas).
        step = int((sigmas[:-1] >= float(timestep.flatten()[0]) - 1e-6).sum()) - 1
        total = len(sigmas) - 1
        return scheduled_audio_cfg(min(max(step, 0), total - 1), total, self.audio_cfg, self.audio_cfg_start, self.audio_cfg_end)

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        positive, negative = self.conds.get("positive"), self.conds.get("negative")
        with_uncond = needs_uncond_pass(self.cfg)
        conds = [positive, positive, negative] if with_uncond else [positive, positive]
        out = comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)
        return combine_guidance(out[0], out[1], out[2] if with_uncond else None, self.cfg, self.audio_cfg_at(timestep, model_options))


def guidance_inputs() -> list:
    return [
        io.Float.Input("cfg", default=5.0, min=0.0, max=30.0, step=0.1, round=0.01,
                       tooltip="Prompt guidance (official 5). At 1 the negative pass is skipped and audio guidance still applies."),
        io.Float.Input("audio_cfg", default=4.5, min=0.0, max=30.0, step=0.1, round=0.01,
                       tooltip="Audio guidance (paper: 4.5; official command line: 5.0). Higher gives tighter lip sync."),
    ]


class FantasyTalkingCFGGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingCFGGuider",
            display_name="FantasyTalking CFG Guider",
            category=CATEGORY,
            description="uncond + cfg*(noaudio - uncond) + audio_cfg*(cond - noaudio), the official three-pass guidance.",
            inputs=[
                io.Model.Input("model", tooltip="The model from 'FantasyTalking Apply'."),
                io.Conditioning.Input("positive", tooltip="Positive prompt (with the image conditioning from WanImageToVideo)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt; its pass runs without audio, as officially."),
                *guidance_inputs(),
                io.Float.Input("audio_cfg_start", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of the steps where audio guidance starts. Outside the range audio stays on with audio_cfg = 1."),
                io.Float.Input("audio_cfg_end", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of the steps where audio guidance ends (1 = all steps, as officially)."),
            ],
            outputs=[io.Guider.Output(display_name="guider")],
        )

    @classmethod
    def execute(cls, model, positive, negative, cfg, audio_cfg, audio_cfg_start, audio_cfg_end) -> io.NodeOutput:
        guider = FantasyTalkingGuider(model, cfg, audio_cfg, audio_cfg_start, audio_cfg_end)
        guider.set_conds(positive, negative)
        return io.NodeOutput(guider)


def scheduler_inputs() -> list:
    return [
        io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, default="euler", tooltip="Sampler (official: Euler)."),
        io.Combo.Input("scheduler", options=[OFFICIAL_SCHEDULER, *comfy.samplers.SCHEDULER_NAMES], default=OFFICIAL_SCHEDULER,
                       tooltip="'fantasytalking' is the official schedule sigma = shift*s/(1+(shift-1)*s), s = 1-k/steps; "
                       "the others are ComfyUI's schedulers on the shifted model."),
    ]


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


class FantasyTalkingSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingSampler",
            display_name="FantasyTalking Sampler",
            category=CATEGORY,
            description="Samples with the official three-pass guidance and flow-matching schedule (shift 5, 30 steps).",
            inputs=[
                io.Model.Input("model", tooltip="The model from 'FantasyTalking Apply'."),
                io.Conditioning.Input("positive", tooltip="Positive conditioning from WanImageToVideo."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning from WanImageToVideo; sampled without audio."),
                io.Latent.Input("latent_image", tooltip="The latent from WanImageToVideo."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Noise seed."),
                io.Int.Input("steps", default=30, min=1, max=200, tooltip="Sampling steps (official: 30)."),
                *guidance_inputs(),
                *scheduler_inputs(),
                io.Float.Input("denoise", default=1.0, min=0.01, max=1.0, step=0.01, tooltip="1 for image-to-video from noise."),
                io.Float.Input("shift", default=5.0, min=0.0, max=100.0, step=0.01,
                               tooltip="Flow-matching shift (official: 5; native Wan workflows use 8)."),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent_image, seed, steps, cfg, audio_cfg, sampler_name, scheduler, denoise, shift) -> io.NodeOutput:
        model = with_flow_shift(model, shift)
        guider = FantasyTalkingGuider(model, cfg, audio_cfg)
        guider.set_conds(positive, negative)
        sigmas = sampling_sigmas(model, scheduler, steps, denoise, shift)
        latent = comfy.sample.fix_empty_latent_channels(model, latent_image["samples"])
        noise = comfy.sample.prepare_noise(latent, seed, latent_image.get("batch_index"))
        callback = latent_preview.prepare_callback(model, sigmas.shape[-1] - 1)
        samples = guider.sample(noise, latent, comfy.samplers.sampler_object(sampler_name), sigmas,
                                denoise_mask=latent_image.get("noise_mask"), callback=callback,
                                disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
        out = latent_image.copy()
        out["samples"] = samples.to(comfy.model_management.intermediate_device())
        return io.NodeOutput(out)
