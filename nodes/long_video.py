"""Minutes of speech in one run: overlapping segments, each continuing from the previous one's last frames, streamed
to an MP4 with the voice (see fantasy_core.long_video for the plan, the audio slicing and the blend)."""

from __future__ import annotations

import os
import uuid

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io
from comfy_api.latest._input_impl import VideoFromFile

from ..fantasy_core import AudioConditioning
from ..fantasy_core.long_video import OverlapBlender, match_color, plan_segments
from .patch import FantasyTalkingPatch
from .sampling import FantasyTalkingGuider, guidance_inputs, sampling_sigmas, scheduler_inputs, with_flow_shift
from .types import CATEGORY, FantasyTalkingAudio, FantasyTalkingModel
from .video_writer import StreamingMp4


def segment_conditioning(positive, negative, vae, width, height, length, start_frames, clip_vision_output):
    """Core WanImageToVideo: start frames known, the rest generated; the reference's CLIP features every time."""
    from comfy_extras.nodes_wan import WanImageToVideo

    return WanImageToVideo.execute(positive, negative, vae, width, height, length, 1, start_frames, clip_vision_output).result


@torch.inference_mode()  # ComfyUI's executor does this too; a direct call must not build an autograd graph
def generate_long_video(model, adapter, audio_embeds: AudioConditioning, audio_scale, positive, negative, vae, clip_vision_output,
                        reference, width, height, segment_frames, overlap_frames, seed, steps, cfg, audio_cfg, sampler_name,
                        scheduler, shift, color_match, audio, path) -> int:
    segments = plan_segments(audio_embeds.num_frames, segment_frames, overlap_frames)
    writer = StreamingMp4(path, audio_embeds.audio.fps, audio)
    blender = OverlapBlender(writer.write)
    reference = comfy.utils.common_upscale(reference[:1].movedim(-1, 1), width, height, "bilinear", "center").movedim(1, -1)
    progress = comfy.utils.ProgressBar(len(segments) * steps)
    start = reference
    try:
        for segment in segments:
            audio_k = AudioConditioning(audio_embeds.features, segment.audio_windows(audio_embeds.windows), audio_embeds.audio)
            patched = with_flow_shift(FantasyTalkingPatch(adapter, audio_k, audio_scale).apply(model), shift)
            pos, neg, latent = segment_conditioning(positive, negative, vae, width, height, segment.num_frames, start, clip_vision_output)
            guider = FantasyTalkingGuider(patched, cfg, audio_cfg)
            guider.set_conds(pos, neg)
            sigmas = sampling_sigmas(patched, scheduler, steps, 1.0, shift)
            noise = comfy.sample.prepare_noise(latent["samples"], seed + segment.index)

            def on_step(step, x0, x, total_steps, done=segment.index * steps):
                progress.update_absolute(done + step + 1, len(segments) * steps)

            samples = guider.sample(noise, latent["samples"], comfy.samplers.sampler_object(sampler_name), sigmas,
                                    callback=on_step, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed + segment.index)
            frames = vae.decode(samples.to(comfy.model_management.intermediate_device()))
            frames = match_color(frames.reshape(-1, *frames.shape[-3:])[: segment.num_frames].float().cpu(), reference[0], color_match)
            hold = overlap_frames if segment.index + 1 < len(segments) else 0
            blender.add(frames, segment.overlap, hold)
            start = frames[frames.shape[0] - hold :].clone() if hold else None  # not a view: frees the segment
            del samples, frames, patched, guider
        return blender.finish()
    finally:
        writer.close()


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
                FantasyTalkingAudio.Input("audio_embeds", tooltip="From 'FantasyTalking Audio Embeds' with max_frames high enough for the whole track."),
                io.Float.Input("audio_scale", default=1.0, min=0.0, max=10.0, step=0.01, tooltip="Strength of the audio attention."),
                io.Conditioning.Input("positive", tooltip="Positive prompt (CLIPTextEncode)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt (CLIPTextEncode); sampled without audio."),
                io.Vae.Input("vae", tooltip="Wan 2.1 VAE."),
                io.ClipVisionOutput.Input("clip_vision_output", tooltip="CLIP vision of the portrait (crop none): the identity anchor of every segment."),
                io.Image.Input("start_image", tooltip="The portrait; the first segment starts from it and colours are matched to it."),
                io.Int.Input("width", default=512, min=16, max=4096, step=16, tooltip="Video width (multiple of 16)."),
                io.Int.Input("height", default=512, min=16, max=4096, step=16, tooltip="Video height (multiple of 16)."),
                io.Int.Input("segment_frames", default=81, min=5, max=1001, step=4, tooltip="Frames per segment (4k+1); 81 is what the model was trained on."),
                io.Int.Input("overlap_frames", default=13, min=1, max=997, step=4,
                             tooltip="Frames each segment continues from the previous one (4k+1). More overlap: smoother joins, more compute."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Noise seed (segment k uses seed + k)."),
                io.Int.Input("steps", default=30, min=1, max=200, tooltip="Sampling steps per segment."),
                *guidance_inputs(),
                *scheduler_inputs(),
                io.Float.Input("shift", default=5.0, min=0.0, max=100.0, step=0.01, tooltip="Flow-matching shift (official: 5)."),
                io.Float.Input("color_match", default=1.0, min=0.0, max=1.0, step=0.05,
                               tooltip="How strongly each segment's colours are matched to the portrait (0 = off); stops colour drift over minutes."),
                io.Audio.Input("audio", tooltip="The voice to mux (the audio output of 'FantasyTalking Audio Embeds')."),
            ],
            outputs=[io.Video.Output(display_name="video", tooltip="MP4 with the voice, written segment by segment (for SaveVideo).")],
        )

    @classmethod
    def execute(cls, model, fantasytalking_model, audio_embeds, audio_scale, positive, negative, vae, clip_vision_output, start_image,
                width, height, segment_frames, overlap_frames, seed, steps, cfg, audio_cfg, sampler_name, scheduler, shift,
                color_match, audio) -> io.NodeOutput:
        path = os.path.join(folder_paths.get_temp_directory(), f"fantasytalking_long_{uuid.uuid4().hex}.mp4")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        generate_long_video(model, fantasytalking_model, audio_embeds, audio_scale, positive, negative, vae, clip_vision_output,
                            start_image, width, height, segment_frames, overlap_frames, seed, steps, cfg, audio_cfg, sampler_name,
                            scheduler, shift, color_match, audio, path)
        return io.NodeOutput(VideoFromFile(path))
