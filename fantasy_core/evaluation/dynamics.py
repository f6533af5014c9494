"""Subject and background dynamics (SD / BD) of a generated talking video: the optical flow between frames
(torchvision's RAFT-large, ``raft_large_C_T_SKHT_V2-ff5fadd5.pth``) averaged on the person (SD) and on the rest of
the picture (BD), by ``frame_scores.dynamics``. The person mask comes from ``person_mask.PersonSegmenter`` (MediaPipe's
bundled selfie segmentation, the default) or ``person_mask.SamPersonSegmenter`` (SAM with the user's
``facebook/sam-vit-base`` folder, the paper's choice, prompted by a box built from the largest face: ``SamPromptProtocol``).

The protocol (``DynamicsProtocol``, written beside every result): the frames' shorter side is resized to 512 px
(bilinear, antialiased; the other side to the nearest multiple of 8), so SD and BD are **pixels per frame pair at a
512-px shorter side** whatever the video's own size (the pack's clips are 512 px, so they are measured as they are);
consecutive frames (stride 1); 12 flow updates (torchvision's default), the last flow kept; a pixel is the person's
where the segmentation's confidence (SAM: the sigmoid of its mask logit) exceeds 0.5, on the first frame of each pair.

How this differs from VBench's dynamic degree (vbench/dynamic_degree.py), the closest public code: VBench runs the
original RAFT (princeton-vl ``raft-things.pth``, 20 updates) at the video's own size padded to multiples of 8, on
every round(fps / 8)-th frame (about 8 fps), scores a pair by the mean of its largest 5% of flow magnitudes and reports
a yes/no "moves" (enough pairs above 6 px x shorter side / 256). Here the mean over every pixel of a region is kept as
a number per region, at a fixed scale, between consecutive frames: our reading of the paper, which published no code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..weights import DAMAGED, CheckpointError, all_finite
from .catalog import BY_KEY, FOLDER
from .frame_scores import dynamics

RAFT_WEIGHTS = BY_KEY["raft"]
MIN_SIDE = 128  # raft_large's correlation pyramid needs feature maps of 16 px, 1/8 of the input
SELFIE_MODELS = {"general": 0, "landscape": 1}  # MediaPipe's model_selection: 256x256 input; 144x256, for wide pictures
MEDIAPIPE, SAM = "mediapipe_selfie_segmentation", "sam"
MASK_SOURCES = (MEDIAPIPE, SAM)
RESIZE_CHUNK = 16  # frames resized at once (bounds the float copy of a long, large video)


@dataclass(frozen=True)
class SamPromptProtocol:
    """How SAM is asked for the person in a frame (mask source "sam"); written beside every result.

    The face is the largest (by box area) of the face detector's detections in that frame, box (x0, y0, x1, y1) in
    pixels, width w = x1 - x0, height h = y1 - y0, centre (cx, cy). The prompt is one box and one positive point:

    - box: x from cx - ``person_box_widths`` w to cx + ``person_box_widths`` w, y from y0 - ``person_box_top`` h to
      the frame's bottom edge (the frame's height), clipped to the frame [0, W] x [0, H]: a talking portrait's head,
      hair, neck and shoulders (shoulders span about three face widths), cut by the frame at the bottom;
    - point: (cx, cy) clipped to the frame, labelled foreground, so SAM segments the person and not the backdrop
      that the box also holds.

    SAM answers with three candidate masks (multimask output); the one with the highest predicted IoU is kept. A
    frame in which the detector finds no face gets an empty mask: SD / BD then count every pixel of that frame as
    background (and a video without a face in any frame is reported "no_person")."""

    person_box_widths: float = 2.0  # the box's half-width, in face widths from the face centre
    person_box_top: float = 0.5  # how far above the face box's top the box starts, in face heights (the hair)

    def __post_init__(self):
        if not self.person_box_widths > 0 or not self.person_box_top >= 0:
            raise ValueError(
                f"SamPromptProtocol needs person_box_widths > 0 and person_box_top >= 0 (face widths and heights); got "
                f"{self.person_box_widths} and {self.person_box_top}."
            )


@dataclass(frozen=True)
class DynamicsProtocol:
    """What SD and BD depend on; written beside every result."""

    short_side: int | None = 512  # the shorter side is resized to this before flow and mask; None: the video's own size
    frame_stride: int = 1  # 1: consecutive frames; k: every k-th frame, so a pair spans k frames
    flow_updates: int = 12  # RAFT's recurrent refinements (torchvision's default; VBench uses 20); the last flow is kept
    mask_threshold: float = 0.5  # the person's pixels: segmentation confidence (SAM: sigmoid of the logit) above this
    mask_source: str = MEDIAPIPE  # or SAM
    selfie_model: str = "general"  # MediaPipe's general (square) model; "landscape" is made for wide pictures (MediaPipe only)
    sam_prompt: SamPromptProtocol | None = None  # SAM's prompt; SamPromptProtocol() when mask_source is SAM

    def __post_init__(self):
        if self.short_side is not None and (self.short_side < MIN_SIDE or self.short_side % 8):
            raise ValueError(
                f"short_side must be None or a multiple of 8 of at least {MIN_SIDE} (RAFT's smallest input); got {self.short_side}."
            )
        if self.frame_stride < 1 or self.flow_updates < 1:
            raise ValueError(f"frame_stride and flow_updates must be at least 1; got {self.frame_stride} and {self.flow_updates}.")
        if not 0 < self.mask_threshold < 1:
            raise ValueError(f"mask_threshold is a confidence between 0 and 1 (exclusive); got {self.mask_threshold}.")
        if self.mask_source not in MASK_SOURCES or self.selfie_model not in SELFIE_MODELS:
            raise ValueError(
                f"the person mask comes from one of {list(MASK_SOURCES)} with a selfie model of {sorted(SELFIE_MODELS)}; "
                f"got {self.mask_source!r} and {self.selfie_model!r}."
            )
        if self.sam_prompt is not None and not isinstance(self.sam_prompt, SamPromptProtocol):
            raise ValueError(f"sam_prompt must be a SamPromptProtocol; got a {type(self.sam_prompt).__name__}.")
        if self.mask_source != SAM and self.sam_prompt is not None:
            raise ValueError(f"sam_prompt applies to mask_source {SAM!r} only; the protocol's mask source is {self.mask_source!r}.")
        if self.mask_source == SAM and self.sam_prompt is None:
            object.__setattr__(self, "sam_prompt", SamPromptProtocol())


def download_advice() -> str:
    return f"Download {RAFT_WEIGHTS.name} ({RAFT_WEIGHTS.source}) from {RAFT_WEIGHTS.url} into ComfyUI/models/{FOLDER}/."


def raft_layouts() -> tuple[dict[str, torch.Size], set[str]]:
    """The shapes of raft_large's state dict and the keys of raft_small's, without allocating either."""
    from torchvision.models.optical_flow import raft_large, raft_small

    with torch.device("meta"):
        large, small = raft_large(weights=None), raft_small(weights=None)
    return {key: value.shape for key, value in large.state_dict().items()}, set(small.state_dict())


def what_it_looks_like(keys: set[str], small_keys: set[str]) -> str:
    original = sorted(key for key in keys if key.startswith(("module.fnet.", "module.cnet.", "fnet.", "cnet.")))
    if original:
        return (
            "the original RAFT's checkpoint (princeton-vl/RAFT, such as raft-things.pth, which VBench uses: keys like "
            f"'{original[0]}'), not torchvision's raft_large"
        )
    if keys == small_keys:
        return "torchvision's raft_small (Raft_Small_Weights), not raft_large"
    return "not torchvision's raft_large state dict"


def load_raft(path: str, device: str = "cpu"):
    """torchvision's raft_large from its state-dict file (read with weights_only=True), every key and shape checked,
    in eval mode on ``device``."""
    from torchvision.models.optical_flow import raft_large

    if not os.path.isfile(path):
        raise FileNotFoundError(f"The RAFT weights {path} do not exist. {download_advice()}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} could not be read as a state dict ({type(error).__name__}: {error}). {download_advice()}") from error
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        found = f"a dict with keys like {sorted(state)[:3]}" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise CheckpointError(f"{path} is not a state dict of tensors (it holds {found}). {download_advice()}")
    expected, small_keys = raft_layouts()
    # BatchNorm's step counter is unused in eval and some saves leave it out
    needed = {key for key in expected if not key.endswith("num_batches_tracked")}
    missing, unexpected = sorted(needed - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} is {what_it_looks_like(set(state), small_keys)}: {len(missing)} of raft_large's weights are missing "
            f"(e.g. {missing[:1]}) and {len(unexpected)} are not raft_large's (e.g. {unexpected[:1]}). {download_advice()}"
        )
    for key in sorted(needed):
        value = state[key]
        if value.shape != expected[key]:
            raise CheckpointError(
                f"{path}: {key} has shape {list(value.shape)}, raft_large's is {list(expected[key])}. {download_advice()}"
            )
        if not value.is_floating_point():
            raise CheckpointError(f"{path}: {key} is {value.dtype}, not a float tensor. {download_advice()}")
        if not all_finite(value):
            raise CheckpointError(f"{path}: {key} holds NaN or infinite values. {DAMAGED}")
    model = raft_large(weights=None)
    model.load_state_dict({**model.state_dict(), **state})
    return model.eval().to(device)


def as_frames(frames, name: str = "frames") -> np.ndarray:
    frames = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{name} must be RGB uint8 [T, H, W, 3]; got {frames.dtype} {list(frames.shape)}.")
    return frames


def processing_size(height: int, width: int, protocol: DynamicsProtocol) -> tuple[int, int]:
    """The frames' size for flow and mask: the shorter side at ``protocol.short_side``, both sides multiples of 8."""
    scale = 1.0 if protocol.short_side is None else protocol.short_side / min(height, width)
    size = tuple(max(8, round(side * scale / 8) * 8) for side in (height, width))
    if min(size) < MIN_SIDE:
        raise ValueError(
            f"frames of {height}x{width} are measured at {size[0]}x{size[1]}, under RAFT's smallest input of {MIN_SIDE} px a "
            f"side: set the protocol's short_side (e.g. 512) so they are enlarged."
        )
    return size


def prepare_frames(frames, protocol: DynamicsProtocol) -> np.ndarray:
    """Every ``frame_stride``-th frame at the processing size, uint8 [T', h, w, 3] (the frames flow and mask both see);
    frames already at that size are kept as they are."""
    sampled = as_frames(frames)[:: protocol.frame_stride]
    height, width = processing_size(sampled.shape[1], sampled.shape[2], protocol)
    if (height, width) == sampled.shape[1:3]:
        return np.ascontiguousarray(sampled)
    out = np.empty((len(sampled), height, width, 3), dtype=np.uint8)
    for start in range(0, len(sampled), RESIZE_CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(sampled[start : start + RESIZE_CHUNK])).permute(0, 3, 1, 2).float()
        resized = F.interpolate(chunk, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + RESIZE_CHUNK] = resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def raft_flows(model, frames: np.ndarray, flow_updates: int, batch_size: int = 8) -> torch.Tensor:
    """The flow from each frame to the next, [T-1, 2, h, w] float32 on the CPU (pixels), for frames already at a size
    RAFT takes (``prepare_frames``). Input scaled to [-1, 1] as torchvision's weight transforms do."""
    frames = as_frames(frames)
    if len(frames) < 2:
        raise ValueError(f"optical flow needs at least 2 frames; got {len(frames)}.")
    device = next(model.parameters()).device
    images = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)

    def scaled(batch: torch.Tensor) -> torch.Tensor:
        return batch.to(device, torch.float32) / 255 * 2 - 1

    flows = []
    with torch.inference_mode():
        for start in range(0, len(frames) - 1, batch_size):
            stop = min(start + batch_size, len(frames) - 1)
            predictions = model(scaled(images[start:stop]), scaled(images[start + 1 : stop + 1]), num_flow_updates=flow_updates)
            flows.append(predictions[-1].float().cpu())
    return torch.cat(flows)


def frame_flows(model, frames, protocol: DynamicsProtocol = DynamicsProtocol(), batch_size: int = 8) -> torch.Tensor:
    """``frames`` uint8 [T, H, W, 3] -> flows [N, 2, h, w] in pixels at the protocol's size, one per pair of sampled
    frames (N = ceil(T / frame_stride) - 1)."""
    return raft_flows(model, prepare_frames(frames, protocol), protocol.flow_updates, batch_size)


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def measure_dynamics(
    flow: Callable[[np.ndarray], torch.Tensor], masks: Callable[[np.ndarray], np.ndarray], frames, protocol: DynamicsProtocol
) -> dict:
    """``video_dynamics`` with the flow and the mask as functions of the prepared frames [T', h, w, 3]: ``flow`` gives
    [T'-1, 2, h, w] (pixels), ``masks`` [T', h, w] bool. The flow is only computed when there is a person to measure."""
    prepared = prepare_frames(frames, protocol)
    count, height, width = prepared.shape[:3]
    row = {"status": "scored", "detail": "", "sd": None, "bd": None, "pairs": 0, "person_fraction": None}
    row.update(frames_measured=count, size=f"{height}x{width}")
    if count < 2:
        return {**row, "status": "too_short", "detail": f"{count} frame(s) at a stride of {protocol.frame_stride}; flow needs 2"}
    person = np.asarray(masks(prepared))
    if person.shape != (count, height, width):
        raise ValueError(f"the person masks must be [T, H, W] = {[count, height, width]}; got {list(person.shape)}.")
    person = person.astype(bool)
    row["person_fraction"] = float(person.mean())
    if not person[:-1].any():
        return {**row, "status": "no_person", "detail": "the person mask is empty in every frame a flow starts from"}
    measured = dynamics(flow(prepared), torch.from_numpy(person[:-1]))
    row.update(sd=finite_or_none(measured.subject), bd=finite_or_none(measured.background), pairs=measured.pairs)
    if row["bd"] is None:
        row["detail"] = "the person covers every pixel: no background to measure"
    return row


def mask_settings(protocol: DynamicsProtocol) -> tuple:
    """What the person mask depends on (the selfie model only for MediaPipe)."""
    model = protocol.selfie_model if protocol.mask_source == MEDIAPIPE else None
    return protocol.mask_source, protocol.mask_threshold, model, protocol.sam_prompt


def describe_mask(protocol: DynamicsProtocol) -> str:
    if protocol.mask_source == MEDIAPIPE:
        return f"a mask threshold of {protocol.mask_threshold} with the {protocol.selfie_model} selfie model"
    return f"SAM at a mask threshold of {protocol.mask_threshold} prompted by {protocol.sam_prompt}"


def video_dynamics(raft, segmenter, frames, protocol: DynamicsProtocol = DynamicsProtocol(), batch_size: int = 8) -> dict:
    """SD and BD of one video: ``frames`` uint8 [T, H, W, 3]; ``raft`` from ``load_raft``; ``segmenter`` a
    ``PersonSegmenter`` or ``SamPersonSegmenter`` made for the protocol's mask settings (or anything with
    ``masks(frames)``), refused when its own ``protocol`` differs in them. A row: status ("scored", "no_person",
    "too_short"), detail, sd, bd (pixels per frame pair at the protocol's size; None when not measured), pairs, person_fraction
    (the mean mask coverage), frames_measured and size ("HxW" measured at)."""
    own = getattr(segmenter, "protocol", protocol)
    if mask_settings(own) != mask_settings(protocol):
        maker = "PersonSegmenter(protocol)" if protocol.mask_source == MEDIAPIPE else "SamPersonSegmenter(folder, detector, protocol)"
        raise ValueError(
            f"the segmenter was made for {describe_mask(own)}, the protocol says {describe_mask(protocol)}: make it with {maker}."
        )
    return measure_dynamics(
        lambda prepared: raft_flows(raft, prepared, protocol.flow_updates, batch_size), segmenter.masks, frames, protocol
    )
