"""The metric weights in their real layouts with random values, written into one folder under the catalog's names
(as ComfyUI/models/evaluation holds them): SyncNet, RAFT-large and the FID Inception at their real sizes (fixed
architectures), DINO and CLIP as tiny Hugging Face folders, the LAION head to match, and an I3D TorchScript stand-in
with the real call signature."""

from __future__ import annotations

import os

import torch

TINY_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=224, initializer_range=0.5)
CLIP_PROJECTION = 24


def write_syncnet(folder: str) -> None:
    from fantasy_core.lipsync.syncnet import SyncNet

    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), os.path.join(folder, "syncnet_v2.model"))


def write_raft(folder: str) -> None:
    from torchvision.models.optical_flow import raft_large

    torch.manual_seed(1)
    torch.save(raft_large(weights=None).state_dict(), os.path.join(folder, "raft_large_C_T_SKHT_V2-ff5fadd5.pth"))


def write_dino(folder: str) -> None:
    import transformers

    torch.manual_seed(2)
    config = transformers.ViTConfig(patch_size=16, **TINY_VIT)
    transformers.ViTModel(config, add_pooling_layer=False).save_pretrained(os.path.join(folder, "dino-vitb16"))


def write_clip(folder: str) -> None:
    import transformers

    torch.manual_seed(3)
    text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=224, patch_size=32)
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=CLIP_PROJECTION)
    target = os.path.join(folder, "clip-vit-large-patch14")
    transformers.CLIPModel(config).save_pretrained(target)
    transformers.CLIPImageProcessor().save_pretrained(target)
    torch.save(torch.nn.Linear(CLIP_PROJECTION, 1).state_dict(), os.path.join(folder, "sa_0_4_vit_l_14_linear.pth"))


WRITERS = {"syncnet": write_syncnet, "raft": write_raft, "dino": write_dino, "clip": write_clip}


def write_weights(folder: str, keys=tuple(WRITERS)) -> str:
    os.makedirs(folder, exist_ok=True)
    for key in keys:
        WRITERS[key](folder)
    return folder
