"""Minutes of speech in one run: overlapping segments, each continuing from the previous one's last frames, streamed
to an MP4 with the voice (``fantasy_core.long_video`` plans the segments, slices the audio and blends the joins)."""

from __future__ import annotations

import comfy.model_management
import comfy.utils
import node_helpers
import torch

from ..fantasy_core.audio.embeds import AudioEmbeds
from ..fantasy_core.frames import latent_frames
from ..fantasy_core.long_video import OverlapBlender, match_color, plan_segments
from .denoise import sample_talking
from .patch import Controls, apply_fantasytalking
from .video_writer import StreamingMp4

SEED_RANGE = 2**64  # the seed widget's range; segment k's seed wraps inside it


def i2v_conditioning(positive, negative, vae, width: int, height: int, length: int, start_frames, clip_vision_output):
    """Wan2.1 I2V conditioning of one segment (what core WanImageToVideo builds): the known start frames encoded
    among mid-grey ones, a mask over their latent frames, and the portrait's CLIP-vision features."""
    latent = torch.zeros([1, 16, latent_frames(length), height // 8, width // 8], device=comfy.model_management.intermediate_device())
    start = comfy.utils.common_upscale(start_frames[:length].movedim(-1, 1), width, height, "bilinear", "center").movedim(1, -1)
    image = torch.full((length, height, width, start.shape[-1]), 0.5, device=start.device, dtype=start.dtype)
    image[: start.shape[0]] = start
    concat_latent_image = vae.encode(image[:, :, :, :3])
    mask = torch.ones((1, 1, latent.shape[2], *concat_latent_image.shape[-2:]), device=start.device, dtype=start.dtype)
    mask[:, :, : latent_frames(start.shape[0])] = 0.0
    values = {"concat_latent_image": concat_latent_image, "concat_mask": mask, "clip_vision_output": clip_vision_output}
    return node_helpers.conditioning_set_values(positive, values), node_helpers.conditioning_set_values(negative, values), latent


@torch.inference_mode()  # ComfyUI's executor does this too; a direct call must not build an autograd graph
def generate_long_video(model, adapter, audio_embeds: AudioEmbeds, audio_scale, positive, negative, vae, clip_vision_output,
                        reference, width, height, segment_frames, overlap_frames, seed, steps, cfg, audio_cfg, sampler_name,
                        scheduler, shift, color_match, audio, path, controls: Controls = Controls()) -> int:
    """Writes the video to ``path`` and returns its frame count. On any error the original error propagates and no
    file is left behind. Every segment sees the same identity and motion intensity (both are per clip)."""
    segments = plan_segments(audio_embeds.num_frames, segment_frames, overlap_frames)
    writer = StreamingMp4(path, audio_embeds.audio.fps, audio)
    try:
        blender = OverlapBlender(writer.write)
        reference = comfy.utils.common_upscale(reference[:1].movedim(-1, 1), width, height, "bilinear", "center").movedim(1, -1)
        progress = comfy.utils.ProgressBar(len(segments) * steps)
        start = reference
        for segment in segments:
            segment_audio = audio_embeds.with_windows(segment.audio_windows(audio_embeds.windows))
            patched, pos, neg = apply_fantasytalking(model, adapter, segment_audio, audio_scale, positive, negative, controls)
            pos, neg, latent = i2v_conditioning(pos, neg, vae, width, height, segment.num_frames, start, clip_vision_output)

            def on_step(step, _x0, _x, _total_steps, done=segment.index * steps):
                progress.update_absolute(done + step + 1, len(segments) * steps)

            samples = sample_talking(patched, pos, neg, latent, (seed + segment.index) % SEED_RANGE, steps, cfg, audio_cfg,
                                     sampler_name, scheduler, shift, callback=on_step)
            frames = vae.decode(samples.to(comfy.model_management.intermediate_device()))
            frames = match_color(frames.reshape(-1, *frames.shape[-3:])[: segment.num_frames].float().cpu(), reference[0], color_match)
            hold = overlap_frames if segment.index + 1 < len(segments) else 0
            blender.add(frames, segment.overlap, hold)
            start = frames[frames.shape[0] - hold :].clone() if hold else None  # not a view: frees the segment
            del samples, frames, patched
        written = blender.finish()
        writer.close()
        return written
    except BaseException:
        writer.discard()
        raise
