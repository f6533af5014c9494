"""Long videos as overlapping segments: planning, colour matching and streaming overlap blending.

A video of N = 4K+1 frames is cut into segments of at most ``segment_frames`` (4k+1) frames; each segment after the
first starts ``overlap_frames`` (4j+1) frames before the previous one ends and is conditioned on those frames.
Segment starts are multiples of 4, so segment latent frame j is whole-video latent frame ``first_frame/4 + j`` and its
audio window is the whole track's window for that latent frame: the windows are computed once and sliced, and a
segment boundary never shifts the audio. (Latent frame 0 of a segment, its single start frame, takes the whole
track's window for that latent frame, which is the window just before the next one, as the official first window is.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .audio.windows import AudioWindows
from .frames import TEMPORAL_STRIDE, check_video_length, latent_frames


@dataclass(frozen=True)
class Segment:
    index: int
    first_frame: int  # in the whole video; a multiple of 4
    num_frames: int  # 4k+1
    overlap: int  # leading frames shared with the previous segment (0 for the first)

    @property
    def first_latent(self) -> int:
        return self.first_frame // TEMPORAL_STRIDE

    @property
    def latent_frames(self) -> int:
        return latent_frames(self.num_frames)

    def audio_windows(self, whole: AudioWindows) -> AudioWindows:
        return whole.slice(self.first_latent, self.first_latent + self.latent_frames)


def plan_segments(total_frames: int, segment_frames: int = 81, overlap_frames: int = 13) -> list[Segment]:
    for name, value, minimum in (
        ("total_frames", total_frames, 5),
        ("segment_frames", segment_frames, 5),
        ("overlap_frames", overlap_frames, 1),
    ):
        check_video_length(name, value, minimum)
    if overlap_frames >= segment_frames:
        raise ValueError(f"overlap_frames ({overlap_frames}) must be smaller than segment_frames ({segment_frames}).")
    step = segment_frames - overlap_frames
    segments, first = [], 0
    while True:
        length = min(segment_frames, total_frames - first)
        segments.append(Segment(len(segments), first, length, overlap_frames if first else 0))
        if first + length >= total_frames:
            return segments
        first += step


def match_color(frames: torch.Tensor, reference: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Per-channel mean/std transfer of frames [T, H, W, C] towards the reference image [H', W', C] (values 0..1)."""
    if strength == 0:
        return frames
    dims = tuple(range(frames.dim() - 1))
    mean, std = frames.mean(dim=dims), frames.std(dim=dims).clamp(min=1e-5)
    ref = reference.reshape(-1, reference.shape[-1])
    matched = (frames - mean) / std * ref.std(dim=0) + ref.mean(dim=0)
    return (frames + strength * (matched - frames)).clamp(0, 1)


class OverlapBlender:
    """Receives the decoded frames of consecutive segments and hands every video frame to ``write`` exactly once, in
    order. The frames a segment shares with the previous one are cross-faded (weights (j+1)/(O+1), old to new);
    only the last ``overlap`` frames of a segment are held back, so memory stays one segment deep."""

    def __init__(self, write: Callable[[torch.Tensor], None]):
        self.write = write
        self.held: torch.Tensor | None = None
        self.written = 0

    def _emit(self, frames: torch.Tensor) -> None:
        if frames.shape[0]:
            self.write(frames)
            self.written += frames.shape[0]

    def add(self, frames: torch.Tensor, overlap: int, hold: int) -> None:
        """frames [T, H, W, C] of one segment; ``overlap`` leading frames repeat the held ones; keep ``hold`` back."""
        held = self.held if self.held is not None else frames[:0]
        if held.shape[0] != overlap:
            raise ValueError(f"segment overlaps {overlap} frames but {held.shape[0]} are held from the previous one.")
        if overlap:
            weights = (torch.arange(1, overlap + 1, dtype=frames.dtype) / (overlap + 1)).reshape(-1, *[1] * (frames.dim() - 1))
            self._emit(held * (1 - weights) + frames[:overlap] * weights)
        end = frames.shape[0] - hold
        self._emit(frames[overlap:end])
        self.held = frames[end:].clone()

    def finish(self) -> int:
        if self.held is not None:
            self._emit(self.held)
            self.held = None
        return self.written
