"""Minutes of speech in one run: overlapping segments, each continuing from the previous one's last frames, streamed
to an MP4 with the voice (``fantasy_core.long_video`` plans the segments, slices the audio and blends the joins)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import comfy.model_management
import comfy.utils
import torch

from fantasy_core.audio.embeds import AudioEmbeds
from fantasy_core.long_video import OverlapBlender, match_color, plan_segments
from fantasy_core.video_writer import StreamingMp4

from .i2v import i2v_conditioning
from .patch import Controls, apply_fantasytalking
from .sampler import SamplingSettings, sample_talking

SEED_RANGE = 2**64  # the seed widget's range; segment k's seed wraps inside it


@dataclass
class TalkingInputs:
    """What FantasyTalking Apply takes: the base model, the loaded modules, the voice and the prompts."""

    model: object  # ComfyUI's ModelPatcher of Wan2.1 I2V, not yet patched
    modules: object  # FantasyTalkingModules from the Model Loader
    audio_embeds: AudioEmbeds
    audio_scale: float
    positive: list
    negative: list
    controls: Controls = field(default_factory=Controls)


@dataclass(frozen=True)
class SegmentLayout:
    """The video's size, how it is cut into segments, and the colour matching of each segment to the portrait."""

    width: int = 512
    height: int = 512
    segment_frames: int = 81
    overlap_frames: int = 13
    color_match: float = 1.0


@torch.inference_mode()  # ComfyUI's executor does this too; a direct call must not build an autograd graph
def generate_long_video(
    talk: TalkingInputs,
    vae,
    clip_vision_output,
    portrait: torch.Tensor,
    audio: dict,
    layout: SegmentLayout,
    sampling: SamplingSettings,
    path: str,
) -> int:
    """Writes the video to ``path`` and returns its frame count. On any error the original error propagates and no
    file is left behind. Every segment sees the same identity and motion intensity (both are per clip)."""
    segments = plan_segments(talk.audio_embeds.num_frames, layout.segment_frames, layout.overlap_frames)
    writer = StreamingMp4(path, talk.audio_embeds.audio.fps, audio)
    width, height, steps = layout.width, layout.height, sampling.steps
    try:
        blender = OverlapBlender(writer.write)
        reference = comfy.utils.common_upscale(portrait[:1].movedim(-1, 1), width, height, "bilinear", "center").movedim(1, -1)
        progress = comfy.utils.ProgressBar(len(segments) * steps)
        start = reference
        for segment in segments:
            segment_audio = talk.audio_embeds.with_windows(segment.audio_windows(talk.audio_embeds.windows))
            patched, pos, neg = apply_fantasytalking(
                talk.model, talk.modules, segment_audio, talk.audio_scale, talk.positive, talk.negative, talk.controls
            )
            pos, neg, latent = i2v_conditioning(pos, neg, vae, width, height, segment.num_frames, start, clip_vision_output)

            def on_step(step, _x0, _x, _total_steps, done=segment.index * steps):
                progress.update_absolute(done + step + 1, len(segments) * steps)

            segment_sampling = replace(sampling, seed=(sampling.seed + segment.index) % SEED_RANGE)
            samples = sample_talking(patched, pos, neg, latent, segment_sampling, callback=on_step)
            frames = vae.decode(samples.to(comfy.model_management.intermediate_device()))
            frames = match_color(
                frames.reshape(-1, *frames.shape[-3:])[: segment.num_frames].float().cpu(), reference[0], layout.color_match
            )
            hold = layout.overlap_frames if segment.index + 1 < len(segments) else 0
            blender.add(frames, segment.overlap, hold)
            start = frames[frames.shape[0] - hold :].clone() if hold else None  # not a view: frees the segment
            del samples, frames, patched
        written = blender.finish()
        writer.close()
        return written
    except BaseException:
        writer.discard()
        raise
