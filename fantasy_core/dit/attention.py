"""Attention for the extra cross-attention branches, with a real key-padding mask (the official flash-attn path
masks the audio windows with ``k_lens``).

All tensors are flat over heads, as inside Wan's cross-attention: q [B, N, H*D], keys/values [..., H*D].
A query row whose keys are all padding gets zeros (flash-attn's varlen result), never NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _split_heads(width: int, num_heads: int):
    if width % num_heads:
        raise ValueError(f"model width {width} is not divisible by {num_heads} heads.")
    head_dim = width // num_heads

    def heads(t: torch.Tensor) -> torch.Tensor:  # [G, S, H*D] -> [G, H, S, D]
        return t.unflatten(-1, (num_heads, head_dim)).transpose(1, 2)

    return heads


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_lens: torch.Tensor, num_heads: int) -> torch.Tensor:
    """q [G, S, H*D], k/v [G, W, H*D], k_lens [G] -> [G, S, H*D]; keys at positions >= k_lens are ignored."""
    heads = _split_heads(q.shape[-1], num_heads)
    k_lens = k_lens.to(q.device)
    key_is_real = torch.arange(k.shape[1], device=q.device)[None, :] < k_lens[:, None]  # [G, W]
    has_keys = k_lens > 0
    # An all-False row would give NaN; let such rows attend to everything and zero them afterwards.
    mask = key_is_real | ~has_keys[:, None]
    out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=mask[:, None, None, :])
    out = out.transpose(1, 2).flatten(2)
    return torch.where(has_keys[:, None, None], out, torch.zeros((), dtype=out.dtype, device=out.device))


def _broadcast_batch(t: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    if t.shape[0] == batch:
        return t
    if t.shape[0] == 1:
        return t.expand(batch, *t.shape[1:])
    raise ValueError(f"{name} has batch {t.shape[0]} but the video latent has batch {batch}.")


def plain_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Unmasked multi-head attention; every query sees every key (identity: one set of tokens for the whole clip).

    q [B, N, H*D]; keys/values [B or 1, K, H*D] -> [B, N, H*D].
    """
    heads = _split_heads(q.shape[-1], num_heads)
    keys = _broadcast_batch(keys, q.shape[0], "keys")
    values = _broadcast_batch(values, q.shape[0], "values")
    out = F.scaled_dot_product_attention(heads(q), heads(keys), heads(values))
    return out.transpose(1, 2).flatten(2)


def frame_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, k_lens: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Each latent frame's video tokens attend only to that frame's keys.

    q [B, T*S, H*D] (frame-major, as Wan flattens [T, h, w]); keys/values [B or 1, T, W, H*D]; k_lens [B or 1, T].
    """
    batch, num_tokens, width = q.shape
    frames = keys.shape[1]
    if num_tokens % frames:
        raise ValueError(
            f"the video has {num_tokens} tokens, which do not split into {frames} latent frames: the audio "
            f"windows were made for a different frame count than the latent being sampled."
        )
    keys = _broadcast_batch(keys, batch, "audio")
    values = _broadcast_batch(values, batch, "audio")
    k_lens = _broadcast_batch(k_lens, batch, "audio k_lens")
    out = masked_attention(
        q.reshape(batch * frames, num_tokens // frames, width),
        keys.flatten(0, 1),
        values.flatten(0, 1),
        k_lens.flatten(),
        num_heads,
    )
    return out.reshape(batch, num_tokens, width)
