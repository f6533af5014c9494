"""Motion nodes: a motion intensity (ω_l, ω_b) set by hand or by preset, and one measured from a reference clip."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from fractions import Fraction

import comfy.utils
import numpy as np
import torch
from comfy_api.latest import InputImpl, io

from ..fantasy_core.motion.intensity import (
    MEANING,
    NEUTRAL,
    PRESETS,
    MotionCalibration,
    MotionIntensity,
)
from ..fantasy_core.motion.landmarks import (
    DWPoseTracker,
    FaceMeshTracker,
    MediaPipePoseTracker,
)
from ..fantasy_core.motion.measure import MEASURE_SIDE, measure_motion
from ..fantasy_core.motion.plot import motion_plot
from .folders import MEDIAPIPE_POSE, body_model_choices, body_model_path
from .identity import to_uint8
from .types import CATEGORY, FantasyTalkingModel, FantasyTalkingMotion

CUSTOM = "custom"


def _omega_input(name: str, what: str) -> io.Float.Input:
    return io.Float.Input(name, default=NEUTRAL, min=0.0, max=1.0, step=0.01,
                          tooltip=f"{what}: {MEANING}. Used when preset is 'custom'.")


class FantasyTalkingMotionIntensity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        presets = ", ".join(f"{name} ({lip:g}, {body:g})" for name, (lip, body) in PRESETS.items())
        return io.Schema(
            node_id="FantasyTalkingMotionIntensity",
            display_name="FantasyTalking Motion Intensity",
            category=CATEGORY,
            description="How much the speaker moves: ω_l (facial expression) and ω_b (body), each 0–1 with 0.5 "
            f"neutral. The paper's presets: {presets}. Needs a fantasytalking_model with a motion module.",
            inputs=[
                io.Combo.Input("preset", options=[CUSTOM, *PRESETS], default=CUSTOM,
                               tooltip=f"{presets}; custom: the two sliders."),
                _omega_input("omega_lip", "ω_l, facial expression (lips, eyes, brows)"),
                _omega_input("omega_body", "ω_b, body motion (shoulders, arms)"),
            ],
            outputs=[FantasyTalkingMotion.Output(display_name="motion", tooltip="For the motion input of 'FantasyTalking Apply'.")],
        )

    @classmethod
    def execute(cls, preset: str, omega_lip: float, omega_body: float) -> io.NodeOutput:
        if preset == CUSTOM:
            return io.NodeOutput(MotionIntensity(omega_lip, omega_body))
        if preset not in PRESETS:
            raise ValueError(f"FantasyTalking Motion Intensity: preset must be one of {[CUSTOM, *PRESETS]}; got {preset!r}.")
        lip, body = PRESETS[preset]
        if (omega_lip, omega_body) != (NEUTRAL, NEUTRAL) and (omega_lip, omega_body) != (lip, body):
            raise ValueError(
                f"FantasyTalking Motion Intensity: preset '{preset}' sets ω_l = {lip:g} and ω_b = {body:g}, but the "
                f"sliders say {omega_lip:g} and {omega_body:g}. Set preset to 'custom' to use the sliders, or put them "
                f"back to {NEUTRAL:g} to use the preset."
            )
        return io.NodeOutput(MotionIntensity(lip, body))


class _ImageFrames(Sequence):
    """A ComfyUI IMAGE batch seen as uint8 RGB frames, converted one at a time."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        return to_uint8(self.images[index])


def _frames_and_rate(images, video, fps: float) -> tuple[Sequence, float]:
    if (images is None) == (video is None):
        raise ValueError(
            "FantasyTalking Measure Motion: connect exactly one of 'images' (an IMAGE batch, e.g. from Load Video, with "
            "its frame rate in 'fps') or 'video' (a VIDEO, which carries its own frame rate)."
        )
    if video is not None:
        if isinstance(video, InputImpl.VideoFromFile):  # decoded frame by frame, at measuring size, not all at once
            return _decoded_frames(video.get_stream_source())
        components = video.get_components()
        return _ImageFrames(components.images), float(Fraction(components.frame_rate))
    if images.dim() != 4 or images.shape[-1] < 3:
        raise ValueError(f"FantasyTalking Measure Motion: 'images' must be an IMAGE batch [frames, height, width, 3]; got shape {list(images.shape)}.")
    return _ImageFrames(images), float(fps)


def _decoded_frames(source) -> tuple[list[np.ndarray], float]:
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
            frames.append(frame.to_ndarray(width=max(1, round(frame.width * scale)), height=max(1, round(frame.height * scale)),
                                           format="rgb24"))
    return frames, rate


def _calibration(fantasytalking_model) -> MotionCalibration:
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


class FantasyTalkingMeasureMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingMeasureMotion",
            display_name="FantasyTalking Measure Motion",
            category=CATEGORY,
            description="Measures ω_l (facial expression, from MediaPipe's face mesh with head motion removed) and ω_b "
            "(body, from body joints) of a reference clip, as the motion module's training data was measured: use "
            "them to make the video move like the clip. The plot shows what was measured, frame by frame.",
            inputs=[
                io.Image.Input("images", optional=True, tooltip="The reference clip as an IMAGE batch (give its frame rate in fps)."),
                io.Video.Input("video", optional=True, tooltip="Or the reference clip as a VIDEO (its own frame rate is used)."),
                io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=0.001,
                               tooltip="Frame rate of 'images' (ignored for 'video', which carries its own)."),
                io.Combo.Input("body_model", options=body_model_choices(), default=MEDIAPIPE_POSE,
                               tooltip="mediapipe pose: bundled, no download. dwpose/<file>: a DWPose or RTMPose ONNX in "
                               "ComfyUI/models/dwpose/ (rtmlib), steadier on gestures. Use what the motion module's "
                               "calibration was measured with."),
                FantasyTalkingModel.Input("fantasytalking_model", optional=True,
                                          tooltip="Optional: a loader holding the motion module, whose calibration (its "
                                          "training data's percentiles) turns the measurement into ω. Without: the "
                                          "documented default calibration."),
            ],
            outputs=[
                FantasyTalkingMotion.Output(display_name="motion", tooltip="ω_l and ω_b, for the motion input of 'FantasyTalking Apply'."),
                io.Float.Output(display_name="omega_lip", tooltip="ω_l, 0–1."),
                io.Float.Output(display_name="omega_body", tooltip="ω_b, 0–1."),
                io.Image.Output(display_name="plot", tooltip="Per-frame expression and body displacement; skipped frames marked."),
            ],
        )

    @classmethod
    def execute(cls, fps: float, body_model: str, images=None, video=None, fantasytalking_model=None) -> io.NodeOutput:
        frames, rate = _frames_and_rate(images, video, fps)
        calibration = _calibration(fantasytalking_model)
        progress = comfy.utils.ProgressBar(len(frames))
        with FaceMeshTracker() as face, open_body_tracker(body_model) as body:
            measured = measure_motion(frames, rate, face, body, calibration, "The reference clip",
                                      progress=lambda done, total: progress.update_absolute(done, total))
        skipped = measured.face_missing or measured.body_missing
        (logging.warning if skipped else logging.info)("FantasyTalking: measured motion %s", measured.describe())
        plot = torch.from_numpy(motion_plot(measured)[None].astype(np.float32) / 255.0)
        return io.NodeOutput(measured.intensity, measured.intensity.lip, measured.intensity.body, plot)
