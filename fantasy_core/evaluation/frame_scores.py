"""Per-video scores computed from per-frame features: identity consistency (IDC), subject and background dynamics
(SD / BD) and the LAION aesthetic score."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def identity_consistency(features: torch.Tensor) -> float:
    """VBench's subject consistency on per-frame (face) features [T, D]: for every frame i ≥ 1 the mean of
    max(0, cos(f_{i-1}, f_i)) and max(0, cos(f_0, f_i)), averaged over those frames. 1 for identical frames."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"identity consistency needs the features of at least 2 frames, [T, D]; got {list(features.shape)}.")
    unit = F.normalize(features.double(), dim=-1)
    to_previous = (unit[1:] * unit[:-1]).sum(-1).clamp(min=0)
    to_first = (unit[1:] * unit[:1]).sum(-1).clamp(min=0)
    return float(((to_previous + to_first) / 2).mean())


def identity_consistency_to_reference(features: torch.Tensor, reference: torch.Tensor) -> float:
    """Identity consistency against a reference image (the portrait): VBench's formula with the reference in the first
    frame's place. With r the reference [D] and f_1..f_T the frames' features [T, D] (T ≥ 1), f_0 := r, it is the
    mean over t = 1..T of (max(0, cos(f_{t-1}, f_t)) + max(0, cos(r, f_t))) / 2: every generated frame is compared
    with the one before it and with the reference (the first with the reference twice). Equals
    ``identity_consistency(torch.cat([reference[None], features]))``; 1 when every frame looks like the reference."""
    if features.dim() != 2 or features.shape[0] < 1 or reference.shape != features.shape[1:]:
        raise ValueError(
            f"identity consistency to a reference needs frame features [T, D] (T ≥ 1) and a reference [D]; got "
            f"{list(features.shape)} and {list(reference.shape)}."
        )
    return identity_consistency(torch.cat([reference[None].to(features.dtype), features]))


@dataclass(frozen=True)
class Dynamics:
    subject: float  # SD: mean optical-flow magnitude (pixels per frame pair) on the person
    background: float  # BD: the same on the rest of the frame
    pairs: int  # frame pairs measured


def dynamics(flows: torch.Tensor, person: torch.Tensor) -> Dynamics:
    """``flows`` [N, 2, H, W] between consecutive frames (pixels), ``person`` [N, H, W] the person mask of each pair's
    first frame (bool or 0..1, thresholded at 0.5): the mean flow magnitude on the person and on the background.
    A region absent from every frame scores NaN, which the summary counts as missing rather than as still."""
    if flows.dim() != 4 or flows.shape[1] != 2 or person.shape != (flows.shape[0], *flows.shape[2:]):
        raise ValueError(f"flows must be [N, 2, H, W] and the masks [N, H, W]; got {list(flows.shape)} and {list(person.shape)}.")
    magnitude = flows.double().square().sum(1).sqrt()
    inside = person > 0.5 if person.dtype != torch.bool else person

    def mean_over(region: torch.Tensor) -> float:
        return float(magnitude[region].mean()) if region.any() else float("nan")

    return Dynamics(mean_over(inside), mean_over(~inside), int(flows.shape[0]))


def aesthetic_score(embeddings: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> float:
    """VBench's aesthetic quality: CLIP ViT-L/14 image embeddings [T, 768], L2-normalised, through the LAION v1 linear
    head (``weight`` [1, 768], ``bias`` [1]), divided by 10 and averaged over frames: the paper's 0-1 scale."""
    if embeddings.dim() != 2 or weight.shape != (1, embeddings.shape[1]) or bias.shape != (1,):
        raise ValueError(
            f"the aesthetic head needs embeddings [T, D], weight [1, D] and bias [1]; got {list(embeddings.shape)}, "
            f"{list(weight.shape)} and {list(bias.shape)}."
        )
    scores = F.linear(F.normalize(embeddings.double(), dim=-1), weight.double(), bias.double())
    return float(scores.mean() / 10)
