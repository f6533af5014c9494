"""A voice track ready for the adapter: raw wav2vec features of the whole (trimmed) track, the prepared track and the
official per-latent-frame windows into it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .track import PreparedAudio
from .windows import AudioWindows, compute_audio_windows


@dataclass(frozen=True)
class AudioEmbeds:
    features: torch.Tensor  # [L, audio_dim] wav2vec last_hidden_state of the trimmed track, fp32, CPU
    windows: AudioWindows
    audio: PreparedAudio

    @classmethod
    def from_features(cls, features: torch.Tensor, audio: PreparedAudio) -> AudioEmbeds:
        return cls(features, compute_audio_windows(features.shape[0], audio.num_frames), audio)

    @property
    def num_frames(self) -> int:
        return self.audio.num_frames

    def with_windows(self, windows: AudioWindows) -> AudioEmbeds:
        return AudioEmbeds(self.features, windows, self.audio)
