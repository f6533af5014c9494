"""Sampling nodes: FantasyTalking's guidance as a core GUIDER, and a one-node sampler with the official schedule."""

from __future__ import annotations

import comfy.model_management
import comfy.samplers
from comfy_api.latest import io

from fantasy_comfy.guider import FantasyTalkingGuider
from fantasy_comfy.sampler import OFFICIAL_SCHEDULER, SamplingSettings, sample_talking

from .types import CATEGORY


def guidance_inputs() -> list:
    return [
        io.Float.Input(
            "cfg",
            default=5.0,
            min=0.0,
            max=30.0,
            step=0.1,
            round=0.01,
            tooltip="Prompt guidance (official 5). At 1 the negative pass is skipped and audio guidance still applies.",
        ),
        io.Float.Input(
            "audio_cfg",
            default=4.5,
            min=0.0,
            max=30.0,
            step=0.1,
            round=0.01,
            tooltip="Audio guidance (paper: 4.5; official command line: 5.0). Higher gives tighter lip sync.",
        ),
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
                io.Conditioning.Input("positive", tooltip="Positive from 'FantasyTalking Apply' (hears the audio)."),
                io.Conditioning.Input("negative", tooltip="Negative from 'FantasyTalking Apply' (silent, as officially)."),
                *guidance_inputs(),
                io.Float.Input(
                    "audio_cfg_start",
                    default=0.0,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="Fraction of the steps where audio guidance starts. Outside the range two passes run, both hearing the "
                    "audio: negative + cfg*(positive - negative), as the official pipeline without audio guidance.",
                ),
                io.Float.Input(
                    "audio_cfg_end",
                    default=1.0,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="Fraction of the steps where audio guidance ends (1 = all steps, as officially).",
                ),
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
        io.Combo.Input(
            "scheduler",
            options=[OFFICIAL_SCHEDULER, *comfy.samplers.SCHEDULER_NAMES],
            default=OFFICIAL_SCHEDULER,
            tooltip="'fantasytalking' is the official schedule sigma = shift*s/(1+(shift-1)*s), s = 1-k/steps; "
            "the others are ComfyUI's schedulers on the shifted model.",
        ),
    ]


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
                io.Conditioning.Input("positive", tooltip="Positive from 'FantasyTalking Apply' (hears the audio)."),
                io.Conditioning.Input("negative", tooltip="Negative from 'FantasyTalking Apply' (silent, as officially)."),
                io.Latent.Input("latent_image", tooltip="The latent from WanImageToVideo."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Noise seed."),
                io.Int.Input("steps", default=30, min=1, max=200, tooltip="Sampling steps (official: 30)."),
                *guidance_inputs(),
                *scheduler_inputs(),
                io.Float.Input("denoise", default=1.0, min=0.01, max=1.0, step=0.01, tooltip="1 for image-to-video from noise."),
                io.Float.Input(
                    "shift",
                    default=5.0,
                    min=0.0,
                    max=100.0,
                    step=0.01,
                    tooltip="Flow-matching shift (official: 5; native Wan workflows use 8).",
                ),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(
        cls, model, positive, negative, latent_image, seed, steps, cfg, audio_cfg, sampler_name, scheduler, denoise, shift
    ) -> io.NodeOutput:
        settings = SamplingSettings(seed, steps, cfg, audio_cfg, sampler_name, scheduler, shift, denoise)
        samples = sample_talking(
            model, positive, negative, latent_image["samples"], settings, latent_image.get("batch_index"), latent_image.get("noise_mask")
        )
        out = latent_image.copy()
        out["samples"] = samples.to(comfy.model_management.intermediate_device())
        return io.NodeOutput(out)
