"""The frozen Wan2.1-I2V base, loaded with ComfyUI's own loader, and one training prediction through it: the inputs
are built with the model's own ComfyUI code (``process_latent_in``, ``concat_cond`` as WanImageToVideo's conditioning
reaches it, ``model_sampling.timestep``) and the WanModel's own forward runs, with the FantasyTalking modules tapped in
by the same injection layer as at inference. Gradient checkpointing uses ComfyUI's block-replace patch."""

from __future__ import annotations

import functools

import torch
from torch.utils.checkpoint import checkpoint

from fantasy_comfy.patch import wan_i2v_model
from fantasy_core.training.config import BASE_DTYPES
from fantasy_core.training.trainable import WanShape

from .encoders import model_path
from .rope_autograd import enable_rope_gradients


def _checkpointed_block(args: dict, extra: dict, *, block: torch.nn.Module, context_img_len: int | None) -> dict:
    """One Wan block under non-reentrant checkpointing. ComfyUI's ``original_block`` closes over its loop variable, so
    a recompute during backward (after the loop) would run the last block: the block is bound here at forward time.
    The options are copied for the same reason (``block_index`` is overwritten by later blocks)."""
    del extra
    options = dict(args["transformer_options"])

    def run(img, txt, vec, pe):
        return block(img, context=txt, e=vec, freqs=pe, context_img_len=context_img_len, transformer_options=options)

    return {"img": checkpoint(run, args["img"], args["txt"], args["vec"], args["pe"], use_reentrant=False)}


def checkpointed_blocks(dit: torch.nn.Module, context_img_len: int | None) -> dict:
    """ComfyUI block-replace patches (``patches_replace["dit"]``) that checkpoint every block of ``dit``."""
    return {
        ("double_block", i): functools.partial(_checkpointed_block, block=block, context_img_len=context_img_len)
        for i, block in enumerate(dit.blocks)
    }


class FrozenWan:
    def __init__(self, patcher, device: torch.device, gpu_memory_gb: float = 0.0):
        self.patcher = patcher
        self.base = patcher.model  # comfy.model_base.WAN21
        self.dit = wan_i2v_model(patcher)
        self.dit.requires_grad_(False)
        self.device, self.gpu_memory_gb = device, gpu_memory_gb  # where reload() puts the base

    @classmethod
    def load(cls, name: str, base_dtype: str, device: torch.device, gpu_memory_gb: float = 0.0) -> FrozenWan:
        import comfy.sd

        enable_rope_gradients()
        patcher = comfy.sd.load_diffusion_model(model_path("wan", name, "model.wan"), model_options={"dtype": BASE_DTYPES[base_dtype]})
        wan = cls(patcher, device, gpu_memory_gb)
        wan.reload()
        return wan

    def reload(self) -> None:
        """Puts the base where training keeps it (again after a validation render, which ComfyUI unloads)."""
        if self.gpu_memory_gb > 0:  # ComfyUI's low-VRAM loading: what does not fit is cast to the GPU block by block
            self.patcher.load(self.device, lowvram_model_memory=int(self.gpu_memory_gb * 2**30))
        else:
            self.patcher.load(self.device, full_load=True)

    @property
    def shape(self) -> WanShape:
        return WanShape(len(self.dit.blocks), self.dit.blocks[0].cross_attn.o.in_features)

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.base.manual_cast_dtype or self.base.get_dtype()

    def clean_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE latents as stored -> the model's latent space (what KSampler samples in)."""
        return self.base.process_latent_in(latents.float())

    def prediction(
        self,
        x_t: torch.Tensor,
        sigma: torch.Tensor,
        batch: dict,
        drop_reference: torch.Tensor,
        drop_prompt: torch.Tensor,
        gradient_checkpointing: bool,
    ) -> torch.Tensor:
        """The model's velocity [B, 16, T, h, w] (fp32) for x_t at σ, conditioned as ComfyUI conditions Wan I2V."""
        device, dtype = x_t.device, self.compute_dtype
        concat = self.base.concat_cond(
            noise=x_t,
            concat_latent_image=batch["reference_latents"].float().to(device),
            concat_mask=batch["reference_mask"].float().to(device),
            device=device,
        )
        # A dropped reference is ComfyUI's image-to-video input without a start image: zero latents and a zero mask.
        concat = torch.where(drop_reference.to(device)[:, None, None, None, None], torch.zeros((), device=device), concat)
        keep_prompt = (~drop_prompt).to(device, torch.float32)[:, None, None]
        context = batch["text"].to(device, torch.float32) * keep_prompt
        keep_reference = (~drop_reference).to(device, torch.float32)[:, None, None]
        clip_fea = batch["clip_vision"].to(device, torch.float32) * keep_reference
        options = {}
        if gradient_checkpointing:
            options["patches_replace"] = {"dit": checkpointed_blocks(self.dit, clip_fea.shape[-2])}
        out = self.dit(
            torch.cat([x_t, concat], dim=1).to(dtype),
            self.base.model_sampling.timestep(sigma.to(device)).float(),
            context.to(dtype),
            clip_fea=clip_fea.to(dtype),
            transformer_options=options,
        )
        return out.float()
