"""Audio node: voice track -> audio embeds (wav2vec2 features and the official windows)."""

from __future__ import annotations

from comfy_api.latest import io

from fantasy_comfy.audio import voice_embeds

from .types import CATEGORY, FantasyTalkingAudio


class FantasyTalkingAudioEmbeds(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingAudioEmbeds",
            display_name="FantasyTalking Audio Embeds",
            category=CATEGORY,
            description="Encodes the voice track with wav2vec2 and computes the official per-latent-frame audio windows.",
            inputs=[
                io.Audio.Input("audio", tooltip="The voice track (any sample rate and channel count; channels are averaged)."),
                io.AudioEncoder.Input(
                    "audio_encoder",
                    tooltip="wav2vec2-base-960h from 'FantasyTalking wav2vec2 Loader' or core 'Load Audio Encoder'.",
                ),
                io.Int.Input(
                    "fps",
                    default=23,
                    min=1,
                    max=120,
                    tooltip="Video frame rate. FantasyTalking's lip sync was trained at 23 fps; other rates are allowed but sync degrades.",
                ),
                io.Int.Input(
                    "max_frames",
                    default=81,
                    min=5,
                    max=100001,
                    step=4,
                    tooltip="Upper limit on the frame count (4k+1). 81 (about 3.5 s at 23 fps) is the official length.",
                ),
            ],
            outputs=[
                FantasyTalkingAudio.Output(display_name="audio_embeds"),
                io.Int.Output(display_name="num_frames", tooltip="Official frame count; wire it into WanImageToVideo's length."),
                io.Float.Output(display_name="fps", tooltip="Frame rate for CreateVideo."),
                io.Audio.Output(display_name="audio", tooltip="The track cut to the video's length, for CreateVideo."),
            ],
        )

    @classmethod
    def execute(cls, audio: dict, audio_encoder, fps: int, max_frames: int) -> io.NodeOutput:
        embeds, num_frames, trimmed = voice_embeds(audio, audio_encoder, fps, max_frames)
        return io.NodeOutput(embeds, num_frames, float(fps), trimmed)
