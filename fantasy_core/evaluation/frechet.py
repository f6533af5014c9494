"""FID and FVD: the Fréchet distance between two Gaussians fitted to feature sets,
‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½), with the statistics accumulated in float64 as features stream in."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


class StatisticsError(ValueError):
    pass


@dataclass
class FeatureStatistics:
    """Running sums of a feature set: count, Σx and Σxxᵀ (float64, on the CPU), so any number of videos can stream
    through and the statistics can be cached and merged."""

    count: int
    total: torch.Tensor  # [D]
    outer: torch.Tensor  # [D, D]

    @classmethod
    def empty(cls, dim: int) -> FeatureStatistics:
        return cls(0, torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dim, dtype=torch.float64))

    def update(self, features: torch.Tensor) -> None:
        """Adds a batch of features [N, D]."""
        if features.dim() != 2 or features.shape[1] != self.total.shape[0]:
            raise StatisticsError(f"features must be [N, {self.total.shape[0]}]; got {list(features.shape)}.")
        batch = features.detach().to("cpu", torch.float64)
        if not torch.isfinite(batch).all():
            raise StatisticsError("the features hold NaN or infinite values: the feature network's weights or input are broken.")
        self.count += batch.shape[0]
        self.total += batch.sum(0)
        self.outer += batch.T @ batch

    def merged(self, other: FeatureStatistics) -> FeatureStatistics:
        return FeatureStatistics(self.count + other.count, self.total + other.total, self.outer + other.outer)

    def mean_and_covariance(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and the unbiased covariance (numpy's np.cov, as pytorch-fid uses)."""
        if self.count < 2:
            raise StatisticsError(f"a covariance needs at least 2 feature vectors; these statistics hold {self.count}.")
        mean = self.total / self.count
        covariance = (self.outer - self.count * torch.outer(mean, mean)) / (self.count - 1)
        return mean, covariance

    def save(self, path: str, description: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        torch.save({"count": self.count, "total": self.total, "outer": self.outer, "description": description}, path)

    @classmethod
    def load(cls, path: str) -> tuple[FeatureStatistics, str]:
        """Statistics cached by ``save`` and what they were made from (never executes pickled code)."""
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return cls(int(saved["count"]), saved["total"], saved["outer"]), str(saved["description"])


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(a: FeatureStatistics, b: FeatureStatistics) -> float:
    """The Fréchet distance of the two fitted Gaussians. Tr((Σ₁Σ₂)^½) is taken as Tr((Σ₁^½ Σ₂ Σ₁^½)^½): the same
    eigenvalues, from a symmetric matrix, so it stays real and exact where Σ₁Σ₂ is singular (fewer samples than
    dimensions), which pytorch-fid handles by adding 1e-6 to the diagonal."""
    mean_a, cov_a = a.mean_and_covariance()
    mean_b, cov_b = b.mean_and_covariance()
    if mean_a.shape != mean_b.shape:
        raise StatisticsError(
            f"the two feature sets differ in width ({mean_a.shape[0]} and {mean_b.shape[0]}): they come from different networks."
        )
    root_a = _psd_sqrt(cov_a)
    product = root_a @ cov_b @ root_a
    cross = torch.linalg.eigvalsh((product + product.T) / 2).clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross
    return float(distance.clamp(min=0))
