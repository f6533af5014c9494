"""Layers that cast their weights to the input's dtype and device on every call, as ComfyUI's ``comfy.ops.manual_cast``
does: modules built with ``operations=CastingOps`` behave the same in pure PyTorch and, given ComfyUI's ops, under
ComfyUI's weight casting and low-VRAM streaming."""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn


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
