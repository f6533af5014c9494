"""The FantasyTalking audio adapter: audio projection plus one audio key/value pair per DiT block. Its keys and values
are what the audio term of every block's cross-attention attends to (``fantasy_core.dit.injection``).

Shapes come from the checkpoint (``AudioAdapterConfig``), never from constants. Layers are built from an
``operations`` namespace so ComfyUI can pass its cast-on-demand layers (``comfy.ops.manual_cast``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..dit.layers import CastingOps
from .windows import AudioWindows, gather_windows


@dataclass(frozen=True)
class AudioAdapterConfig:
    audio_dim: int  # wav2vec feature width (768 for wav2vec2-base)
    context_dim: int  # projected audio width (2048 in the release)
    model_dim: int  # DiT width the k/v project to (5120 for Wan2.1-14B)
    num_blocks: int  # DiT blocks (40 for Wan2.1-14B)


class AudioProjection(nn.Module):
    """Linear (no bias) then LayerNorm (eps 1e-5), per token."""

    def __init__(self, audio_dim: int, context_dim: int, operations=CastingOps, device=None, dtype=None):
        super().__init__()
        self.proj = operations.Linear(audio_dim, context_dim, bias=False, device=device, dtype=dtype)
        self.norm = operations.LayerNorm(context_dim, device=device, dtype=dtype)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(features))


@dataclass(frozen=True)
class AudioContext:
    """Projected audio of one model call. Frame level (the release): tokens [B, T_lat, W, C] (padding slots exactly
    zero), k_lens [B, T_lat]. Clip level (DAVA stage 1): tokens [B, L, C], k_lens [B]; every video token hears them all."""

    tokens: torch.Tensor
    k_lens: torch.Tensor

    @property
    def clip_level(self) -> bool:
        return self.tokens.dim() == 3


class AudioKeyValue(nn.Module):
    """One DiT block's audio keys and values: Linear context_dim -> model_dim, no bias, no norm."""

    def __init__(self, context_dim: int, model_dim: int, operations=CastingOps, device=None, dtype=None):
        super().__init__()
        self.k_proj = operations.Linear(context_dim, model_dim, bias=False, device=device, dtype=dtype)
        self.v_proj = operations.Linear(context_dim, model_dim, bias=False, device=device, dtype=dtype)


class AudioAdapter(nn.Module):
    """State-dict keys: ``proj_model.{proj.weight, norm.weight, norm.bias}``, ``blocks.{i}.{k_proj,v_proj}.weight``."""

    def __init__(self, config: AudioAdapterConfig, operations=CastingOps, device=None, dtype=None):
        super().__init__()
        self.config = config
        self.proj_model = AudioProjection(config.audio_dim, config.context_dim, operations, device, dtype)
        self.blocks = nn.ModuleList(
            AudioKeyValue(config.context_dim, config.model_dim, operations, device, dtype) for _ in range(config.num_blocks)
        )

    def _check_width(self, features: torch.Tensor) -> None:
        if features.shape[-1] != self.config.audio_dim:
            raise ValueError(
                f"audio features are {features.shape[-1]} wide but the FantasyTalking adapter expects "
                f"{self.config.audio_dim} (wav2vec2-base). Encode the audio with wav2vec2-base-960h."
            )

    def frame_context(self, features: torch.Tensor, windows: AudioWindows, device=None) -> AudioContext:
        """Raw wav2vec features [L, audio_dim] of the whole track (or [B, L, audio_dim], one track per batch row) -> the
        audio context of the given latent frames.

        Only the windows' tokens are gathered and projected (on ``device``, in fp32 as officially), so the cost does not
        grow with the track. The official code projects the whole track first; the LayerNorm is per token, so the
        result is the same, and padding slots are zeroed after the projection as the official zero padding is.
        """
        self._check_width(features)
        rows = features.shape[0] if features.dim() == 3 else 1
        raw = gather_windows(features, windows).to(device or features.device, torch.float32)
        _, valid = windows.token_index()
        tokens = self.proj_model(raw)
        tokens = torch.where(valid.to(raw.device)[..., None], tokens, torch.zeros((), dtype=tokens.dtype, device=tokens.device))
        return AudioContext(tokens.reshape(rows, *tokens.shape[-3:]), windows.k_lens[None].expand(rows, -1).to(raw.device))

    def keys_values(self, context: AudioContext, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every block's audio keys and values for the context's tokens, in ``dtype`` (the model's compute dtype, in
        which the official k/v projections run). Padding slots give zeros (no bias), never read by the attention."""
        tokens = context.tokens.to(dtype)
        return [(block.k_proj(tokens), block.v_proj(tokens)) for block in self.blocks]

    def clip_context(self, features: torch.Tensor, device=None) -> AudioContext:
        """Raw wav2vec features [B, L, audio_dim] of each row's clip -> a clip-level context: all L tokens for every frame."""
        self._check_width(features)
        tokens = self.proj_model(features.to(device or features.device, torch.float32))
        return AudioContext(tokens, torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long, device=tokens.device))


def initialise_audio_adapter(adapter: AudioAdapter, seed: int = 0) -> AudioAdapter:
    """Training from zero: a random projection (LayerNorm at 1, 0) and zero keys/values, so the untrained adapter
    changes nothing while its value projections still receive gradients."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        proj = adapter.proj_model.proj.weight
        proj.copy_((torch.rand(proj.shape, generator=gen) * 2 - 1) * proj.shape[1] ** -0.5)
        adapter.proj_model.norm.weight.fill_(1.0)
        adapter.proj_model.norm.bias.zero_()
        for block in adapter.blocks:
            block.k_proj.weight.zero_()
            block.v_proj.weight.zero_()
    return adapter
