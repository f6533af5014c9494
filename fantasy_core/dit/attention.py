"""The attention of the extra cross-attention branches, added in place into the tensor that Wan's ``o`` reads.

Tensors are flat over heads, as inside Wan's cross-attention: queries [G, S, H*D], keys/values [G, K, H*D].

Frame-level audio attention needs no mask. The official path masks each window's padding (flash-attn varlen with
``k_lens``), and the padding always sits at the end of a window, so attending to the first ``k_len`` keys alone is the
same computation. Frames are grouped by window length (``frame_groups``: at 81 frames and 23 fps the lengths are
6, 14, 17 × 18, 14: four groups), each group one mask-free SDPA call, so PyTorch may pick flash or cuDNN attention.
A frame whose window holds no token adds nothing (flash-attn's varlen result for an empty window).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

FrameGroup = tuple[int, int, int]  # (first frame, end frame, keys per frame) of consecutive frames of one call


def frame_groups(k_lens: Sequence[int]) -> tuple[FrameGroup, ...]:
    """Runs of consecutive frames whose windows hold the same number of real tokens; empty windows are left out."""
    groups, first = [], 0
    for frame in range(1, len(k_lens) + 1):
        if frame == len(k_lens) or k_lens[frame] != k_lens[first]:
            if k_lens[first] > 0:
                groups.append((first, frame, int(k_lens[first])))
            first = frame
    return tuple(groups)


def _heads(t: torch.Tensor, num_heads: int) -> torch.Tensor:  # [G, S, H*D] -> [G, H, S, D], a view
    return t.unflatten(-1, (num_heads, t.shape[-1] // num_heads)).transpose(-3, -2)


def add_attention_(
    out: torch.Tensor, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, num_heads: int, scale: torch.Tensor
) -> None:
    """out += scale · Attention(q, keys, values), in place; out/q [G, S, H*D], keys/values [G, K, H*D], scale 0-d."""
    attended = F.scaled_dot_product_attention(_heads(q, num_heads), _heads(keys, num_heads), _heads(values, num_heads))
    out.unflatten(-1, (num_heads, out.shape[-1] // num_heads)).addcmul_(attended.transpose(-3, -2), scale)


def add_frame_attention_(
    out: torch.Tensor,
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    groups: Sequence[FrameGroup],
    num_heads: int,
    scale: torch.Tensor,
) -> None:
    """One batch row: each latent frame's video tokens attend only to that frame's window, added into ``out``.

    out/q [T*S, H*D] (frame-major, as Wan flattens [T, h, w]); keys/values [T, W, H*D]; ``groups`` from ``frame_groups``.
    """
    frames = keys.shape[0]
    if q.shape[0] % frames:
        raise ValueError(
            f"the video has {q.shape[0]} tokens, which do not split into {frames} latent frames: the audio windows "
            "were made for a different frame count than the latent being sampled."
        )
    per_frame = q.shape[0] // frames
    for first, end, length in groups:
        tokens = slice(first * per_frame, end * per_frame)
        add_attention_(
            out[tokens].unflatten(0, (end - first, per_frame)),
            q[tokens].unflatten(0, (end - first, per_frame)),
            keys[first:end, :length],
            values[first:end, :length],
            num_heads,
            scale,
        )
