"""One training forward: draws applied to a batch, the FantasyTalking modules' terms set on the injection layer's twins
(the same ``Injection`` and ``CrossAttentionTerm`` the nodes use, so what is trained is what runs), the frozen Wan's
prediction and the per-row loss. A ``torch.nn.Module`` so accelerate can wrap it (DDP, FSDP, DeepSpeed);
the frozen base is registered in it only when it is to be sharded."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from fantasy_core.audio.windows import compute_audio_windows
from fantasy_core.dit.attention import frame_groups
from fantasy_core.dit.injection import Injection, branch_terms
from fantasy_core.training.draws import SampleDraws
from fantasy_core.training.objective import noisy_latents, row_losses, velocity_target
from fantasy_core.training.trainable import TrainableModules

from .wan import FrozenWan


class TrainingStep(nn.Module):
    def __init__(
        self,
        modules: TrainableModules,
        wan: FrozenWan,
        stage: int,
        frames: int,
        identity_scale: float,
        lip_loss: str,
        gradient_checkpointing: bool,
        shard_base: bool = False,
    ):
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
        dit = wan.dit
        self.injection = Injection(len(dit.blocks), dit.blocks[0].cross_attn.num_heads)
        self.injection.install(dit)  # for the process: the twins add nothing between steps
        self._undo = None

    def branches(self, batch: dict, draws: SampleDraws, device) -> tuple[list, torch.Tensor | None]:
        """Each module's terms for this step (rows whose draw drops a modality do not get it) and the motion addition."""
        audio, dtype = self.trainable.audio, self.wan.compute_dtype
        features = batch["audio_features"].to(device, torch.float32)
        if self.stage == 1:  # clip level: every video token hears every audio token of its clip
            context, groups = audio.clip_context(features, device), None
        else:  # frame level: the official per-latent-frame windows
            windows = compute_audio_windows(features.shape[1], self.frames)
            context, groups = audio.frame_context(features, windows, device), frame_groups(windows.k_lens.tolist())
        hears = [i for i, dropped in enumerate(draws.drop_audio.tolist()) if not dropped]
        scales = (~draws.drop_audio).to(device, dtype)
        branches = [branch_terms(hears, scales, audio.keys_values(context, dtype), groups)]
        if self.trainable.identity is not None:  # the face comes from the reference: dropped with it
            identity = self.trainable.identity
            tokens = identity.identity_tokens(batch["face_embedding"][:, None].to(device), device)
            sees = [i for i, dropped in enumerate(draws.drop_reference.tolist()) if not dropped]
            scales = (~draws.drop_reference).to(device, dtype) * self.identity_scale
            branches.append(branch_terms(sees, scales, identity.keys_values(tokens, dtype)))
        addition = None
        if self.trainable.motion is not None:
            addition = self.trainable.motion(batch["omega"].to(device, torch.float32))
        return branches, addition

    def forward(self, batch: dict, draws: SampleDraws) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row loss [b] and whether each row used the lip-focused loss [b]. The terms stay set until ``release``
        (inside ``installed()``), so that checkpointed blocks recompute with them in the backward pass."""
        device = next(self.trainable.parameters()).device
        x0 = self.wan.clean_latents(batch["latents"].to(device))
        noise = draws.noise.to(device)
        x_t = noisy_latents(x0, noise, draws.sigma.to(device))
        branches, addition = self.branches(batch, draws, device)
        self.release()
        self._undo = self.injection.set_call(branches, addition)
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
        if self._undo is not None:
            self._undo()
            self._undo = None

    @contextmanager
    def installed(self):
        """Around forward and backward: the terms are cleared afterwards, also on an error."""
        try:
            yield
        finally:
            self.release()
