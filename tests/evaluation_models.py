"""The metric weights in their real layouts with random values, written into one folder under the catalog's names
(as ComfyUI/models/evaluation holds them): SyncNet, RAFT-large and the FID Inception at their real sizes (fixed
architectures), DINO, CLIP and SAM as tiny Hugging Face folders, the LAION head to match, and an I3D TorchScript stand-in
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


def random_fid_state() -> dict[str, torch.Tensor]:
    """pytorch-fid's layout, from torchvision itself, with weights scaled so activations neither vanish nor explode
    through 90-odd layers (torchvision's default initialisation leaves features of 1e-8)."""
    from torchvision.models import inception_v3

    generator = torch.Generator().manual_seed(0)
    state = inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False).state_dict()
    for key, value in state.items():
        if key.endswith("conv.weight"):
            value.copy_(torch.randn(value.shape, generator=generator) * (2 / value[0].numel()) ** 0.5)
        elif key.endswith(("bn.weight", "running_var")):
            value.copy_(0.75 + 0.5 * torch.rand(value.shape, generator=generator))
        elif key.endswith(("bn.bias", "running_mean")):
            value.copy_(0.1 * torch.randn(value.shape, generator=generator))
    return state


def write_inception(folder: str) -> None:
    torch.save(random_fid_state(), os.path.join(folder, "pt_inception-2015-12-05-6726825d.pth"))


class StandInI3D(torch.nn.Module):
    """StyleGAN-V's I3D call signature, [B, 3, T, H, W] -> [B, 400]: features from each clip's colour statistics, so
    different videos give different features."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(4)
        self.project = torch.nn.Parameter(torch.randn(12, 400, generator=generator))

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 255 * 2 - 1
        motion = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(2, 3, 4))
        stats = torch.cat([x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4)), x.amax(dim=(2, 3, 4)) - x.amin(dim=(2, 3, 4)), motion], 1)
        return stats @ self.project


def write_i3d(folder: str) -> None:
    torch.jit.script(StandInI3D()).save(os.path.join(folder, "i3d_torchscript.pt"))


def write_sam(folder: str) -> str:
    """facebook/sam-vit-base's folder layout (config.json, model.safetensors, preprocessor_config.json) with a tiny SAM:
    the real 1024-px input and 16-px patches, so the processor is the real one, but one windowed 16-wide encoder layer
    and 16-wide prompt encoder and mask decoder (about 0.02 s a frame on one core)."""
    import transformers

    torch.manual_seed(5)
    width = 16
    vision = dict(
        hidden_size=width,
        output_channels=width,
        num_hidden_layers=1,
        num_attention_heads=2,
        global_attn_indexes=[],
        num_pos_feats=width // 2,
        mlp_dim=2 * width,
        initializer_range=0.2,  # SAM's default 1e-10 makes the image embedding all but constant
    )
    prompt = dict(hidden_size=width, mask_input_channels=4)
    decoder = dict(hidden_size=width, mlp_dim=2 * width, num_attention_heads=2, iou_head_hidden_dim=width)
    config = transformers.SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    target = os.path.join(folder, "sam-vit-base")
    transformers.SamModel(config).save_pretrained(target)
    transformers.SamImageProcessor().save_pretrained(target)  # preprocessor_config.json, as on the Hub
    return target


def write_face_recon(folder: str) -> str:
    """Deep3DFaceRecon's epoch_20.pth layout: a dict whose 'net_recon' entry is the R-Net's state dict (torchvision
    ResNet-50 keys under backbone.*, no fc; final_layers.0-6 as 1x1 convolutions 2048 -> 80, 64, 80, 3, 27, 2, 1), beside
    the optimizer and scheduler states its training saves. A random ResNet's pooled features share a large common part
    (every picture's coefficients point the same way), so the final biases subtract the mean feature of a few smooth
    random pictures: the coefficients then tell pictures apart."""
    import torch.nn.functional as F

    from fantasy_core.evaluation.expression import FaceReconNet

    torch.manual_seed(5)
    generator = torch.Generator().manual_seed(5)
    model = FaceReconNet().eval()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name.endswith("running_mean"):
                value.copy_(0.1 * torch.randn(value.shape, generator=generator))
            elif name.endswith("running_var"):
                value.copy_(0.75 + 0.5 * torch.rand(value.shape, generator=generator))
        pictures = F.interpolate(torch.rand(2, 3, 7, 7, generator=generator), size=(224, 224), mode="bicubic").clamp(0, 1)
        mean_feature = model.backbone(pictures).mean(0)
        for layer in model.final_layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) / 2048**0.5)
            layer.bias.copy_(-layer.weight[:, :, 0, 0] @ mean_feature)
    path = os.path.join(folder, "deep3dfacerecon_epoch_20.pth")
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0]}]}
    torch.save({"net_recon": model.state_dict(), "opt_00": optimizer, "sched_00": {"last_epoch": 20, "base_lrs": [1e-4]}}, path)
    return path


WRITERS = {
    "syncnet": write_syncnet,
    "raft": write_raft,
    "dino": write_dino,
    "clip": write_clip,
    "inception": write_inception,
    "i3d": write_i3d,
    "sam": write_sam,
    "face_recon": write_face_recon,
}


def write_weights(folder: str, keys=("syncnet", "raft", "dino", "clip")) -> str:
    os.makedirs(folder, exist_ok=True)
    for key in keys:
        WRITERS[key](folder)
    return folder
