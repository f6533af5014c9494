"""Wan's flow-matching objective and the paper's lip-focused loss (Eq. 3).

x_t = (1 - σ)·x0 + σ·ε,   the model predicts v ≈ ε - x0,   timestep = 1000·σ
σ = shift·u / (1 + (shift - 1)·u),  u ~ U(0, 1)       (the time shift Wan samples with; shift 1 = uniform)
L = (v - (ε - x0))²,   L_c = M ⊙ L  with M the lip mask on the latent grid, used when p > η, else L.
"""

from __future__ import annotations

import torch

LIP_LOSS_REDUCTIONS = ("masked_mean", "mean")


def shifted_sigma(u: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * u / (1 + (shift - 1) * u)


def noisy_latents(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x0, noise [B, C, T, h, w]; sigma [B]."""
    s = sigma.reshape(-1, *([1] * (x0.dim() - 1))).to(x0)
    return (1 - s) * x0 + s * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def row_losses(
    prediction: torch.Tensor, target: torch.Tensor, lip_mask: torch.Tensor | None, use_mask: torch.Tensor, reduction: str = "masked_mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row loss [B] in fp32 and which rows used the lip-focused loss [B].

    prediction/target [B, C, T, h, w]; lip_mask [B, T, h, w] in 0..1 (None: no row can use it); use_mask [B] bool (p > η).
    ``masked_mean``: Σ M·L / (C·Σ M), the mean error inside the lips, on the plain loss's scale. ``mean``: the mean of
    M·L over every element, Eq. 3 taken literally (much smaller than the plain loss). A row whose mask is empty falls
    back to the plain loss.
    """
    if reduction not in LIP_LOSS_REDUCTIONS:
        raise ValueError(f"lip_loss must be one of {list(LIP_LOSS_REDUCTIONS)}, got {reduction!r}.")
    error = (prediction.float() - target.float()) ** 2
    dims = tuple(range(1, error.dim()))
    plain = error.mean(dim=dims)
    if lip_mask is None:
        return plain, torch.zeros_like(use_mask, dtype=torch.bool)
    weights = lip_mask.float()[:, None].to(error.device)  # one mask for every latent channel
    weighted = (error * weights).sum(dim=dims)
    mask_sum = weights.sum(dim=dims)
    masked = weighted / (mask_sum * error.shape[1]).clamp_min(1e-12) if reduction == "masked_mean" else weighted / error[0].numel()
    used = use_mask.to(error.device) & (mask_sum > 0)
    return torch.where(used, masked, plain), used
