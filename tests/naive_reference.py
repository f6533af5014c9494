"""Deliberately naive re-statements of the official formulas: loops over frames and valid tokens only."""

import math

import torch


def naive_attention(q, k, v, heads):
    """q [S, H*D], k/v [W, H*D]: softmax(q k^T / sqrt(D)) v per head, written out."""
    d = q.shape[-1] // heads
    out = []
    for h in range(heads):
        qh, kh, vh = (t[:, h * d : (h + 1) * d].double() for t in (q, k, v))
        out.append(torch.softmax(qh @ kh.T / math.sqrt(d), dim=-1) @ vh)
    return torch.cat(out, dim=-1).float()


def naive_frame_attention(q, keys, values, k_lens, heads):
    """Per batch entry, per latent frame: attention over only that frame's valid tokens."""
    batch, tokens, width = q.shape
    frames = keys.shape[1]
    per_frame = tokens // frames
    out = torch.zeros_like(q)
    for b in range(batch):
        for f in range(frames):
            n = int(k_lens[b, f])
            if n == 0:
                continue
            rows = slice(f * per_frame, (f + 1) * per_frame)
            out[b, rows] = naive_attention(q[b, rows], keys[b, f, :n], values[b, f, :n], heads)
    return out


def naive_official_windows(tokens: torch.Tensor, num_frames: int, expand: int = 4):
    """Slot-by-slot re-statement of the official split_audio_sequence + split_tensor_with_padding."""
    length = tokens.shape[0]
    tpf = length / num_frames
    half = int(tpf * 4 / 2)
    centres = [0] + [int((tpf * ((i - 1) * 4 + 1) + tpf * (i * 4 + 1)) / 2) - 1 for i in range(1, (num_frames - 1) // 4 + 1)]
    ranges = [[c - half, c + half] for c in centres]
    ranges[0] = [-(half * 2 - ranges[1][0]), ranges[1][0]]
    windows, k_lens = [], []
    for start, end in ranges:
        start, end = start - expand, end + expand
        real = [tokens[j] for j in range(start, end + 1) if 0 <= j < length]
        pad = [torch.zeros_like(tokens[0])] * (end - start + 1 - len(real))
        windows.append(torch.stack(real + pad))
        k_lens.append(len(real))
    return torch.stack(windows), k_lens
