"""Voice track -> everything the adapter needs: raw wav2vec features, frame count and per-latent-frame windows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .audio import PreparedAudio, prepare_audio
from .wav2vec import Wav2VecEncoder
from .windows import AudioWindows, compute_audio_windows


@dataclass(frozen=True)
class AudioConditioning:
    features: torch.Tensor  # [L, audio_dim] wav2vec last_hidden_state of the trimmed track, fp32
    windows: AudioWindows
    audio: PreparedAudio

    @property
    def num_frames(self) -> int:
        return self.audio.num_frames


def encode_voice_track(
    waveform: torch.Tensor,
    sample_rate: int,
    encoder: Wav2VecEncoder,
    fps: float = 23,
    max_frames: int | None = 81,
    progress: Callable[[int, int], None] | None = None,
) -> AudioConditioning:
    audio = prepare_audio(waveform, sample_rate, fps, max_frames)
    features = encoder.encode(audio.waveform, progress=progress)
    return AudioConditioning(features, compute_audio_windows(features.shape[0], audio.num_frames), audio)
