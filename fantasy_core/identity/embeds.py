"""The identity of the portrait as the identity module consumes it: L2-normalised ArcFace embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FaceEmbedding:
    vectors: torch.Tensor  # [T, face_dim] fp32, CPU, each row L2-normalised (T = 1: one token per portrait)
    arcface_model: str  # the ArcFace file that made it (the identity module must have been trained with the same)
    provider: str  # the onnxruntime execution provider that actually ran

    @classmethod
    def averaged(cls, embeddings: torch.Tensor, arcface_model: str, provider: str) -> FaceEmbedding:
        """Several photos of one person -> one token: the mean of their unit embeddings, re-normalised."""
        embeddings = torch.as_tensor(embeddings, dtype=torch.float32).reshape(-1, embeddings.shape[-1])
        mean = embeddings.mean(0, keepdim=True)
        return cls(mean / mean.norm(dim=-1, keepdim=True).clamp_min(1e-12), arcface_model, provider)
