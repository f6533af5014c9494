"""Audio Embeds' work: a ComfyUI AUDIO -> the audio embeds (wav2vec2 features and the official windows), the official
frame count, and the track cut to the video for muxing."""

from __future__ import annotations

from fantasy_core.audio.embeds import AudioEmbeds
from fantasy_core.audio.track import prepare_audio
from fantasy_core.frames import samples_for_frames
from fantasy_core.video_writer import audio_for_muxing

from .wav2vec import encode_voice


def trimmed_audio(audio: dict, num_frames: int, fps: float) -> dict:
    """The input track (original rate; mono or stereo) cut to the video's length, for muxing."""
    keep = samples_for_frames(num_frames, fps, audio["sample_rate"])
    waveform, _ = audio_for_muxing(audio["waveform"][..., :keep])  # core CreateVideo, too, muxes only mono or stereo
    return {"waveform": waveform, "sample_rate": audio["sample_rate"]}


def voice_embeds(audio: dict, audio_encoder, fps: float, max_frames: int) -> tuple[AudioEmbeds, int, dict]:
    """The embeds, the video's frame count (4k+1, at most ``max_frames``) and the track cut to it."""
    prepared = prepare_audio(audio["waveform"], audio["sample_rate"], fps, max_frames)
    embeds = AudioEmbeds.from_features(encode_voice(audio_encoder, prepared.waveform), prepared)
    return embeds, prepared.num_frames, trimmed_audio(audio, prepared.num_frames, fps)
