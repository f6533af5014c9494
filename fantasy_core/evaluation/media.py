"""One generated video as every metric sees it: its frames at the file's own rate (read once), its sound at 16 kHz
mono (its own track or a voice file of the same name), and the source portrait of the same name when one is given."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ..dataset.video import UnreadableVideoError, probe, read_audio, read_frames

AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".m4a", ".ogg", ".aac")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class EvaluatedVideo:
    relative: str  # the path under the videos folder: the row's name
    frames: np.ndarray  # uint8 RGB [T, H, W, 3] at ``fps``
    fps: float
    seconds: float
    sound_16k: np.ndarray  # mono float at 16 kHz; empty when there is none
    portrait: np.ndarray | None  # uint8 RGB [H, W, 3] of the source portrait, or None
    reference_frames: np.ndarray | None = None  # the reference video of the same name (ES), when asked for


def matched_file(folder: str | None, relative: str, extensions: tuple[str, ...]) -> str | None:
    """The file in ``folder`` with the video's relative path and stem and one of ``extensions``, or None."""
    if folder is None:
        return None
    stem = os.path.splitext(relative)[0]
    for ext in extensions:
        for candidate in (stem + ext, stem + ext.upper()):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                return path
    return None


def sound_16k(source: str, seconds: float) -> np.ndarray:
    """The sound of a video or voice file, mono 16 kHz (empty when it has none)."""
    import torch

    from .sync import to_16k_mono

    try:
        samples, rate = read_audio(source, 0.0, seconds)
    except UnreadableVideoError:
        return np.zeros(0, np.float32)
    return to_16k_mono(torch.from_numpy(samples), rate) if samples.shape[1] else np.zeros(0, np.float32)


def read_portrait(path: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as error:
        raise UnreadableVideoError(f"the portrait {path} could not be read as an image ({type(error).__name__}: {error}).") from error


def read_video(path: str, relative: str, audio_file: str | None, portrait_file: str | None, need_sound: bool) -> EvaluatedVideo:
    """Raises UnreadableVideoError for a file that cannot be decoded (the folder reports it as ``unreadable``)."""
    info = probe(path)
    count = int(math.floor(info.duration * info.fps + 1e-6))
    if count < 1:
        raise UnreadableVideoError(f"{path} holds no frames.")
    frames = read_frames(path, 0.0, count, info.fps)
    sound = sound_16k(audio_file or path, info.duration) if need_sound else np.zeros(0, np.float32)
    portrait = read_portrait(portrait_file) if portrait_file else None
    return EvaluatedVideo(relative, frames, info.fps, info.duration, sound, portrait)
