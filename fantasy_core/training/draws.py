"""Every random choice of a training step, drawn per sample from a generator seeded by (seed, step, sample): the
noise, σ, which conditions are dropped and whether the lip-focused loss is used. A sample's draws therefore do not
depend on which process computes it or how the batch is split, and a resumed run draws what the uninterrupted one
did. The order samples are visited in is a pure function of (seed, epoch) as well."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .objective import shifted_sigma


def generator_for(*key: int) -> torch.Generator:
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@dataclass(frozen=True)
class DropoutRates:
    """Independent per-sample probabilities of training without a condition (the paper: 0.1 each)."""

    reference: float = (
        0.1  # the reference image: ComfyUI's no-image I2V input (zero latents, zero mask), zero CLIP-vision features, no identity
    )
    audio: float = 0.1  # the audio: the audio branch is off for the sample (the inference negative pass)
    prompt: float = 0.1  # the prompt: an all-zero text context

    def __post_init__(self):
        for name in ("reference", "audio", "prompt"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"dropout.{name} must lie between 0 and 1, got {getattr(self, name)}.")


@dataclass(frozen=True)
class SampleDraws:
    sigma: torch.Tensor  # [B] fp32
    noise: torch.Tensor  # [B, C, T, h, w] fp32
    drop_reference: torch.Tensor  # [B] bool
    drop_audio: torch.Tensor  # [B] bool
    drop_prompt: torch.Tensor  # [B] bool
    lip_loss: torch.Tensor  # [B] bool: p > η


def draw(
    seed: int, step: int, samples: list[int], latent_shape: tuple[int, ...], shift: float, rates: DropoutRates, eta: float
) -> SampleDraws:
    """``samples``: the global positions (in the step's whole batch) of this process's rows."""
    sigma, noise, flags = [], [], []
    for sample in samples:
        gen = generator_for(seed, step, sample)
        sigma.append(shifted_sigma(torch.rand(1, generator=gen), shift))
        flags.append(torch.rand(4, generator=gen))
        noise.append(torch.randn(latent_shape, generator=gen))
    flags = torch.stack(flags)
    return SampleDraws(
        sigma=torch.cat(sigma),
        noise=torch.stack(noise),
        drop_reference=flags[:, 0] < rates.reference,
        drop_audio=flags[:, 1] < rates.audio,
        drop_prompt=flags[:, 2] < rates.prompt,
        lip_loss=flags[:, 3] > eta,
    )


def sample_order(seed: int, epoch: int, size: int) -> list[int]:
    return torch.randperm(size, generator=generator_for(seed, 1 << 30, epoch)).tolist()


def batch_samples(seed: int, step: int, dataset_size: int, global_batch: int) -> list[int]:
    """Dataset indices of the step's whole batch (all processes, all accumulation micro-steps): consecutive positions
    of a stream of epochs, each a fresh permutation."""
    orders: dict[int, list[int]] = {}
    indices = []
    for position in range(step * global_batch, (step + 1) * global_batch):
        epoch, offset = divmod(position, dataset_size)
        if epoch not in orders:
            orders[epoch] = sample_order(seed, epoch, dataset_size)
        indices.append(orders[epoch][offset])
    return indices
