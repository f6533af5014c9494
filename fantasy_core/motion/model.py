"""The motion-intensity modulation network (paper Sec. 3.4): MLP layers, a ResNet layer and average pooling turn
(ω_l, ω_b) into an embedding of Wan's time-embedding width, added to the time embedding ``e`` by the injection layer
(``fantasy_core.dit.injection``). ``e`` feeds every block's six modulation vectors (through ``time_projection``) and
the head, so the motion embedding reaches both.

Structure (our reading of the paper's one sentence): each ω is its own token, embedded by its own MLP (ω_l and ω_b are
different quantities); one residual MLP layer refines each token; the two tokens are averaged; a last linear
layer maps to the time-embedding width. That last layer starts at zero, so an untrained network adds exactly nothing.

State-dict keys::

    lip_mlp.fc1.{weight,bias}     [hidden_dim, 1], [hidden_dim]        (body_mlp alike)
    lip_mlp.fc2.{weight,bias}     [hidden_dim, hidden_dim], [hidden_dim]
    resnet.fc1.{weight,bias}      [hidden_dim, hidden_dim], [hidden_dim]   (resnet.fc2 alike)
    out.{weight,bias}             [model_dim, hidden_dim], [model_dim]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..dit.layers import CastingOps
from .intensity import MotionIntensity


@dataclass(frozen=True)
class MotionConfig:
    hidden_dim: int  # width of the ω tokens
    model_dim: int  # Wan's time-embedding width (5120 for Wan2.1-14B)

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"motion config '{name}' must be a positive integer, got {value!r}.")


class ScalarMLP(nn.Module):
    def __init__(self, hidden_dim: int, operations=CastingOps, device=None, dtype=None):
        super().__init__()
        self.fc1 = operations.Linear(1, hidden_dim, device=device, dtype=dtype)
        self.fc2 = operations.Linear(hidden_dim, hidden_dim, device=device, dtype=dtype)

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(value[..., None])))


class ResidualLayer(nn.Module):
    """x + fc2(silu(fc1(x))). No normalisation: it would erase the tokens' magnitude, which carries the intensity."""

    def __init__(self, hidden_dim: int, operations=CastingOps, device=None, dtype=None):
        super().__init__()
        self.fc1 = operations.Linear(hidden_dim, hidden_dim, device=device, dtype=dtype)
        self.fc2 = operations.Linear(hidden_dim, hidden_dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.silu(self.fc1(x)))


class MotionNetwork(nn.Module):
    def __init__(self, config: MotionConfig, operations=CastingOps, device=None, dtype=None):
        super().__init__()
        self.config = config
        self.lip_mlp = ScalarMLP(config.hidden_dim, operations, device, dtype)
        self.body_mlp = ScalarMLP(config.hidden_dim, operations, device, dtype)
        self.resnet = ResidualLayer(config.hidden_dim, operations, device, dtype)
        self.out = operations.Linear(config.hidden_dim, config.model_dim, device=device, dtype=dtype)

    def forward(self, omegas: torch.Tensor) -> torch.Tensor:
        """ω [B, 2] (ω_l, ω_b) -> motion embedding [B, model_dim], added to Wan's time embedding ``e`` of each row."""
        tokens = torch.stack([self.lip_mlp(omegas[:, 0]), self.body_mlp(omegas[:, 1])], dim=1)  # [B, 2, hidden]
        return self.out(F.silu(self.resnet(tokens).mean(dim=1)))

    def embed(self, intensity: MotionIntensity, device=None) -> torch.Tensor:
        """The motion embedding [model_dim] of one (ω_l, ω_b), in fp32."""
        return self(torch.tensor([[intensity.lip, intensity.body]], dtype=torch.float32, device=device))[0]


def initialise_motion_network(network: MotionNetwork, seed: int = 0) -> MotionNetwork:
    """Training start: random MLP and ResNet layers, a zero last layer, so the untrained network is exactly neutral."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in network.modules():
            if isinstance(layer, nn.Linear):
                bound = layer.in_features**-0.5
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=gen) * 2 - 1) * bound)
                layer.bias.zero_()
        network.out.weight.zero_()
        network.out.bias.zero_()
    return network
