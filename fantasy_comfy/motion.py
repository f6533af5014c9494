"""Measure Motion's work: a reference clip (an IMAGE batch or a VIDEO) measured as the motion module's training data
was, with a per-frame plot."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from fractions import Fraction

import comfy.utils
import numpy as np
import torch
from comfy_api.latest import InputImpl

from fantasy_core.motion.intensity import MotionCalibration, MotionIntensity
from fantasy_core.motion.landmarks import DWPoseTracker, FaceMeshTracker, MediaPipePoseTracker
from fantasy_core.motion.measure import MEASURE_SIDE, measure_motion
from fantasy_core.motion.plot import motion_plot

from .faces import to_uint8
from .model_folders import MEDIAPIPE_POSE, body_model_path


class _ImageFrames(Sequence):
    """A ComfyUI IMAGE batch seen as uint8 RGB frames, converted one at a time."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        return to_uint8(self.images[index])


def frames_and_rate(images, video, fps: float) -> tuple[Sequence, float]:
    if (images is None) == (video is None):
        raise ValueError(
            "FantasyTalking Measure Motion: connect exactly one of 'images' (an IMAGE batch, e.g. from Load Video, with "
            "its frame rate in 'fps') or 'video' (a VIDEO, which carries its own frame rate)."
        )
    if video is not None:
        if isinstance(video, InputImpl.VideoFromFile):  # decoded frame by frame, at measuring size, not all at once
            return decoded_frames(video.get_stream_source())
        components = video.get_components()
        return _ImageFrames(components.images), float(Fraction(components.frame_rate))
    if images.dim() != 4 or images.shape[-1] < 3:
        raise ValueError(
            f"FantasyTalking Measure Motion: 'images' must be an IMAGE batch [frames, height, width, 3]; got shape {list(images.shape)}."
        )
    return _ImageFrames(images), float(fps)


def decoded_frames(source) -> tuple[list[np.ndarray], float]:
    """Every frame of a video file as uint8 RGB, scaled to at most MEASURE_SIDE on the longer side while decoding."""
    import av

    with av.open(source) as container:
        if not container.streams.video:
            raise ValueError("FantasyTalking Measure Motion: the 'video' input has no video stream.")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        frames = []
        for frame in container.decode(stream):
            scale = min(1.0, MEASURE_SIDE / max(frame.width, frame.height))
            frames.append(
                frame.to_ndarray(width=max(1, round(frame.width * scale)), height=max(1, round(frame.height * scale)), format="rgb24")
            )
    return frames, rate


def calibration_of(fantasytalking_model) -> MotionCalibration:
    if fantasytalking_model is None:
        return MotionCalibration()
    if fantasytalking_model.motion is None:
        raise ValueError(
            "FantasyTalking Measure Motion: the fantasytalking_model input is there for a motion module's calibration, "
            "but this one has no motion module. Connect the loader of the motion file, or disconnect the input to use "
            "the default calibration."
        )
    return fantasytalking_model.motion.model.calibration


def open_body_tracker(choice: str):
    if choice == MEDIAPIPE_POSE:
        return MediaPipePoseTracker()
    return DWPoseTracker(body_model_path(choice))


def measure_clip(images, video, fps: float, body_model: str, fantasytalking_model=None) -> tuple[MotionIntensity, torch.Tensor]:
    """ω of the clip, and the plot of what was measured frame by frame (an IMAGE [1, H, W, 3])."""
    frames, rate = frames_and_rate(images, video, fps)
    calibration = calibration_of(fantasytalking_model)
    progress = comfy.utils.ProgressBar(len(frames))
    with FaceMeshTracker() as face, open_body_tracker(body_model) as body:
        measured = measure_motion(
            frames, rate, face, body, calibration, "The reference clip", progress=lambda done, total: progress.update_absolute(done, total)
        )
    skipped = measured.face_missing or measured.body_missing
    (logging.warning if skipped else logging.info)("FantasyTalking: measured motion %s", measured.describe())
    plot = torch.from_numpy(motion_plot(measured)[None].astype(np.float32) / 255.0)
    return measured.intensity, plot
