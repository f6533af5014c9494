"""Core benchmark: the audio path for 60 s of speech, and the adapter's cost next to a Wan block.

    python benchmarks/bench_core.py [--seconds 60] [--repeats 5]

1. Audio preparation (stereo 44.1 kHz -> mono 16 kHz) + wav2vec2 encoding + projection and windowing, with a tiny
   and with a base-sized (12 layers, 768 wide) random wav2vec2: seconds per stage and base/tiny ratios.
2. One DiT block's audio term (k/v projections + masked frame-level attention) against a Wan-block-shaped reference
   (self-attention, text+image cross-attention, FFN) at a CPU-sized config: measured ratio next to the FLOP ratio.
3. The FLOP model at the real scale: Wan2.1-14B, 512x512, 81 frames.
All timings in one run, side by side; medians of --repeats runs.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from hf_wav2vec import Wav2VecEncoder  # noqa: E402  (the transformers wav2vec2 the tests use as a reference)

from fantasy_core import AudioAdapter, AudioAdapterConfig, prepare_audio  # noqa: E402
from fantasy_core.audio.windows import compute_audio_windows  # noqa: E402
from fantasy_core.dit.attention import frame_groups  # noqa: E402
from fantasy_core.dit.injection import branch_terms  # noqa: E402


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def wav2vec_folder(folder: str, base_sized: bool) -> str:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model
    from transformers.utils import logging

    logging.disable_progress_bar()

    if base_sized:  # wav2vec2-base-960h's architecture
        config = Wav2Vec2Config(vocab_size=32)
    else:
        config = Wav2Vec2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(16,) * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
            vocab_size=8,
        )
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True).save_pretrained(folder)
    return folder


def bench_audio_path(seconds: float, repeats: int) -> None:
    rate = 44100
    t = torch.arange(int(seconds * rate)) / rate
    speechlike = torch.sin(2 * math.pi * 220 * t) * (0.6 + 0.4 * torch.sin(2 * math.pi * 4 * t))
    stereo = torch.stack([speechlike, 0.8 * speechlike])[None]
    print(f"\n[1] audio path for {seconds:.0f} s of 44.1 kHz stereo audio (median of {repeats})")
    print(f"{'wav2vec2':<12}{'prepare s':>11}{'encode s':>11}{'windows s':>11}{'total s':>10}{'tokens':>8}{'windows':>9}")
    rows = {}
    for name, base_sized in (("tiny", False), ("base-sized", True)):
        with tempfile.TemporaryDirectory() as folder:
            encoder = Wav2VecEncoder.from_folder(wav2vec_folder(folder, base_sized))
        adapter = AudioAdapter(AudioAdapterConfig(encoder.hidden_size, 2048, 64, 1))
        prepared = prepare_audio(stereo, rate, fps=23, max_frames=None)
        features = encoder.encode(prepared.waveform)
        windows = compute_audio_windows(features.shape[0], prepared.num_frames)

        def make_windows(adapter=adapter, features=features, prepared=prepared):
            adapter.frame_context(features, compute_audio_windows(features.shape[0], prepared.num_frames))

        def encode(encoder=encoder, prepared=prepared):
            return encoder.encode(prepared.waveform)

        with torch.inference_mode():
            prepare_s = median_seconds(lambda: prepare_audio(stereo, rate, fps=23, max_frames=None), repeats)
            encode_s = median_seconds(encode, max(1, repeats // 2 if base_sized else repeats))
            windows_s = median_seconds(make_windows, repeats)
        rows[name] = (prepare_s, encode_s, windows_s)
        total = prepare_s + encode_s + windows_s
        print(
            f"{name:<12}{prepare_s:>11.3f}{encode_s:>11.3f}{windows_s:>11.3f}{total:>10.3f}{features.shape[0]:>8}{windows.latent_frames:>9}"
        )
    tiny, base = rows["tiny"], rows["base-sized"]
    print(
        f"ratio base/tiny: encode {base[1] / tiny[1]:.1f}x, whole path {sum(base) / sum(tiny):.1f}x; "
        f"base-sized path runs at {seconds / sum(base):.1f}x real time on this CPU"
    )


@dataclass(frozen=True)
class BlockShape:
    dim: int
    ffn_dim: int
    heads: int
    latent_frames: int
    tokens_per_frame: int
    text_tokens: int = 512
    image_tokens: int = 257
    window: int = 17
    audio_context: int = 2048

    @property
    def video_tokens(self) -> int:
        return self.latent_frames * self.tokens_per_frame


def block_flops(s: BlockShape) -> tuple[float, float]:
    """(Wan block, audio term) multiply-add FLOPs for one DiT block."""
    n, d = s.video_tokens, s.dim
    self_attn = 4 * 2 * n * d * d + 2 * 2 * n * n * d
    cross = 2 * 2 * n * d * d + 2 * 2 * (s.text_tokens + s.image_tokens) * d * d + 2 * 2 * n * (s.text_tokens + s.image_tokens) * d
    ffn = 2 * 2 * n * d * s.ffn_dim
    audio = 2 * 2 * s.latent_frames * s.window * s.audio_context * d + 2 * 2 * n * s.window * d
    return self_attn + cross + ffn, audio


class WanBlockShaped(nn.Module):
    """Same operations and shapes as a Wan2.1 I2V DiT block (modulation omitted: elementwise, negligible)."""

    def __init__(self, s: BlockShape):
        super().__init__()
        self.s = s
        d = s.dim
        self.self_qkv, self.self_o = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.q, self.kv, self.kv_img, self.o = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, 2 * d), nn.Linear(d, d)
        self.ffn = nn.Sequential(nn.Linear(d, s.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(s.ffn_dim, d))
        self.norm = nn.LayerNorm(d)

    def attend(self, q, k, v):
        split = lambda t: t.unflatten(-1, (self.s.heads, -1)).transpose(1, 2)  # noqa: E731
        return F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).flatten(2)

    def forward(self, x, text, image):
        q, k, v = self.self_qkv(self.norm(x)).chunk(3, dim=-1)
        x = x + self.self_o(self.attend(q, k, v))
        q = self.q(self.norm(x))
        k, v = self.kv(text).chunk(2, dim=-1)
        k_img, v_img = self.kv_img(image).chunk(2, dim=-1)
        x = x + self.o(self.attend(q, k, v) + self.attend(q, k_img, v_img))
        return x + self.ffn(self.norm(x))


def bench_adapter(repeats: int) -> None:
    s = BlockShape(dim=1024, ffn_dim=4096, heads=8, latent_frames=21, tokens_per_frame=64)
    torch.manual_seed(0)
    block = WanBlockShaped(s).eval()
    adapter = AudioAdapter(AudioAdapterConfig(768, s.audio_context, s.dim, 1)).eval()
    x = torch.randn(1, s.video_tokens, s.dim)
    text, image = torch.randn(1, s.text_tokens, s.dim), torch.randn(1, s.image_tokens, s.dim)
    features = torch.randn(175, 768)
    audio = adapter.frame_context(features, compute_audio_windows(175, 4 * (s.latent_frames - 1) + 1))
    q = torch.randn(1, s.video_tokens, s.dim)
    with torch.inference_mode():
        # the keys and values are made once per sampling run; a call runs the attention and the in-place add
        term = branch_terms([0], torch.ones(1), adapter.keys_values(audio, torch.float32), frame_groups(audio.k_lens[0].tolist()))[0]
        hidden = torch.zeros_like(q)
        block_s = median_seconds(lambda: block(x, text, image), repeats)
        audio_s = median_seconds(lambda: term.add_to(hidden, q, s.heads), repeats)
    block_f, audio_f = block_flops(s)
    print(
        f"\n[2] one DiT block at a CPU-sized config: dim {s.dim}, ffn {s.ffn_dim}, {s.heads} heads, "
        f"{s.latent_frames} latent frames x {s.tokens_per_frame} tokens = {s.video_tokens} video tokens, "
        f"{s.window}-token audio windows (median of {repeats})"
    )
    print(f"Wan-block-shaped reference: {block_s * 1e3:8.2f} ms    audio term: {audio_s * 1e3:7.2f} ms")
    print(f"audio term / block: measured {audio_s / block_s:.3f}, FLOP model {audio_f / block_f:.3f}")


def flops_at_real_scale() -> None:
    s = BlockShape(dim=5120, ffn_dim=13824, heads=40, latent_frames=21, tokens_per_frame=32 * 32)
    block_f, audio_f = block_flops(s)
    blocks = 40
    projection = 2 * 175 * 768 * 2048  # once per generation, not per step
    print(
        f"\n[3] FLOP model at the real scale: Wan2.1-I2V-14B, 512x512, 81 frames ({s.video_tokens} video tokens), 21 windows of 17 tokens"
    )
    print(f"per block: Wan {block_f / 1e12:.2f} TFLOP, audio term {audio_f / 1e9:.2f} GFLOP")
    print(
        f"per model evaluation (40 blocks): Wan {blocks * block_f / 1e12:.1f} TFLOP, adapter {blocks * audio_f / 1e12:.3f} TFLOP "
        f"= {100 * audio_f / (block_f + audio_f):.2f}% of the patched model; projection {projection / 1e9:.2f} GFLOP once"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_audio_path(args.seconds, args.repeats)
    bench_adapter(args.repeats)
    flops_at_real_scale()


if __name__ == "__main__":
    main()
