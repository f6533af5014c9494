"""Long-video node: the whole voice track as overlapping segments, streamed to an MP4 with the voice (``fantasy_comfy.long_video``)."""

from __future__ import annotations

import os
import uuid

import folder_paths
from comfy_api.latest import InputImpl, io

from fantasy_comfy.long_video import SegmentLayout, TalkingInputs, generate_long_video
from fantasy_comfy.sampler import SamplingSettings

from .apply import controls, identity_inputs, motion_inputs
from .sampling import guidance_inputs, scheduler_inputs
from .types import CATEGORY, FantasyTalkingAudio, FantasyTalkingModel


class FantasyTalkingLongVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingLongVideo",
            display_name="FantasyTalking Long Video",
            category=CATEGORY,
            description="Generates the whole voice track as overlapping segments and streams them to an MP4 with the voice.",
            inputs=[
                io.Model.Input("model", tooltip="Wan2.1-I2V-14B from the core loader (not yet patched: each segment gets its own audio)."),
                FantasyTalkingModel.Input("fantasytalking_model", tooltip="From 'FantasyTalking Model Loader'."),
                FantasyTalkingAudio.Input(
                    "audio_embeds", tooltip="From 'FantasyTalking Audio Embeds' with max_frames high enough for the whole track."
                ),
                io.Float.Input("audio_scale", default=1.0, min=0.0, max=10.0, step=0.01, tooltip="Strength of the audio attention."),
                io.Conditioning.Input("positive", tooltip="Positive prompt (CLIPTextEncode)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt (CLIPTextEncode); sampled without audio."),
                io.Vae.Input("vae", tooltip="Wan 2.1 VAE."),
                io.ClipVisionOutput.Input(
                    "clip_vision_output", tooltip="CLIP vision of the portrait (crop none): the identity anchor of every segment."
                ),
                io.Image.Input("start_image", tooltip="The portrait; the first segment starts from it and colours are matched to it."),
                io.Int.Input("width", default=512, min=16, max=4096, step=16, tooltip="Video width (multiple of 16)."),
                io.Int.Input("height", default=512, min=16, max=4096, step=16, tooltip="Video height (multiple of 16)."),
                io.Int.Input(
                    "segment_frames",
                    default=81,
                    min=5,
                    max=1001,
                    step=4,
                    tooltip="Frames per segment (4k+1); 81 is what the model was trained on.",
                ),
                io.Int.Input(
                    "overlap_frames",
                    default=13,
                    min=1,
                    max=997,
                    step=4,
                    tooltip="Frames each segment continues from the previous one (4k+1). More overlap: smoother joins, more compute.",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=True,
                    tooltip="Noise seed (segment k uses seed + k).",
                ),
                io.Int.Input("steps", default=30, min=1, max=200, tooltip="Sampling steps per segment."),
                *guidance_inputs(),
                *scheduler_inputs(),
                io.Float.Input("shift", default=5.0, min=0.0, max=100.0, step=0.01, tooltip="Flow-matching shift (official: 5)."),
                io.Float.Input(
                    "color_match",
                    default=1.0,
                    min=0.0,
                    max=1.0,
                    step=0.05,
                    tooltip="How strongly each segment's colours are matched to the portrait (0 = off); stops colour drift over minutes.",
                ),
                io.Audio.Input("audio", tooltip="The voice to mux (the audio output of 'FantasyTalking Audio Embeds')."),
                *identity_inputs(),
                *motion_inputs(),
            ],
            outputs=[io.Video.Output(display_name="video", tooltip="MP4 with the voice, written segment by segment (for SaveVideo).")],
        )

    @classmethod
    def execute(
        cls,
        model,
        fantasytalking_model,
        audio_embeds,
        audio_scale,
        positive,
        negative,
        vae,
        clip_vision_output,
        start_image,
        width,
        height,
        segment_frames,
        overlap_frames,
        seed,
        steps,
        cfg,
        audio_cfg,
        sampler_name,
        scheduler,
        shift,
        color_match,
        audio,
        **optional,
    ) -> io.NodeOutput:
        path = os.path.join(folder_paths.get_temp_directory(), f"fantasytalking_long_{uuid.uuid4().hex}.mp4")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        talk = TalkingInputs(model, fantasytalking_model, audio_embeds, audio_scale, positive, negative, controls(**optional))
        layout = SegmentLayout(width, height, segment_frames, overlap_frames, color_match)
        sampling = SamplingSettings(seed, steps, cfg, audio_cfg, sampler_name, scheduler, shift)
        generate_long_video(talk, vae, clip_vision_output, start_image, audio, layout, sampling, path)
        return io.NodeOutput(InputImpl.VideoFromFile(path))
