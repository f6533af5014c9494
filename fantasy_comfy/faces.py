"""The portrait's faces for the identity module: the main face of each image (Face Crop's work) and their averaged
ArcFace embedding (Face Embedding's work); the training's validation render uses the same."""

from __future__ import annotations

import logging

import comfy.utils
import numpy as np
import torch

from fantasy_core.identity.align import align_face
from fantasy_core.identity.arcface import ArcFaceEncoder
from fantasy_core.identity.embeds import FaceEmbedding
from fantasy_core.identity.face import MediaPipeFaceDetector, ScrfdFaceDetector, crop_face, detect_main_face, square_crop_box

from .model_folders import detector_path


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """One ComfyUI image [H, W, C] in 0..1 -> uint8 RGB."""
    return (image[..., :3].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def to_image(batch: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(batch)).float() / 255.0


def open_detector(choice: str):
    if choice == "mediapipe":
        return MediaPipeFaceDetector()
    return ScrfdFaceDetector(detector_path(choice))


def find_faces(image: torch.Tensor, detector: str, margin: float, min_face_size: int, crop_size: int) -> tuple[list, list]:
    """The main face of each image [B, H, W, C] as (pixels, DetectedFace), and its square crop (Face Crop's work)."""
    faces, crops = [], []
    progress = comfy.utils.ProgressBar(image.shape[0])
    with open_detector(detector) as found:
        for index in range(image.shape[0]):
            pixels = to_uint8(image[index])
            face = detect_main_face(pixels, found, f"image {index + 1} of {image.shape[0]}", min_face_size)
            box = square_crop_box(face.box, pixels.shape[0], pixels.shape[1], margin)
            faces.append((pixels, face))
            crops.append(crop_face(pixels, box, crop_size))
            progress.update(1)
    return faces, crops


def embed_faces(faces: list, arcface_file: str, arcface_model: str, device: str) -> tuple[FaceEmbedding, np.ndarray]:
    """The averaged ArcFace embedding of ``find_faces``' faces, and the aligned faces ArcFace saw (Face Embedding's work)."""
    encoder = ArcFaceEncoder(arcface_file, device=device)
    aligned = np.stack([align_face(pixels, found.keypoints, encoder.input_size) for pixels, found in faces])
    embedding = FaceEmbedding.averaged(torch.from_numpy(encoder.embed(aligned)), arcface_model, encoder.provider)
    logging.info("FantasyTalking: ArcFace (%s) ran on %s for %d face(s).", arcface_model, encoder.provider, len(faces))
    return embedding, aligned
