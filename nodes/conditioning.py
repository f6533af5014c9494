"""Audio nodes: voice track -> audio embeds, and the patch that makes a Wan2.1 MODEL listen to them."""

from __future__ import annotations

from comfy_api.latest import io

from ..fantasy_core import AudioConditioning, compute_audio_windows, prepare_audio
from .patch import FantasyTalkingPatch
from .types import CATEGORY, FantasyTalkingAudio, FantasyTalkingModel
from .wav2vec import encode_voice


def trimmed_audio(audio: dict, num_frames: int, fps: float) -> dict:
    """The input track (original rate and channels) cut to the video's length, for muxing."""
    keep = int(num_frames / fps * audio["sample_rate"])
    return {"waveform": audio["waveform"][..., :keep], "sample_rate": audio["sample_rate"]}


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
                    "fps", default=23, min=1, max=120,
                    tooltip="Video frame rate. FantasyTalking's lip sync was trained at 23 fps; other rates are "
                    "allowed but sync degrades.",
                ),
                io.Int.Input(
                    "max_frames", default=81, min=5, max=100001, step=4,
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
        prepared = prepare_audio(audio["waveform"], audio["sample_rate"], fps, max_frames)
        features = encode_voice(audio_encoder, prepared.waveform)
        embeds = AudioConditioning(features, compute_audio_windows(features.shape[0], prepared.num_frames), prepared)
        return io.NodeOutput(embeds, prepared.num_frames, float(fps), trimmed_audio(audio, prepared.num_frames, fps))


class FantasyTalkingApply(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingApply",
            display_name="FantasyTalking Apply",
            category=CATEGORY,
            description="Adds FantasyTalking's audio cross-attention to every block of a native Wan2.1 I2V model.",
            inputs=[
                io.Model.Input("model", tooltip="Wan2.1-I2V-14B from the core 'Load Diffusion Model' node (LoRAs and other patches may come before)."),
                FantasyTalkingModel.Input("fantasytalking_model", tooltip="From 'FantasyTalking Model Loader'."),
                FantasyTalkingAudio.Input("audio_embeds", tooltip="From 'FantasyTalking Audio Embeds'."),
                io.Float.Input(
                    "audio_scale", default=1.0, min=0.0, max=10.0, step=0.01,
                    tooltip="Strength of the audio attention (official default 1.0). 0 turns the audio off. "
                    "With KSampler/CFGGuider the positive pass hears the audio and the negative pass does not.",
                ),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, fantasytalking_model, audio_embeds: AudioConditioning, audio_scale: float) -> io.NodeOutput:
        return io.NodeOutput(FantasyTalkingPatch(fantasytalking_model, audio_embeds, audio_scale).apply(model))
