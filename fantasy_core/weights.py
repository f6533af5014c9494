"""What every FantasyTalking weight file shares: its error type and the check that no weight is NaN or infinite."""

from __future__ import annotations

import torch


class CheckpointError(ValueError):
    """The file is not a usable FantasyTalking module file (wrong, corrupt, mismatched or damaged)."""


def all_finite(tensor: torch.Tensor) -> bool:
    if tensor.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        tensor = tensor.float()  # fp8 has no isfinite kernel
    return bool(torch.isfinite(tensor).all())
