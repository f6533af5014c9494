"""The identity module (paper Sec. 3.3, Eq. 4): a Q-Former turns the ArcFace embedding of the portrait's face into
identity tokens, and every DiT block gets its own identity keys and values, attended by the block's own query and
added before the block's output projection together with the audio term:

    Z' = Z + λ1·Attn(Q, K_a, V_a) + λ2·Attn(Q, K_id, V_id)      (λ2 = 0.5 in the paper)

The identity tokens are the same for every frame (attended per clip). Sizes come from ``IdentityConfig``, which the
file's metadata and its tensors' shapes give (``fantasy_core.module_file``); nothing here is a constant of the
unreleased model. Layers come from an ``operations`` namespace so ComfyUI can pass its cast-on-demand layers.

State-dict keys (L Q-Former layers, B DiT blocks)::

    qformer.queries                                   [num_queries, width]
    qformer.face_proj.{weight,bias}                   [width, face_dim], [width]
    qformer.face_norm.{weight,bias}                   [width]
    qformer.layers.{l}.{self_norm,cross_norm,ffn_norm}.{weight,bias}
    qformer.layers.{l}.{self_attn,cross_attn}.{q,k,v,o}.{weight,bias}   [width, width], [width]
    qformer.layers.{l}.ffn.fc1.{weight,bias}          [ffn_dim, width], [ffn_dim]
    qformer.layers.{l}.ffn.fc2.{weight,bias}          [width, ffn_dim], [width]
    qformer.norm_out.{weight,bias}                    [width]
    blocks.{i}.{k_proj,v_proj}.weight                 [model_dim, width]   (no bias, as the audio adapter's)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..dit.layers import CastingOps


@dataclass(frozen=True)
class IdentityConfig:
    face_dim: int  # ArcFace embedding width (512 for w600k_r50 and glintr100)
    width: int  # Q-Former width = identity context width
    num_queries: int  # identity tokens per clip
    num_layers: int  # Q-Former layers
    num_heads: int  # Q-Former attention heads (not visible in the weights' shapes: stored in the file's metadata)
    ffn_dim: int  # Q-Former feed-forward width
    model_dim: int  # DiT width the keys/values project to (5120 for Wan2.1-14B)
    num_blocks: int  # DiT blocks (40 for Wan2.1-14B)

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"identity config '{name}' must be a positive integer, got {value!r}.")
        if self.width % self.num_heads:
            raise ValueError(f"identity config: width {self.width} is not divisible by num_heads {self.num_heads}.")


class QFormerAttention(nn.Module):
    def __init__(self, width: int, num_heads: int, operations=CastingOps, device=None, dtype=None):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (operations.Linear(width, width, device=device, dtype=dtype) for _ in range(4))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        def heads(t):  # [B, S, H*D] -> [B, H, S, D]
            return t.unflatten(-1, (self.num_heads, t.shape[-1] // self.num_heads)).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(context)), heads(self.v(context)))
        return self.o(out.transpose(1, 2).flatten(2))


class FeedForward(nn.Module):
    def __init__(self, width: int, ffn_dim: int, operations=CastingOps, device=None, dtype=None):
        super().__init__()
        self.fc1 = operations.Linear(width, ffn_dim, device=device, dtype=dtype)
        self.fc2 = operations.Linear(ffn_dim, width, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class QFormerLayer(nn.Module):
    """Pre-norm: the queries attend to each other, then to the face tokens, then a feed-forward; residual each time."""

    def __init__(self, config: IdentityConfig, operations=CastingOps, device=None, dtype=None):
        super().__init__()
        width = config.width
        self.self_norm, self.cross_norm, self.ffn_norm = (operations.LayerNorm(width, device=device, dtype=dtype) for _ in range(3))
        self.self_attn = QFormerAttention(width, config.num_heads, operations, device, dtype)
        self.cross_attn = QFormerAttention(width, config.num_heads, operations, device, dtype)
        self.ffn = FeedForward(width, config.ffn_dim, operations, device, dtype)

    def forward(self, queries: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        h = self.self_norm(queries)
        queries = queries + self.self_attn(h, h)
        queries = queries + self.cross_attn(self.cross_norm(queries), faces)
        return queries + self.ffn(self.ffn_norm(queries))


class IdentityQFormer(nn.Module):
    """ArcFace tokens [B, T, face_dim] -> identity tokens [B, num_queries, width]."""

    def __init__(self, config: IdentityConfig, operations=CastingOps, device=None, dtype=None):
        super().__init__()
        self.queries = nn.Parameter(torch.empty(config.num_queries, config.width, device=device, dtype=dtype))
        self.face_proj = operations.Linear(config.face_dim, config.width, device=device, dtype=dtype)
        self.face_norm = operations.LayerNorm(config.width, device=device, dtype=dtype)
        self.layers = nn.ModuleList(QFormerLayer(config, operations, device, dtype) for _ in range(config.num_layers))
        self.norm_out = operations.LayerNorm(config.width, device=device, dtype=dtype)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        faces = self.face_norm(self.face_proj(faces))
        tokens = self.queries.to(faces).expand(faces.shape[0], -1, -1)
        for layer in self.layers:
            tokens = layer(tokens, faces)
        return self.norm_out(tokens)


class IdentityKeyValue(nn.Module):
    """One DiT block's identity keys and values: Linear width -> model_dim, no bias."""

    def __init__(self, width: int, model_dim: int, operations=CastingOps, device=None, dtype=None):
        super().__init__()
        self.k_proj = operations.Linear(width, model_dim, bias=False, device=device, dtype=dtype)
        self.v_proj = operations.Linear(width, model_dim, bias=False, device=device, dtype=dtype)


class IdentityModule(nn.Module):
    def __init__(self, config: IdentityConfig, operations=CastingOps, device=None, dtype=None):
        super().__init__()
        self.config = config
        self.qformer = IdentityQFormer(config, operations, device, dtype)
        self.blocks = nn.ModuleList(
            IdentityKeyValue(config.width, config.model_dim, operations, device, dtype) for _ in range(config.num_blocks)
        )

    def identity_tokens(self, faces: torch.Tensor, device=None) -> torch.Tensor:
        """ArcFace embeddings [T, face_dim] (or [B, T, face_dim]) -> identity tokens [B, num_queries, width], in fp32."""
        if faces.dim() == 2:
            faces = faces[None]
        if faces.dim() != 3 or faces.shape[-1] != self.config.face_dim:
            raise ValueError(
                f"the face embedding has shape {list(faces.shape)}, but this identity module expects "
                f"{self.config.face_dim}-wide ArcFace embeddings. Use the ArcFace model the identity module was trained "
                "with (w600k_r50.onnx from buffalo_l or glintr100.onnx from antelopev2, both 512-wide)."
            )
        return self.qformer(faces.to(device or faces.device, torch.float32))

    def keys_values(self, tokens: torch.Tensor, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every block's identity keys and values [B, num_queries, model_dim] for the identity tokens, in ``dtype``
        (the model's compute dtype): attended by every video token alike."""
        tokens = tokens.to(dtype)
        return [(block.k_proj(tokens), block.v_proj(tokens)) for block in self.blocks]


def initialise_identity_module(module: IdentityModule, seed: int = 0) -> IdentityModule:
    """Training start: a random Q-Former and zero identity keys/values, so the untrained module changes nothing."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.qformer.queries.copy_(torch.randn(module.qformer.queries.shape, generator=gen) * 0.02)
        for layer in module.qformer.modules():
            if isinstance(layer, nn.LayerNorm):
                layer.weight.fill_(1.0)
                layer.bias.zero_()
            elif isinstance(layer, nn.Linear):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.02)
                layer.bias.zero_()
        for block in module.blocks:
            block.k_proj.weight.zero_()
            block.v_proj.weight.zero_()
    return module
