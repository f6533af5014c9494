"""IDC, identity consistency: DINO ViT-B/16 features of the face in every frame, compared by VBench's subject
consistency formula (``frame_scores.identity_consistency``), against the first frame with a face or the portrait.

DINO is Hugging Face's ``facebook/dino-vitb16`` folder (config.json + weights) run by transformers' ViTModel without
its pooler; a frame's feature is the CLS token of the last hidden state (after the final layer norm), as the
original DINO's forward returns. Preprocessing is VBench's subject-consistency transform: pixels / 255, the shorter
side resized to 224 (bilinear, no antialiasing, no crop), ImageNet mean and std."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..identity.face import crop_face, require_rgb_uint8, square_crop_box
from ..weights import CheckpointError
from .catalog import BY_KEY
from .frame_scores import identity_consistency, identity_consistency_to_reference

DINO_SHORT_SIDE = 224  # VBench's dino_transform(224)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
REFERENCES = ("first_frame", "portrait")


@dataclass(frozen=True)
class IdcProtocol:
    """What IDC depends on; written beside every result.

    The face of a frame is its largest detected face of at least ``min_face_size`` px (frames without one are left
    out, and "previous frame" then means the previous frame with a face); its crop is a square of the face side
    x (1 + 2 ``crop_margin``) around it (the pack's Face Crop default margin, so IDC sees what that node shows),
    padded with black where it leaves the picture, resized to ``crop_size`` (antialiased bilinear). The crops are
    square and 224 px, so DINO's own resize to 224 leaves them as they are; a non-square input to ``dino_features``
    keeps its aspect ratio (VBench's resize has no crop) and DINO's position embeddings are interpolated to its grid.

    ``reference``: ``"first_frame"``, VBench's reading (f_0 is the first frame with a face; the paper's IDC), or
    ``"portrait"``, the reading against the source portrait (f_0 is the portrait's face, and every frame, the first
    included, is compared with it: ``frame_scores.identity_consistency_to_reference``).
    """

    crop_margin: float = 0.3
    crop_size: int = 224
    min_face_size: int = 50  # pixels, as SyncProtocol
    reference: str = "first_frame"

    def __post_init__(self):
        if self.reference not in REFERENCES:
            raise ValueError(f"IdcProtocol.reference must be one of {list(REFERENCES)}; got {self.reference!r}.")
        if self.crop_margin < 0 or self.crop_size < 16 or self.min_face_size < 0:
            raise ValueError(
                f"IdcProtocol needs crop_margin >= 0, crop_size >= 16 and min_face_size >= 0; got {self.crop_margin}, "
                f"{self.crop_size} and {self.min_face_size}."
            )


def import_transformers(purpose: str):
    try:
        import transformers
    except ImportError as error:
        raise ImportError(f"{purpose} needs transformers (ComfyUI installs it): pip install transformers. ({error})") from error
    return transformers


def download_advice(key: str, folder: str) -> str:
    entry = BY_KEY[key]
    return (
        f"Download {entry.hf_repo} from Hugging Face (config.json and model.safetensors or pytorch_model.bin) into "
        f"'{folder}' (the catalog's folder '{entry.name}' in ComfyUI/models/evaluation/)."
    )


def read_folder_config(folder: str, key: str, what: str, model_types: tuple[str, ...]) -> dict:
    """config.json of a Hugging Face folder, refused unless its model_type is one of ``model_types``."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        found = "does not exist" if not os.path.isdir(folder) else "has no config.json"
        raise CheckpointError(f"The {what} folder '{folder}' {found}. {download_advice(key, folder)}")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"'{path}' is not readable JSON ({error}). {download_advice(key, folder)}") from error
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in model_types:
        raise CheckpointError(
            f"The {what} folder '{folder}' holds a '{model_type}' model, not {' or '.join(repr(t) for t in model_types)}. "
            f"{download_advice(key, folder)}"
        )
    return config


def load_hf_folder(model_class, folder: str, key: str, what: str, ignorable: tuple[str, ...], device, **options):
    """``model_class.from_pretrained(folder)`` (float32, local files only, pickle-free as transformers reads them),
    refused unless it holds every weight the architecture needs, each of the config's shape, and nothing but the
    ``ignorable`` key prefixes besides. transformers' own loading report is silenced: the refusal says it better.
    Frozen, in eval mode, on ``device``."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = model_class.from_pretrained(
            folder, local_files_only=True, output_loading_info=True, ignore_mismatched_sizes=True, dtype=torch.float32, **options
        )
    except (OSError, ValueError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"The {what} folder '{folder}' could not be loaded ({type(error).__name__}: {first_line}). {download_advice(key, folder)}"
        ) from error
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(info["missing_keys"])
    foreign = sorted(name for name in info["unexpected_keys"] if not name.startswith(ignorable))
    reshaped = sorted(info["mismatched_keys"], key=str)
    problems = [f"lacks {len(missing)} weight(s) the model needs (e.g. {missing[0]})"] if missing else []
    problems += [f"holds {len(foreign)} weight(s) the model does not have (e.g. {foreign[0]})"] if foreign else []
    if reshaped:
        name, found, expected = reshaped[0]
        problems.append(
            f"has {len(reshaped)} weight(s) of another shape than its config.json gives (e.g. {name}: {list(found)}, not {list(expected)})"
        )
    if problems:
        raise CheckpointError(f"The {what} folder '{folder}' {' and '.join(problems)}: it is another model. {download_advice(key, folder)}")
    return model.to(device).eval().requires_grad_(False)


def load_dino(folder: str, device="cpu"):
    """DINO ViT-B/16 (``facebook/dino-vitb16``) from its Hugging Face folder as a transformers ViTModel without pooler."""
    read_folder_config(folder, "dino", "DINO", ("vit",))
    transformers = import_transformers("IDC (DINO features)")
    return load_hf_folder(transformers.ViTModel, folder, "dino", "DINO", ("pooler.",), device, add_pooling_layer=False)


def require_images(images, what: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{what} must be uint8 RGB images [N, H, W, 3]; got a {images.dtype} array of shape {list(images.shape)}.")
    return images


def resize_shorter_side(pixels: torch.Tensor, side: int, mode: str, antialias: bool) -> torch.Tensor:
    """[N, C, H, W] with the shorter side ``side`` and the longer one scaled and truncated, as torchvision's
    ``Resize(side)`` computes it."""
    height, width = pixels.shape[-2:]
    size = (side, int(side * width / height)) if height <= width else (int(side * height / width), side)
    if size == (height, width):
        return pixels
    return F.interpolate(pixels, size=size, mode=mode, align_corners=False, antialias=antialias)


def normalise(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device)[:, None, None]
    std = torch.tensor(std, dtype=pixels.dtype, device=pixels.device)[:, None, None]
    return (pixels - mean) / std


def dino_features(model, crops, batch: int = 16) -> torch.Tensor:
    """CLS features [N, hidden] (float32, on the CPU) of uint8 RGB images [N, H, W, 3], by VBench's preprocessing."""
    crops = require_images(crops, "the images for DINO")
    parameter = next(model.parameters())
    size = model.config.image_size
    native = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    features = [torch.zeros(0, model.config.hidden_size)]
    with torch.inference_mode():
        for start in range(0, len(crops), batch):
            pixels = torch.from_numpy(crops[start : start + batch]).to(parameter.device).permute(0, 3, 1, 2).float() / 255
            pixels = normalise(resize_shorter_side(pixels, DINO_SHORT_SIDE, "bilinear", antialias=False), IMAGENET_MEAN, IMAGENET_STD)
            output = model(pixel_values=pixels.to(parameter.dtype), interpolate_pos_encoding=tuple(pixels.shape[-2:]) != native)
            features.append(output.last_hidden_state[:, 0].float().cpu())
    return torch.cat(features)


def face_crops(frames, detector, protocol: IdcProtocol = IdcProtocol()) -> tuple[np.ndarray, np.ndarray]:
    """The largest face of each frame [T, H, W, 3] uint8 as a square crop: (crops [K, S, S, 3] uint8, the indices of
    the K frames that have one). ``detector.detect(frame)`` lists a frame's ``identity.face.DetectedFace``s."""
    frames = require_images(frames, "the frames")
    crops, kept = [], []
    for index, frame in enumerate(frames):
        faces = [face for face in detector.detect(frame) if face.size >= protocol.min_face_size]
        if faces:
            box = square_crop_box(max(faces, key=lambda face: face.area).box, frame.shape[0], frame.shape[1], protocol.crop_margin)
            crops.append(crop_face(frame, box, protocol.crop_size))
            kept.append(index)
    side = protocol.crop_size
    return (np.stack(crops) if crops else np.zeros((0, side, side, 3), np.uint8)), np.asarray(kept, dtype=np.int64)


@dataclass(frozen=True)
class IdentityTrace:
    """What one IDC score saw: its ``row`` (``video_identity_consistency``'s), the face crops, and the two terms of the
    formula for each frame with a face, so a plot shows where the identity drifts and a person can check the faces.

    ``to_reference``: max(0, cos(f_0, f_t)), f_0 the portrait's face or the first frame with a face; ``to_previous``:
    max(0, cos(f_{t-1}, f_t)), the previous frame with a face (the portrait before the first). NaN for a frame not
    compared (the first face frame, which is f_0 with reference "first_frame") and for every frame of a video not
    scored. IDC is the mean over the compared frames of (to_reference + to_previous) / 2."""

    row: dict
    frame_indices: np.ndarray  # [K] int64: the frames with a face, in order
    crops: np.ndarray  # [K, S, S, 3] uint8: their face crops
    reference_crop: np.ndarray | None  # [S, S, 3] uint8: the portrait's face, when it was found (reference "portrait")
    to_reference: np.ndarray  # [K] float64
    to_previous: np.ndarray  # [K] float64


def formula_terms(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The two terms of VBench's formula for features [N, D] after the first: (to the first, to the previous), each [N - 1]."""
    unit = F.normalize(features.double(), dim=-1)
    to_first = (unit[1:] * unit[:1]).sum(-1).clamp(min=0)
    to_previous = (unit[1:] * unit[:-1]).sum(-1).clamp(min=0)
    return to_first.numpy(), to_previous.numpy()


def identity_trace(model, frames, detector, protocol: IdcProtocol = IdcProtocol(), portrait=None, batch: int = 16) -> IdentityTrace:
    """``video_identity_consistency``'s row with the crops and the per-frame terms behind it (see there and ``IdentityTrace``)."""
    frames = require_images(frames, "the frames")
    if (portrait is None) != (protocol.reference == "first_frame"):
        raise ValueError(
            f"IdcProtocol.reference is {protocol.reference!r} but {'no' if portrait is None else 'a'} portrait was given: "
            "pass the portrait with reference='portrait', or none with reference='first_frame'."
        )
    crops, kept = face_crops(frames, detector, protocol)
    row = {
        "idc": None,
        "idc_status": "scored",
        "idc_detail": "",
        "idc_reference": protocol.reference,
        "idc_frames": len(frames),
        "idc_face_frames": len(kept),
    }
    not_compared = np.full(len(kept), np.nan)
    unscored = IdentityTrace(row, kept, crops, None, not_compared, not_compared)
    if len(kept) < 2:
        detail = f"a face of at least {protocol.min_face_size} px in {len(kept)} of {len(frames)} frames; IDC needs 2"
        return replace(unscored, row={**row, "idc_status": "no_face", "idc_detail": detail})
    if portrait is None:
        features = dino_features(model, crops, batch)
        to_first, to_previous = formula_terms(features)
        first = np.full(1, np.nan)
        scored = {**row, "idc": identity_consistency(features)}
        return IdentityTrace(scored, kept, crops, None, np.concatenate([first, to_first]), np.concatenate([first, to_previous]))
    reference, _ = face_crops(require_rgb_uint8(portrait, "the portrait")[None], detector, protocol)
    if not len(reference):
        detail = f"no face of at least {protocol.min_face_size} px in the portrait"
        return replace(unscored, row={**row, "idc_status": "no_portrait_face", "idc_detail": detail})
    features = dino_features(model, np.concatenate([reference, crops]), batch)
    scored = {**row, "idc": identity_consistency_to_reference(features[1:], features[0])}
    return IdentityTrace(scored, kept, crops, reference[0], *formula_terms(features))


def video_identity_consistency(model, frames, detector, protocol: IdcProtocol = IdcProtocol(), portrait=None, batch: int = 16) -> dict:
    """One video's IDC row: ``idc`` (None unless scored), ``idc_status`` ("scored"; "no_face" when fewer than 2 frames
    have a face; "no_portrait_face"), ``idc_detail`` (why not scored), ``idc_reference`` (protocol.reference),
    ``idc_frames`` (frames in) and ``idc_face_frames`` (frames with a face). ``portrait`` [H, W, 3] uint8 is required
    by ``reference="portrait"`` and refused by ``"first_frame"``, so the protocol always says what was measured."""
    return identity_trace(model, frames, detector, protocol, portrait, batch).row
