"""What a dataset is made with. Stored in its ``dataset.json``; resuming or adding to a dataset with other settings is
refused, so every clip of a dataset means the same thing."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from ..frames import check_video_length, clip_seconds
from ..motion.intensity import MotionCalibration
from ..motion.measure import frames_per_window

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
STORAGE_DTYPES = ("bf16", "fp16", "fp32")
LATENT_SCALE = 8
DEFAULT_FACE_CONFIDENCE = {"insightface": 0.9, "mediapipe": 0.8}  # Wan's VAE: one latent cell per 8 x 8 pixels


class SettingsError(ValueError):
    """A dataset setting is out of range."""


@dataclass(frozen=True)
class DatasetSettings:
    fps: float = 23.0  # training frame rate (the official inference fps)
    frames: int = 81  # frames per clip, 4k+1
    width: int = 512
    height: int = 512
    stride_seconds: float | None = None  # between clip starts; None: back to back
    min_resolution: int | None = None  # shorter side of the source video; None: the target's shorter side
    min_face_confidence: float | None = None  # on the first, middle and last frame; None: the detector's default
    min_speech_fraction: float = 0.3  # of 30 ms windows louder than speech_level_db
    speech_level_db: float = -45.0  # dBFS
    scene_cut_threshold: float = 0.1  # mean absolute change between two frames' thumbnails, 0 to 1
    face_detector: str = "mediapipe"  # or an insightface pack name (its SCRFD det_10g.onnx)
    body_model: str = "mediapipe pose"  # or a DWPose / RTMPose ONNX file name from models/dwpose
    storage_dtype: str = "bf16"  # of the cached float tensors
    sync_max_offset: int = 3  # with SyncNet: |audio-video offset| in 25 fps frames (3 = 120 ms)
    sync_min_confidence: float = 3.0  # with SyncNet: its confidence (median - minimum distance)

    def __post_init__(self):
        check_video_length("frames", self.frames)
        for name in ("fps", "width", "height"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise SettingsError(f"{name} must be a positive number, got {value!r}.")
        for name in ("width", "height"):
            if getattr(self, name) % 16:
                raise SettingsError(f"{name} must be a multiple of 16 (Wan's VAE and patch size), got {getattr(self, name)}.")
        if self.stride_seconds is not None and not self.stride_seconds > 0:
            raise SettingsError(f"stride_seconds must be positive, got {self.stride_seconds}.")
        for name in ("min_face_confidence", "min_speech_fraction", "scene_cut_threshold"):
            if getattr(self, name) is not None and not 0 <= getattr(self, name) <= 1:
                raise SettingsError(f"{name} must lie between 0 and 1, got {getattr(self, name)}.")
        if self.storage_dtype not in STORAGE_DTYPES:
            raise SettingsError(f"storage_dtype must be one of {list(STORAGE_DTYPES)}, got {self.storage_dtype!r}.")

    def check_motion_window(self) -> None:
        """Every clip's ω is measured over windows of the calibration's length (2 s): a shorter clip could never be
        measured, so it is refused before any work rather than dropped clip by clip."""
        window = frames_per_window(self.fps, MotionCalibration().window_seconds)
        if self.frames < window:
            fits = next(n for n in range(window, window + 4) if n % 4 == 1)
            raise SettingsError(
                f"frames: {self.frames} frames at {self.fps:g} fps ({self.clip_seconds:.2f} s) is shorter than the "
                f"{MotionCalibration().window_seconds:g} s window the motion measurement needs, so every clip would be "
                f"dropped. Use --frames {fits} or more (at least {window} frames at this frame rate; 4k+1)."
            )

    @property
    def clip_seconds(self) -> float:
        return clip_seconds(self.frames, self.fps)

    @property
    def minimum_side(self) -> int:
        return self.min_resolution if self.min_resolution is not None else min(self.width, self.height)

    @property
    def face_confidence_threshold(self) -> float:
        """The paper's 0.9 is an insightface (SCRFD) score; MediaPipe scores the same clear faces lower (0.87-0.91 on
        the astronaut's frames), so its default is 0.8."""
        if self.min_face_confidence is not None:
            return self.min_face_confidence
        return DEFAULT_FACE_CONFIDENCE["mediapipe" if self.face_detector == "mediapipe" else "insightface"]

    @property
    def body_landmarks(self) -> str:
        """The body-joint model ω_b is measured with, as a motion calibration names it."""
        return "mediapipe_pose" if self.body_model == "mediapipe pose" else "dwpose"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict) -> DatasetSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingsError(f"unknown dataset settings {unknown}; this version knows {sorted(known)}.")
        return cls(**values)
