"""The FantasyTalking adapter: audio projection plus one audio key/value pair per DiT block.

Shapes come from the checkpoint (``AdapterConfig``), never from constants. Layers are built from an
``operations`` namespace so ComfyUI can pass its cast-on-demand layers (``comfy.ops.manual_cast``); the default
``CastingOps`` behaves the same way in pure PyTorch: weights are cast to the input's dtype and device.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from .attention import clip_audio_attention, frame_audio_attention
from .windows import AudioWindows, gather_windows


class _CastingLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x)
        return F.linear(x, self.weight.to(x), bias)


class _CastingLayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(x)
        bias = None if self.bias is None else self.bias.to(x)
        return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)


CastingOps = SimpleNamespace(Linear=_CastingLinear, LayerNorm=_CastingLayerNorm)


@dataclass(frozen=True)
class AdapterConfig:
    audio_dim: int  # wav2vec feature width (768 for wav2vec2-base)
    context_dim: int  # projected audio width (2048 in the release)
    model_dim: int  # DiT width the k/v project to (5120 for Wan2.1-14B)
    num_blocks: int  # DiT blocks (40 for Wan2.1-14B)

    @property
    def num_parameters(self) -> int:
        return self.context_dim * self.audio_dim + 2 * self.context_dim + self.num_blocks * 2 * self.model_dim * self.context_dim


class AudioProjection(nn.Module):
    """Linear (no bias) then LayerNorm (eps 1e-5), applied to the whole track before windowing."""

    def __init__(self, audio_dim: int, context_dim: int, operations=CastingOps, device=None, dtype=None):
        super().__init__()
        self.proj = operations.Linear(audio_dim, context_dim, bias=False, device=device, dtype=dtype)
        self.norm = operations.LayerNorm(context_dim, device=device, dtype=dtype)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(features))


class AudioKeyValue(nn.Module):
    """One DiT block's audio keys and values: Linear context_dim -> model_dim, no bias, no norm."""

    def __init__(self, context_dim: int, model_dim: int, operations=CastingOps, device=None, dtype=None):
        super().__init__()
        self.k_proj = operations.Linear(context_dim, model_dim, bias=False, device=device, dtype=dtype)
        self.v_proj = operations.Linear(context_dim, model_dim, bias=False, device=device, dtype=dtype)

    def forward(self, q: torch.Tensor, audio: AudioContext, num_heads: int) -> torch.Tensor:
        """Audio attention output [B, N, model_dim] for the shared cross-attention query q [B, N, model_dim]."""
        tokens = audio.tokens.to(q)
        keys, values = self.k_proj(tokens), self.v_proj(tokens)
        if audio.frame_level:
            return frame_audio_attention(q, keys, values, audio.k_lens, num_heads)
        return clip_audio_attention(q, keys, values, audio.k_lens, num_heads)


@dataclass(frozen=True)
class AudioContext:
    """Projected audio ready for the blocks.

    Frame level (inference): tokens [B, T_lat, W, C], k_lens [B, T_lat].
    Clip level (training): tokens [B, L, C], k_lens [B].
    """

    tokens: torch.Tensor
    k_lens: torch.Tensor

    @property
    def frame_level(self) -> bool:
        return self.tokens.dim() == 4


class FantasyTalkingAdapter(nn.Module):
    """State-dict keys: ``proj_model.{proj.weight, norm.weight, norm.bias}``, ``blocks.{i}.{k_proj,v_proj}.weight``."""

    def __init__(self, config: AdapterConfig, operations=CastingOps, device=None, dtype=None):
        super().__init__()
        self.config = config
        self.proj_model = AudioProjection(config.audio_dim, config.context_dim, operations, device, dtype)
        self.blocks = nn.ModuleList(
            AudioKeyValue(config.context_dim, config.model_dim, operations, device, dtype)
            for _ in range(config.num_blocks)
        )

    def frame_context(self, features: torch.Tensor, windows: AudioWindows) -> AudioContext:
        """Raw wav2vec features [B, L, audio_dim] of the whole track -> per-latent-frame audio context."""
        if features.shape[-1] != self.config.audio_dim:
            raise ValueError(
                f"audio features are {features.shape[-1]} wide but the FantasyTalking adapter expects "
                f"{self.config.audio_dim} (wav2vec2-base). Encode the audio with wav2vec2-base-960h."
            )
        tokens = gather_windows(self.proj_model(features), windows)
        k_lens = windows.k_lens.to(tokens.device).expand(tokens.shape[0], -1)
        return AudioContext(tokens, k_lens)

    def clip_context(self, features: torch.Tensor, k_lens: torch.Tensor | None = None) -> AudioContext:
        """Clip-level context: every video token may attend to every (valid) audio token of the clip."""
        tokens = self.proj_model(features)
        if k_lens is None:
            k_lens = torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long, device=tokens.device)
        return AudioContext(tokens, k_lens)
