"""The aesthetic score, VBench's aesthetic quality: the CLIP ViT-L/14 image embedding of each frame, L2-normalised,
through the LAION aesthetic predictor v1 (a linear head), divided by 10 and averaged over the frames.

CLIP is Hugging Face's ``openai/clip-vit-large-patch14`` folder run by transformers' CLIPVisionModelWithProjection
(``image_embeds``, the projected embedding OpenAI's ``encode_image`` returns); the head is LAION's
``sa_0_4_vit_l_14_linear.pth`` (``weight`` [1, 768], ``bias`` [1]), read without executing pickled code."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..weights import CheckpointError, all_finite, read_weights_file
from .catalog import BY_KEY
from .dino import import_transformers, load_hf_folder, normalise, read_folder_config, require_images, resize_shorter_side
from .frame_scores import aesthetic_score

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's constants (VBench's clip_transform)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HEAD_RESOLUTION = 224  # the LAION v1 head was fitted to ViT-L/14 embeddings of 224 px images (not the -336 model)
TEXT_SIDE = ("text_model.", "text_projection.", "logit_scale")  # a full CLIPModel folder also holds the text tower


@dataclass(frozen=True)
class AestheticProtocol:
    """What the aesthetic score depends on; written beside every result. Each scored frame is resized as VBench's
    ``clip_transform`` does: pixels as floats, the shorter side to ``resolution`` (bicubic, antialiased only when
    ``antialias``: VBench's tensor resize is not, OpenAI's PIL preprocessing is), the centre ``resolution`` square
    cropped, / 255, CLIP's mean and std (the folder's ``preprocessor_config.json`` values where it has them)."""

    frame_stride: int = 1  # every frame, as VBench
    resolution: int = HEAD_RESOLUTION
    antialias: bool = False

    def __post_init__(self):
        if self.frame_stride < 1:
            raise ValueError(f"AestheticProtocol.frame_stride must be 1 or more; got {self.frame_stride}.")


@dataclass(frozen=True, eq=False)
class AestheticScorer:
    model: torch.nn.Module  # CLIPVisionModelWithProjection
    weight: torch.Tensor  # [1, D] float32, CPU
    bias: torch.Tensor  # [1]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    normalisation: str  # where mean and std came from: the folder's preprocessor_config.json or CLIP's constants
    image_size: int  # the model's input side


def preprocessor_statistics(folder: str) -> tuple[tuple, tuple, str]:
    """(mean, std, source): the folder's preprocessor_config.json image_mean/image_std, else CLIP's constants."""
    path = os.path.join(folder, "preprocessor_config.json")
    if not os.path.isfile(path):
        return CLIP_MEAN, CLIP_STD, "CLIP's constants (the folder has no preprocessor_config.json)"
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        mean, std = tuple(float(v) for v in config["image_mean"]), tuple(float(v) for v in config["image_std"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"'{path}' has no readable image_mean and image_std ({type(error).__name__}: {error}). Download it again from "
            f"{BY_KEY['clip'].hf_repo}, or delete it to use CLIP's constants."
        ) from error
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise CheckpointError(f"'{path}' gives image_mean {list(mean)} and image_std {list(std)}; three values each, std > 0, expected.")
    return mean, std, "preprocessor_config.json"


def read_linear_head(path: str, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight [1, width], bias [1]) of the LAION v1 head file; the v2 MLP and other layouts are refused."""
    entry = BY_KEY["aesthetic_head"]
    advice = f"Download {entry.name} ({entry.source}: {entry.url}) into the evaluation weights folder."
    if not os.path.isfile(path):
        raise CheckpointError(f"The LAION aesthetic head '{path}' does not exist. {advice}")
    state = read_weights_file(path, CheckpointError, "LAION aesthetic head")
    keys = sorted(state) if isinstance(state, dict) else []
    if any(str(key).startswith("layers.") for key in keys):
        raise CheckpointError(
            f"'{path}' is the LAION aesthetic predictor v2 (an MLP, keys {keys[:3]}...), which gives a different "
            f"number; the score follows VBench with the v1 linear head. {advice}"
        )
    if keys != ["bias", "weight"]:
        raise CheckpointError(
            f"'{path}' is not the LAION v1 linear head: it holds {keys[:6] or type(state).__name__}, not weight and bias. {advice}"
        )
    weight, bias = state["weight"], state["bias"]
    if weight.dim() != 2 or weight.shape[0] != 1 or bias.shape != (1,) or not weight.is_floating_point():
        raise CheckpointError(
            f"'{path}' has weight {list(weight.shape)} and bias {list(bias.shape)}; the v1 head's are [1, D] and [1]. {advice}"
        )
    if weight.shape[1] != width:
        raise CheckpointError(
            f"The aesthetic head '{path}' takes {weight.shape[1]}-d embeddings but the CLIP model gives {width}-d ones: the "
            f"v1 head belongs with {BY_KEY['clip'].hf_repo} (768-d). Use that pair."
        )
    if not (all_finite(weight) and all_finite(bias)):
        raise CheckpointError(f"The aesthetic head '{path}' holds NaN or infinite values. {advice}")
    return weight.float().clone(), bias.float().clone()


def load_aesthetic(clip_folder: str, head_path: str, device="cpu") -> AestheticScorer:
    """CLIP ViT-L/14 (a full CLIPModel folder, or a vision-only one with its projection) and the LAION v1 head."""
    settings = read_folder_config(clip_folder, "clip", "CLIP", ("clip", "clip_vision_model"))
    transformers = import_transformers("The aesthetic score (CLIP)")
    config = transformers.CLIPVisionConfig.from_pretrained(clip_folder, local_files_only=True)
    if settings["model_type"] == "clip" and "projection_dim" in settings:
        config.projection_dim = settings["projection_dim"]  # CLIPModel's visual projection width is the top-level one
    model = load_hf_folder(transformers.CLIPVisionModelWithProjection, clip_folder, "clip", "CLIP", TEXT_SIDE, device, config=config)
    image_size = int(model.config.image_size)
    if image_size != HEAD_RESOLUTION:
        raise CheckpointError(
            f"The CLIP folder '{clip_folder}' takes {image_size} px images; the LAION v1 head was fitted to "
            f"{BY_KEY['clip'].hf_repo} at {HEAD_RESOLUTION} px. Download that model (not the -336 one)."
        )
    weight, bias = read_linear_head(head_path, int(model.config.projection_dim))
    mean, std, source = preprocessor_statistics(clip_folder)
    return AestheticScorer(model, weight, bias, mean, std, source, image_size)


def clip_embeddings(scorer: AestheticScorer, frames, protocol: AestheticProtocol = AestheticProtocol(), batch: int = 16) -> torch.Tensor:
    """``image_embeds`` [T', D] (float32, CPU) of every ``frame_stride``-th frame of uint8 RGB frames [T, H, W, 3]."""
    frames = require_images(frames, "the frames")[:: protocol.frame_stride]
    if not len(frames):
        raise ValueError("the aesthetic score needs at least one frame; got none.")
    if protocol.resolution != scorer.image_size:
        raise ValueError(f"AestheticProtocol.resolution is {protocol.resolution} but the CLIP model takes {scorer.image_size} px images.")
    parameter = next(scorer.model.parameters())
    side = protocol.resolution
    embeddings = []
    with torch.inference_mode():
        for start in range(0, len(frames), batch):
            pixels = torch.from_numpy(frames[start : start + batch]).to(parameter.device).permute(0, 3, 1, 2).float()
            pixels = resize_shorter_side(pixels, side, "bicubic", protocol.antialias)
            height, width = pixels.shape[-2:]
            top, left = int(round((height - side) / 2.0)), int(round((width - side) / 2.0))  # torchvision's CenterCrop
            pixels = normalise(pixels[..., top : top + side, left : left + side] / 255, scorer.mean, scorer.std)
            embeddings.append(scorer.model(pixel_values=pixels.to(parameter.dtype)).image_embeds.float().cpu())
    return torch.cat(embeddings)


def aesthetic_frame_scores(
    scorer: AestheticScorer, frames, protocol: AestheticProtocol = AestheticProtocol(), batch: int = 16
) -> torch.Tensor:
    """Each scored frame's score [T'] (float64): the head on the normalised embedding, / 10 (the paper's 0-1 scale)."""
    unit = F.normalize(clip_embeddings(scorer, frames, protocol, batch).double(), dim=-1)
    return F.linear(unit, scorer.weight.double(), scorer.bias.double())[:, 0] / 10


def video_aesthetic(scorer: AestheticScorer, frames, protocol: AestheticProtocol = AestheticProtocol(), batch: int = 16) -> dict:
    """One video's row: ``aesthetic`` (the mean over the scored frames, ``frame_scores.aesthetic_score``) and
    ``aesthetic_frames`` (how many frames were scored)."""
    embeddings = clip_embeddings(scorer, frames, protocol, batch)
    return {"aesthetic": aesthetic_score(embeddings, scorer.weight, scorer.bias), "aesthetic_frames": len(embeddings)}
