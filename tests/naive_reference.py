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


def naive_layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def naive_qformer(state: dict, faces: torch.Tensor, num_layers: int, heads: int) -> torch.Tensor:
    """Identity Q-Former from its state dict alone, one sample: faces [T, face_dim] -> tokens [num_queries, width].
    Pre-norm layers: self-attention among the queries, cross-attention to the face tokens, GELU feed-forward."""
    w = {k[len("qformer.") :]: v.double() for k, v in state.items() if k.startswith("qformer.")}

    def linear(x, name):
        return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    def norm(x, name):
        return naive_layer_norm(x, w[f"{name}.weight"], w[f"{name}.bias"])

    def attention(x, context, name):
        out = naive_attention(linear(x, f"{name}.q"), linear(context, f"{name}.k"), linear(context, f"{name}.v"), heads)
        return linear(out.double(), f"{name}.o")

    faces = norm(linear(faces.double(), "face_proj"), "face_norm")
    x = w["queries"]
    for layer in range(num_layers):
        p = f"layers.{layer}"
        h = norm(x, f"{p}.self_norm")
        x = x + attention(h, h, f"{p}.self_attn")
        x = x + attention(norm(x, f"{p}.cross_norm"), faces, f"{p}.cross_attn")
        h = linear(norm(x, f"{p}.ffn_norm"), f"{p}.ffn.fc1")
        x = x + linear(0.5 * h * (1 + torch.erf(h / math.sqrt(2))), f"{p}.ffn.fc2")
    return norm(x, "norm_out").float()


def naive_motion_embedding(state, lip, body):
    """The motion network for one (ω_l, ω_b), written out: two scalar MLPs, a residual layer per token, the mean, out."""

    def linear(name, x):
        return state[f"{name}.weight"].double() @ x + state[f"{name}.bias"].double()

    def silu(x):
        return x * torch.sigmoid(x)

    tokens = []
    for prefix, value in (("lip_mlp", lip), ("body_mlp", body)):
        token = linear(f"{prefix}.fc2", silu(linear(f"{prefix}.fc1", torch.tensor([value], dtype=torch.float64))))
        tokens.append(token + linear("resnet.fc2", silu(linear("resnet.fc1", token))))
    return linear("out", silu((tokens[0] + tokens[1]) / 2)).float()
