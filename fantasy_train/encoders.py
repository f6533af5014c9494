"""The GPU encoders of the data preparation, loaded with ComfyUI's own loaders from its models folders, the same
files the workflows use: Wan's VAE (clip latents and the I2V reference conditioning), UMT5 (captions), CLIP vision
(the reference frame) and wav2vec2-base-960h (the sound, prepared exactly as for inference)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from fantasy_comfy import model_folders
from fantasy_comfy.i2v import reference_latents
from fantasy_comfy.wav2vec import encode_voice, load_wav2vec

# folder in ComfyUI/models, what to download
MODEL_FOLDERS = {
    "vae": ("vae", "wan_2.1_vae.safetensors (Comfy-Org/Wan_2.1_ComfyUI_repackaged, split_files/vae/)"),
    "text_encoder": (
        "text_encoders",
        "umt5_xxl_fp8_e4m3fn_scaled.safetensors (Comfy-Org/Wan_2.1_ComfyUI_repackaged, split_files/text_encoders/)",
    ),
    "clip_vision": ("clip_vision", "clip_vision_h.safetensors (Comfy-Org/Wan_2.1_ComfyUI_repackaged, split_files/clip_vision/)"),
    "wan": (
        "diffusion_models",
        "wan2.1_i2v_720p_14B_bf16.safetensors (Comfy-Org/Wan_2.1_ComfyUI_repackaged, split_files/diffusion_models/)",
    ),
}


class MissingModelError(FileNotFoundError):
    pass


def model_path(kind: str, name: str, option: str | None = None) -> str:
    """A file name in its ComfyUI models folder, or a path to the file. ``option``: how the user gave it, for the
    message (default: the command-line flag)."""
    import folder_paths

    if os.path.isfile(name):
        return name
    folder, download = MODEL_FOLDERS[kind]
    found = folder_paths.get_full_path(folder, name) if folder in folder_paths.folder_names_and_paths else None
    if found is None:
        searched = ", ".join(folder_paths.get_folder_paths(folder)) if folder in folder_paths.folder_names_and_paths else folder
        raise MissingModelError(
            f"{option or command_line_option(kind)}: '{name}' was not found in {searched}. Put {download} there, or give the file's path."
        )
    return found


@dataclass
class DatasetEncoders:
    vae: object  # comfy.sd.VAE
    text_encoder: object  # comfy.sd.CLIP (UMT5-XXL, type wan)
    clip_vision: object  # comfy.clip_vision.ClipVisionModel
    wav2vec: object  # the pack's Wav2VecAudioEncoder (ComfyUI's wav2vec2)

    def latents(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [F, H, W, 3] -> Wan VAE latents [16, latent frames, H / 8, W / 8]."""
        return self.vae.encode(torch.from_numpy(frames).float() / 255)[0]

    def reference_latents(self, first_frame: np.ndarray, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """What Wan image-to-video conditions on (as core WanImageToVideo builds it): the latents of the reference
        frame followed by mid-grey frames [16, T, h, w], and the mask [1, T, h, w] that is 0 on the first latent frame."""
        height, width = first_frame.shape[:2]
        start = torch.from_numpy(first_frame).float()[None] / 255
        latents, mask = reference_latents(self.vae, start, width, height, num_frames)
        return latents[0], mask[0]

    def text(self, caption: str) -> torch.Tensor:
        """UMT5 token embeddings [tokens, 4096] of the caption, without the zero padding ComfyUI adds up to 512."""
        cond = self.text_encoder.encode_from_tokens(self.text_encoder.tokenize(caption))[0]
        used = int(cond.abs().sum(-1).nonzero().max()) + 1 if cond.abs().sum() > 0 else 1
        return cond[:used].float().cpu()

    def clip_vision_features(self, frames: np.ndarray) -> torch.Tensor:
        """Penultimate CLIP-vision states [B, 257, 1280] of reference frames [B, H, W, 3] (no crop, as the workflows)."""
        output = self.clip_vision.encode_image(torch.from_numpy(frames).float() / 255, crop=False)
        return output["penultimate_hidden_states"].float().cpu()

    def audio_features(self, waveform: torch.Tensor) -> torch.Tensor:
        """wav2vec2 last hidden state [tokens, 768] of a prepared 16 kHz segment (normalised inside, as inference)."""
        return encode_voice(self.wav2vec, waveform)


def command_line_option(kind: str) -> str:
    return "--" + kind.replace("_", "-")


def load_encoders(vae: str, text_encoder: str, clip_vision: str, wav2vec: str, option=command_line_option) -> DatasetEncoders:
    """``option(kind)``: how the user named each file, for the messages (default: the command-line flags)."""
    import comfy.clip_vision
    import comfy.sd
    import comfy.utils

    model_folders.register_folders()
    paths, missing = {}, []
    for kind, name in (("vae", vae), ("text_encoder", text_encoder), ("clip_vision", clip_vision), ("wav2vec", wav2vec)):
        try:
            paths[kind] = (
                (wav2vec if os.path.exists(wav2vec) else model_folders.wav2vec_path(wav2vec))
                if kind == "wav2vec"
                else model_path(kind, name, option(kind))
            )
        except FileNotFoundError as error:
            missing.append(str(error) if kind != "wav2vec" else f"{option(kind)}: {error}")
    if missing:  # every missing file at once, so one download round fixes them all
        raise MissingModelError("\n".join(missing))
    vae_model = comfy.sd.VAE(sd=comfy.utils.load_torch_file(paths["vae"], safe_load=True))
    text_model = comfy.sd.load_clip(ckpt_paths=[paths["text_encoder"]], clip_type=comfy.sd.CLIPType.WAN)
    vision_model = comfy.clip_vision.load(paths["clip_vision"])
    if vision_model is None:
        raise ValueError(
            f"{option('clip_vision')}: {paths['clip_vision']} is not a CLIP-vision model ComfyUI knows. Use clip_vision_h.safetensors."
        )
    return DatasetEncoders(vae_model, text_model, vision_model, load_wav2vec(paths["wav2vec"]))
