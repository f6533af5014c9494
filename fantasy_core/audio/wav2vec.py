"""Encoding a voice track of any length with wav2vec2 (``last_hidden_state``, about 50 tokens per second).

A track up to ``CHUNK_SECONDS`` long is encoded in one pass, as the official code does. Longer tracks are encoded
in chunks of at most that length: each chunk keeps its middle tokens and sees ``CONTEXT_SECONDS`` of extra audio on
either side, well past the positional convolution's reach (kernel 128 tokens, ±1.28 s), so boundary tokens keep their
local context. Chunks start on the feature encoder's hop (320 samples): chunk token j is exactly track token
``chunk_start / hop + j``, and the stitched sequence has the one-pass length. 30 s matches the longest utterances
wav2vec2-base-960h was fine-tuned on and keeps attention at 1500 tokens whatever the track's length. (Its first
convolution GroupNorm-normalises over its input, so each chunk normalises over its own 30 s, as the official code
does over its 3.5 s clip.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .track import WAV2VEC_SAMPLE_RATE

CHUNK_SECONDS = 30.0
CONTEXT_SECONDS = 5.0


class AudioEncoderError(ValueError):
    """The wav2vec2 model cannot be used."""


@dataclass(frozen=True)
class FeatureGeometry:
    """How the convolutional feature encoder maps samples to tokens."""

    kernels: tuple[int, ...]
    strides: tuple[int, ...]

    @property
    def hop(self) -> int:
        return math.prod(self.strides)

    @property
    def receptive_field(self) -> int:
        field, jump = 1, 1
        for kernel, stride in zip(self.kernels, self.strides):
            field += (kernel - 1) * jump
            jump *= stride
        return field

    def num_tokens(self, num_samples: int) -> int:
        length = num_samples
        for kernel, stride in zip(self.kernels, self.strides):
            length = (length - kernel) // stride + 1
            if length <= 0:
                return 0
        return length

    def samples_for(self, num_tokens: int) -> int:
        return (num_tokens - 1) * self.hop + self.receptive_field


@dataclass(frozen=True)
class Chunk:
    first_sample: int
    end_sample: int
    keep_from: int  # first kept token, relative to the chunk
    keep_to: int  # one past the last kept token, relative to the chunk


def plan_chunks(num_samples: int, geometry: FeatureGeometry, chunk_seconds: float, context_seconds: float) -> list[Chunk]:
    total = geometry.num_tokens(num_samples)
    tokens_per_second = WAV2VEC_SAMPLE_RATE / geometry.hop
    if num_samples <= chunk_seconds * WAV2VEC_SAMPLE_RATE:
        return [Chunk(0, num_samples, 0, total)]
    context = int(context_seconds * tokens_per_second)
    core = geometry.num_tokens(int(chunk_seconds * WAV2VEC_SAMPLE_RATE)) - 2 * context
    if core <= 0:
        raise ValueError(f"chunk_seconds ({chunk_seconds}) must exceed twice context_seconds ({context_seconds}).")
    chunks = []
    for core_start in range(0, total, core):
        core_end = min(core_start + core, total)
        first, last = max(core_start - context, 0), min(core_end + context, total)
        end_sample = min(geometry.samples_for(last - first) + first * geometry.hop, num_samples)
        chunks.append(Chunk(first * geometry.hop, end_sample, core_start - first, core_end - first))
    return chunks


# The feature encoder of every wav2vec2-base/large model (conv_kernel, conv_stride of their configs).
WAV2VEC2_GEOMETRY = FeatureGeometry((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))


def encode_in_chunks(
    waveform: torch.Tensor,
    forward: Callable[[torch.Tensor], torch.Tensor],
    geometry: FeatureGeometry = WAV2VEC2_GEOMETRY,
    chunk_seconds: float = CHUNK_SECONDS,
    context_seconds: float = CONTEXT_SECONDS,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Mono 16 kHz waveform [T] (already normalised if the model needs it) -> features [L, hidden] in fp32 on CPU.

    ``forward`` maps a [1, samples] batch to the model's last hidden state [1, tokens, hidden].
    """
    if waveform.dim() != 1:
        raise AudioEncoderError(f"expected a mono waveform [samples], got shape {tuple(waveform.shape)}.")
    if geometry.num_tokens(waveform.shape[0]) < 1:
        raise AudioEncoderError(
            f"the audio has {waveform.shape[0]} samples; wav2vec2 needs at least {geometry.receptive_field} "
            f"({1000 * geometry.receptive_field / WAV2VEC_SAMPLE_RATE:.0f} ms at 16 kHz). Use a longer voice track."
        )
    chunks = plan_chunks(waveform.shape[0], geometry, chunk_seconds, context_seconds)
    pieces = []
    for done, chunk in enumerate(chunks, start=1):
        hidden = forward(waveform[chunk.first_sample : chunk.end_sample][None])[0]
        expected = geometry.num_tokens(chunk.end_sample - chunk.first_sample)
        if hidden.shape[0] != expected:
            raise AudioEncoderError(
                f"the audio encoder made {hidden.shape[0]} tokens from {chunk.end_sample - chunk.first_sample} samples; "
                f"a wav2vec2 feature encoder makes {expected}. Use wav2vec2-base-960h."
            )
        pieces.append(hidden[chunk.keep_from : chunk.keep_to].float().cpu())
        if progress is not None:
            progress(done, len(chunks))
    return torch.cat(pieces)


# Heads of Wav2Vec2ForCTC / Wav2Vec2ForPreTraining checkpoints; the encoder does not use them.
_HEAD_PREFIXES = ("lm_head.", "quantizer.", "project_q.", "project_hid.")
_OLD_WEIGHT_NORM = {
    "encoder.pos_conv_embed.conv.weight_g": "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
    "encoder.pos_conv_embed.conv.weight_v": "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
}


def wav2vec2_encoder_state(state: dict) -> dict:
    """Hugging Face (``wav2vec2.`` prefix, CTC head, old ``weight_g``/``weight_v``) or ComfyUI key naming -> the
    encoder keys both share (``feature_extractor.*``, ``encoder.*``, parametrised positional convolution)."""
    out = {}
    for key, value in state.items():
        key = key[len("wav2vec2.") :] if key.startswith("wav2vec2.") else key
        if key.startswith(_HEAD_PREFIXES):
            continue
        out[_OLD_WEIGHT_NORM.get(key, key)] = value
    return out
