"""Per-latent-frame audio windows, with the official arithmetic (``split_audio_sequence`` and
``split_tensor_with_padding`` with ``expand_length=4``).

Latent frame i >= 1 covers video frames (i-1)*4+1 .. i*4+1; its window is centred on the middle of those frames.
Latent frame 0 (the reference frame) takes the window just before window 1. Every window is widened by
``expand_length`` tokens on each side; out-of-range tokens are dropped and the window is zero-padded at the END,
so each window holds ``k_lens[i]`` real tokens followed by padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..frames import check_video_length, latent_frames

OFFICIAL_EXPAND_LENGTH = 4


def official_window_ranges(num_tokens: int, num_frames: int) -> list[tuple[int, int]]:
    """Inclusive [start, end] token ranges before widening, one per latent frame."""
    if num_tokens < 1:
        raise ValueError(f"the audio has no wav2vec tokens (num_tokens={num_tokens}); the track is too short.")
    check_video_length("num_frames", num_frames)
    # Same float operations in the same order as the official code: int() of a float sits on integer
    # boundaries for common fps values, so reordering could move a window by one token.
    tokens_per_frame = num_tokens / num_frames
    half = int(tokens_per_frame * 4 / 2)
    centres = [0]
    for i in range(1, latent_frames(num_frames)):
        first_video_frame = tokens_per_frame * ((i - 1) * 4 + 1)
        last_video_frame = tokens_per_frame * (i * 4 + 1)
        centres.append(int((first_video_frame + last_video_frame) / 2) - 1)
    ranges = [(c - half, c + half) for c in centres]
    first_start = ranges[1][0]
    ranges[0] = (first_start - 2 * half, first_start)
    return ranges


@dataclass(frozen=True)
class AudioWindows:
    """Where each latent frame's audio comes from in the whole track's token sequence."""

    starts: torch.Tensor  # [T_lat] int64, first token of each widened window (may be negative)
    k_lens: torch.Tensor  # [T_lat] int64, real tokens per window; the rest is end padding
    window_length: int  # slots per window: 2*half + 2*expand + 1
    num_tokens: int  # L, tokens in the whole track
    num_frames: int  # video frames the windows were made for

    @property
    def latent_frames(self) -> int:
        return self.starts.shape[0]

    def slice(self, first_latent: int, end_latent: int) -> AudioWindows:
        """The windows of latent frames [first_latent, end_latent), still indexing the whole track."""
        if not 0 <= first_latent < end_latent <= self.latent_frames:
            raise ValueError(f"latent frame range [{first_latent}, {end_latent}) is outside 0..{self.latent_frames}.")
        return self.select(list(range(first_latent, end_latent)))

    def select(self, latent_frames: list[int]) -> AudioWindows:
        """The windows of the given latent frames (any order, as context-window schedules pick them)."""
        if not latent_frames or min(latent_frames) < 0 or max(latent_frames) >= self.latent_frames:
            raise ValueError(f"latent frames {latent_frames} are outside 0..{self.latent_frames - 1}.")
        index = torch.tensor(latent_frames, dtype=torch.long)
        return AudioWindows(self.starts[index], self.k_lens[index], self.window_length, self.num_tokens, self.num_frames)

    def token_index(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[T_lat, W] token indices into the track and a [T_lat, W] mask of the real (non-padding) slots."""
        slots = torch.arange(self.window_length)
        valid = slots[None, :] < self.k_lens[:, None]
        index = self.starts.clamp(min=0)[:, None] + slots[None, :]
        return torch.where(valid, index, torch.zeros_like(index)), valid


def compute_audio_windows(num_tokens: int, num_frames: int, expand_length: int = OFFICIAL_EXPAND_LENGTH) -> AudioWindows:
    ranges = official_window_ranges(num_tokens, num_frames)
    starts, k_lens = [], []
    for start, end in ranges:
        start, end = start - expand_length, end + expand_length
        starts.append(start)
        k_lens.append(max(min(end, num_tokens - 1) - max(start, 0) + 1, 0))
    window_length = ranges[0][1] - ranges[0][0] + 2 * expand_length + 1
    return AudioWindows(
        torch.tensor(starts, dtype=torch.long),
        torch.tensor(k_lens, dtype=torch.long),
        window_length,
        num_tokens,
        num_frames,
    )


def gather_windows(tokens: torch.Tensor, windows: AudioWindows) -> torch.Tensor:
    """Per-token tensor [..., L, C] of the whole track -> [..., T_lat, W, C]: each window's real tokens, then zeros."""
    if tokens.shape[-2] != windows.num_tokens:
        raise ValueError(f"audio tokens: the windows were made for {windows.num_tokens} tokens, got {tokens.shape[-2]}.")
    index, valid = windows.token_index()
    index, valid = index.to(tokens.device), valid.to(tokens.device)
    gathered = tokens[..., index.flatten(), :].unflatten(-2, index.shape)
    return torch.where(valid[..., None], gathered, torch.zeros((), dtype=tokens.dtype, device=tokens.device))
