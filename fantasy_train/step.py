"""One training forward: draws applied to a batch, the FantasyTalking modules installed through the injection layer
(the same ``DiTInjection``, ``AudioBranch``, ``IdentityBranch`` and ``MotionTap`` that the nodes install), the
frozen Wan's prediction and the per-row loss. A ``torch.nn.Module`` so accelerate can wrap it (DDP, FSDP, DeepSpeed);
the frozen base is registered in it only when it is to be sharded."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from fantasy_core.audio.adapter import AudioBranch
from fantasy_core.audio.windows import compute_audio_windows
from fantasy_core.dit.injection import DiTInjection
from fantasy_core.identity.model import IdentityBranch
from fantasy_core.motion.model import MotionTap
from fantasy_core.training.draws import SampleDraws
from fantasy_core.training.modules import TrainableModules
from fantasy_core.training.objective import noisy_latents, row_losses, velocity_target

from .wan import FrozenWan


class TrainingStep(nn.Module):
    def __init__(self, modules: TrainableModules, wan: FrozenWan, stage: int, frames: int, identity_scale: float, lip_loss: str,
                 gradient_checkpointing: bool, shard_base: bool = False):
        super().__init__()
        self.trainable = modules
        if shard_base:
            self.base = wan.dit  # registered: FSDP / ZeRO-3 shard it (its parameters stay frozen)
        self.__dict__["wan"] = wan  # not registered otherwise: DDP neither broadcasts nor tracks the frozen base
        self.stage = stage
        self.frames = frames  # video frames per clip, for the audio windows
        self.identity_scale = identity_scale
        self.lip_loss = lip_loss
        self.gradient_checkpointing = gradient_checkpointing
        self._injection: DiTInjection | None = None

    def branches(self, batch: dict, draws: SampleDraws, device) -> tuple[list, list]:
        audio = self.trainable.audio
        features = batch["audio_features"].to(device, torch.float32)
        if self.stage == 1:  # clip level: every video token hears every audio token of its clip
            context = audio.clip_context(features, device)
        else:  # frame level: the official per-latent-frame windows
            windows = compute_audio_windows(features.shape[1], self.frames)
            context = audio.frame_context(features, windows, device)
        branches = [AudioBranch(audio, context, (~draws.drop_audio).to(device, torch.float32))]
        if self.trainable.identity is not None:  # the face comes from the reference: dropped with it
            tokens = self.trainable.identity.identity_tokens(batch["face_embedding"][:, None].to(device), device)
            scales = (~draws.drop_reference).to(device, torch.float32) * self.identity_scale
            branches.append(IdentityBranch(self.trainable.identity, tokens, scales))
        taps = []
        if self.trainable.motion is not None:
            omegas = batch["omega"].to(device, torch.float32)
            taps.append(MotionTap(self.trainable.motion, omegas, torch.ones(omegas.shape[0], dtype=torch.bool, device=device)))
        return branches, taps

    def forward(self, batch: dict, draws: SampleDraws) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row loss [b] and whether each row used the lip-focused loss [b]. The modules stay installed until
        ``release`` (inside ``installed()``), so that checkpointed blocks recompute with them in the backward pass."""
        device = next(self.trainable.parameters()).device
        x0 = self.wan.clean_latents(batch["latents"].to(device))
        noise = draws.noise.to(device)
        x_t = noisy_latents(x0, noise, draws.sigma.to(device))
        branches, taps = self.branches(batch, draws, device)
        self.release()
        self._injection = DiTInjection(self.wan.dit, branches, taps).__enter__()
        prediction = self.wan.prediction(x_t, draws.sigma, batch, draws.drop_reference, draws.drop_prompt, self.gradient_checkpointing)
        lip_mask = batch["lip_mask"].to(device) if self.stage == 2 else None
        losses, used = row_losses(prediction, velocity_target(x0, noise), lip_mask, draws.lip_loss, self.lip_loss)
        return losses + self._every_parameter_takes_part(), used

    def _every_parameter_takes_part(self) -> torch.Tensor:
        """Zero, touching every trainable parameter: a branch no row of this process uses (audio or reference dropped
        in all of them) still gets a zero gradient. FSDP2 reduces exactly the parameters that have gradients and every
        process must reduce the same ones; DDP then needs no search for unused parameters."""
        return sum(p.sum() for p in self.trainable.parameters() if p.requires_grad) * 0.0

    def release(self) -> None:
        if self._injection is not None:
            self._injection.remove()
            self._injection = None

    @contextmanager
    def installed(self):
        """Around forward and backward: the modules' taps are removed afterwards, also on an error."""
        try:
            yield
        finally:
            self.release()
