"""Identity benchmark: the identity term's cost next to the audio term and a Wan block, and its FLOP share at scale.

    python benchmarks/bench_identity.py [--repeats 5]

1. At a CPU-sized config (the one bench_core uses for the audio term): one DiT block's identity term (keys/values of
   the identity tokens + attention of every video token to them) against the audio term and a Wan-block-shaped
   reference, plus the Q-Former (run once per model call), all in one run; medians of --repeats runs.
2. The FLOP model at the real scale: Wan2.1-I2V-14B, 512x512, 81 frames, with an identity module of Lynx's size
   (16 queries, 4 layers) at the audio adapter's context width (2048).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_core import BlockShape, WanBlockShaped, block_flops, median_seconds  # noqa: E402

from fantasy_core import AudioAdapter, AudioAdapterConfig  # noqa: E402
from fantasy_core.audio.windows import compute_audio_windows  # noqa: E402
from fantasy_core.dit.attention import frame_groups  # noqa: E402
from fantasy_core.dit.injection import branch_terms  # noqa: E402
from fantasy_core.identity.model import IdentityConfig, IdentityModule  # noqa: E402

REAL_IDENTITY = IdentityConfig(
    face_dim=512, width=2048, num_queries=16, num_layers=4, num_heads=16, ffn_dim=8192, model_dim=5120, num_blocks=40
)


def identity_flops(s: BlockShape, c: IdentityConfig) -> float:
    """Multiply-add FLOPs of one block's identity term: k/v of the identity tokens, then q·k and p·v for every video token."""
    return 2 * 2 * c.num_queries * c.width * s.dim + 2 * 2 * s.video_tokens * c.num_queries * s.dim


def qformer_flops(c: IdentityConfig, face_tokens: int = 1) -> float:
    q, w = c.num_queries, c.width
    per_layer = 4 * 2 * q * w * w + 2 * 2 * q * q * w  # self-attention
    per_layer += 2 * 2 * q * w * w + 2 * 2 * face_tokens * w * w + 2 * 2 * q * face_tokens * w  # cross-attention
    per_layer += 2 * 2 * q * w * c.ffn_dim
    return c.num_layers * per_layer + 2 * face_tokens * c.face_dim * w


def bench_cpu(repeats: int) -> None:
    s = BlockShape(dim=1024, ffn_dim=4096, heads=8, latent_frames=21, tokens_per_frame=64)
    config = IdentityConfig(
        face_dim=512, width=1024, num_queries=16, num_layers=4, num_heads=8, ffn_dim=4096, model_dim=s.dim, num_blocks=1
    )
    torch.manual_seed(0)
    block = WanBlockShaped(s).eval()
    adapter = AudioAdapter(AudioAdapterConfig(768, s.audio_context, s.dim, 1)).eval()
    identity = IdentityModule(config).eval()
    for p in identity.parameters():
        torch.nn.init.normal_(p, std=0.02)
    x = torch.randn(1, s.video_tokens, s.dim)
    text, image = torch.randn(1, s.text_tokens, s.dim), torch.randn(1, s.image_tokens, s.dim)
    audio = adapter.frame_context(torch.randn(175, 768), compute_audio_windows(175, 4 * (s.latent_frames - 1) + 1))
    face = torch.nn.functional.normalize(torch.randn(1, config.face_dim), dim=-1)
    q = torch.randn(1, s.video_tokens, s.dim)
    with torch.inference_mode():
        tokens = identity.identity_tokens(face)
        # keys and values are made once per sampling run; a call runs the attention and the in-place add
        audio_term = branch_terms([0], torch.ones(1), adapter.keys_values(audio, torch.float32), frame_groups(audio.k_lens[0].tolist()))[0]
        identity_term = branch_terms([0], torch.ones(1), identity.keys_values(tokens, torch.float32))[0]
        hidden = torch.zeros_like(q)
        block_s = median_seconds(lambda: block(x, text, image), repeats)
        audio_s = median_seconds(lambda: audio_term.add_to(hidden, q, s.heads), repeats)
        identity_s = median_seconds(lambda: identity_term.add_to(hidden, q, s.heads), repeats)
        qformer_s = median_seconds(lambda: identity.identity_tokens(face), repeats)
    block_f, audio_f = block_flops(s)
    identity_f = identity_flops(s, config)
    print(
        f"[1] one DiT block at a CPU-sized config: dim {s.dim}, {s.heads} heads, {s.video_tokens} video tokens; "
        f"{config.num_queries} identity tokens of width {config.width}; {s.window}-token audio windows (median of {repeats})"
    )
    print(
        f"Wan-block-shaped reference: {block_s * 1e3:8.2f} ms   audio term: {audio_s * 1e3:7.2f} ms   "
        f"identity term: {identity_s * 1e3:7.2f} ms   Q-Former (once per run): {qformer_s * 1e3:6.2f} ms"
    )
    print(f"identity / audio term: measured {identity_s / audio_s:.3f}, FLOP model {identity_f / audio_f:.3f}")
    print(f"identity term / block: measured {identity_s / block_s:.3f}, FLOP model {identity_f / block_f:.3f}")


def flops_at_real_scale() -> None:
    s = BlockShape(dim=5120, ffn_dim=13824, heads=40, latent_frames=21, tokens_per_frame=32 * 32)
    c = REAL_IDENTITY
    block_f, audio_f = block_flops(s)
    identity_f = identity_flops(s, c)
    total = c.num_blocks * (block_f + audio_f + identity_f) + qformer_flops(c)
    print(
        f"\n[2] FLOP model at the real scale: Wan2.1-I2V-14B, 512x512, 81 frames ({s.video_tokens} video tokens); identity "
        f"module {c.num_queries} queries x {c.num_layers} layers, width {c.width}"
    )
    print(f"per block: Wan {block_f / 1e12:.2f} TFLOP, audio term {audio_f / 1e9:.2f} GFLOP, identity term {identity_f / 1e9:.2f} GFLOP")
    print(
        f"per model evaluation: identity {100 * (c.num_blocks * identity_f + qformer_flops(c)) / total:.3f}% of the patched model "
        f"(audio {100 * c.num_blocks * audio_f / total:.2f}%); Q-Former {qformer_flops(c) / 1e9:.2f} GFLOP"
    )
    params = sum(v.numel() for v in _shapes(c).values())
    print(
        f"identity module parameters: {params / 1e6:.0f} M ({params * 2 / 2**30:.2f} GiB in 16-bit), of which per-block "
        f"keys/values {2 * c.num_blocks * c.width * c.model_dim / 1e6:.0f} M"
    )


def _shapes(c: IdentityConfig) -> dict:
    with torch.device("meta"):
        return dict(IdentityModule(c).state_dict())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_cpu(args.repeats)
    flops_at_real_scale()


if __name__ == "__main__":
    main()
