"""Voice track preparation, as the official FantasyTalking pipeline does it.

Official order (``infer.py`` + ``utils.get_audio_features``): load mono at 16 kHz (librosa: channel mean, then
soxr HQ resampling), derive the frame count from the track's duration, keep the first ``num_frames / fps``
seconds, then normalise that segment (the wav2vec2-base-960h feature extractor's zero-mean/unit-variance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..frames import TEMPORAL_STRIDE, official_num_frames, samples_for_frames

WAV2VEC_SAMPLE_RATE = 16000
NORMALIZE_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm


class AudioInputError(ValueError):
    """The voice track cannot be used as given."""


def to_mono(waveform: torch.Tensor) -> torch.Tensor:
    """[T], [C, T] or [1, C, T] (ComfyUI AUDIO) -> [T] float32, channels averaged as librosa does."""
    if waveform.dim() == 3:
        if waveform.shape[0] != 1:
            raise AudioInputError(f"audio: expected one track, got a batch of {waveform.shape[0]}. Feed one voice track at a time.")
        waveform = waveform[0]
    if waveform.dim() == 1:
        return waveform.float()
    if waveform.dim() != 2:
        raise AudioInputError(f"audio: expected a waveform [channels, samples], got shape {tuple(waveform.shape)}.")
    return waveform.float().mean(dim=0)


def check_finite(samples: torch.Tensor) -> torch.Tensor:
    """NaN or infinite samples (a damaged float WAV) would silently turn the whole video into NaN."""
    bad = ~torch.isfinite(samples)
    if bad.any():
        first = int(bad.flatten().nonzero()[0])
        raise AudioInputError(
            f"audio: the voice track has {int(bad.sum())} non-finite samples (NaN or infinity; the first at sample "
            f"{first}), which would make the whole video NaN. Re-export the track (e.g. as 16-bit PCM WAV) or repair it."
        )
    return samples


def resample(mono: torch.Tensor, sample_rate: int, target_rate: int = WAV2VEC_SAMPLE_RATE) -> torch.Tensor:
    """Band-limited resampling with soxr's HQ filter, the resampler behind the official ``librosa.load``."""
    if sample_rate <= 0:
        raise AudioInputError(f"audio: sample rate must be positive, got {sample_rate}.")
    if sample_rate == target_rate:
        return mono.float()
    try:
        import soxr
    except ImportError as error:
        raise AudioInputError(
            f"audio: resampling {sample_rate} Hz to {target_rate} Hz needs the 'soxr' package, which is not installed. "
            "Run `pip install -r requirements.txt` in the FantasyTalking pack folder (with ComfyUI's Python), or "
            "feed 16 kHz audio."
        ) from error
    out = soxr.resample(mono.detach().cpu().numpy().astype(np.float32), sample_rate, target_rate, quality="HQ")
    return torch.from_numpy(np.ascontiguousarray(out))


def normalize(waveform: torch.Tensor) -> torch.Tensor:
    """(x - mean) / sqrt(var + 1e-7), statistics over the whole segment, as the 960h feature extractor does."""
    x = waveform.double()
    return ((x - x.mean()) / torch.sqrt(x.var(unbiased=False) + NORMALIZE_EPS)).float()


@dataclass(frozen=True)
class PreparedAudio:
    waveform: torch.Tensor  # [T] mono float32 at 16 kHz, trimmed, not normalised
    num_frames: int  # video frames (4k+1)
    fps: float


def prepare_audio(waveform: torch.Tensor, sample_rate: int, fps: float = 23, max_frames: int | None = 81) -> PreparedAudio:
    """Mono 16 kHz segment and frame count for a voice track of any channel count and sample rate."""
    mono = check_finite(to_mono(waveform))
    duration = mono.shape[-1] / sample_rate if sample_rate > 0 else 0.0
    min_duration = TEMPORAL_STRIDE / fps if fps > 0 else 0.0
    if duration < min_duration:
        raise AudioInputError(
            f"audio: the track lasts {duration:.3f} s, shorter than one latent frame (4 video frames = "
            f"{min_duration:.3f} s at {fps} fps). Use a longer voice track."
        )
    try:
        num_frames = official_num_frames(duration, fps, max_frames)
    except ValueError as error:
        raise AudioInputError(str(error)) from error
    mono16k = resample(mono, sample_rate)
    return PreparedAudio(mono16k[: samples_for_frames(num_frames, fps, WAV2VEC_SAMPLE_RATE)], num_frames, fps)
