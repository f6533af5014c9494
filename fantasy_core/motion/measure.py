"""Measuring ω_l and ω_b from a clip (paper Sec. 3.4: the variance of facial-landmark and body-joint sequences).

One function, ``measure_motion``, serves the Measure Motion node and the training-data preparation alike.

- **Expression (ω_l).** Each frame's 478-point face mesh is aligned to the clip's mean face by the 3-D similarity
  (rotation, uniform scale, translation) that best maps its rigid points (forehead, nose bridge, eye corners, temples)
  onto the mean's; the mean's rigid points have unit RMS radius. Of the aligned mesh, the lip, eye and eyebrow
  contours are measured: they move with expression, not with the head's position, turn or distance to the camera.
- **Body (ω_b).** The body joints (shoulders, elbows, wrists, hips; those the model sees) in units of the clip's
  median shoulder width, so resolution and framing do not matter. Swaying counts as body motion, so nothing else is
  removed.
- **Variance.** Per point, the variance over time (summed over coordinates) within windows of ``window_seconds``
  (hop: half a window), averaged over points and windows, so a clip's length or slow drift does not change its value.
  Frames where the tracker found nothing are skipped and counted; a window needs half its frames.
- **ω** is the raw value read against the calibration's percentiles (``intensity.MotionCalibration``).
- Frames larger than ``MEASURE_SIDE`` on their longer side are scaled down to it first.
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..identity.align import similarity_transform
from .intensity import MotionCalibration, MotionIntensity
from .landmarks import BodyLayout, Landmarks

logger = logging.getLogger(__name__)

# Face-mesh points that move with the skull, not with expression: forehead, glabella, nose bridge and tip, the eyes'
# outer and inner corners, temples.
FACE_RIGID_POINTS = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 33, 133, 362, 263, 127, 356, 21, 251)
FACE_MESH_POINTS = 478
MEASURE_SIDE = 512  # frames are measured at most this large (longer side, pixels)
# What expression moves: MediaPipe's lip, eye and eyebrow contours (FACEMESH_LIPS, *_EYE, *_EYEBROW). The rest of the
# mesh (cheeks, face oval) mostly adds the model's own jitter when the head moves.
LIP_POINTS = (
    0,
    13,
    14,
    17,
    37,
    39,
    40,
    61,
    78,
    80,
    81,
    82,
    84,
    87,
    88,
    91,
    95,
    146,
    178,
    181,
    185,
    191,
    267,
    269,
    270,
    291,
    308,
    310,
    311,
    312,
    314,
    317,
    318,
    321,
    324,
    375,
    402,
    405,
    409,
    415,
)
EYE_POINTS = (
    249,
    263,
    362,
    373,
    374,
    380,
    381,
    382,
    384,
    385,
    386,
    387,
    388,
    390,
    398,
    466,
    7,
    33,
    133,
    144,
    145,
    153,
    154,
    155,
    157,
    158,
    159,
    160,
    161,
    163,
    173,
    246,
)
EYEBROW_POINTS = (276, 282, 283, 285, 293, 295, 296, 300, 334, 336, 46, 52, 53, 55, 63, 65, 66, 70, 105, 107)
EXPRESSION_POINTS = LIP_POINTS + EYE_POINTS + EYEBROW_POINTS


class MotionMeasurementError(ValueError):
    """The clip cannot be measured (too short, nobody found, no shoulders)."""


@dataclass(frozen=True, eq=False)
class MotionMeasurement:
    intensity: MotionIntensity  # ω_l, ω_b after calibration
    lip_raw: float  # expression variance, (face size)^2
    body_raw: float  # body variance, (shoulder width)^2
    lip_curve: np.ndarray  # [T] per-frame expression displacement from the clip's median face (NaN: skipped)
    body_curve: np.ndarray  # [T] per-frame body displacement from the clip's median pose (NaN: skipped)
    face_missing: int  # frames without a face
    body_missing: int  # frames without a body
    fps: float
    calibration: MotionCalibration

    @property
    def frames(self) -> int:
        return len(self.lip_curve)

    def describe(self) -> str:
        skipped = []
        if self.face_missing:
            skipped.append(f"no face in {self.face_missing} of {self.frames} frames")
        if self.body_missing:
            skipped.append(f"no body in {self.body_missing} of {self.frames} frames")
        return (
            f"{self.intensity.describe()} (raw {self.lip_raw:.3g}, {self.body_raw:.3g}; {self.frames} frames at "
            f"{self.fps:g} fps; calibration: {self.calibration.source})" + (f"; skipped: {', '.join(skipped)}" if skipped else "")
        )


def _stack(tracked: Sequence[Landmarks | None], num_points: int, dims: int) -> np.ndarray:
    """[T, P, D] coordinates with NaN where a frame or a point was not seen."""
    coords = np.full((len(tracked), num_points, dims), np.nan)
    for t, landmarks in enumerate(tracked):
        if landmarks is not None:
            if landmarks.points.shape != (num_points, dims):
                raise ValueError(f"frame {t}: expected {num_points} points of {dims} coordinates, got {landmarks.points.shape}.")
            coords[t, landmarks.valid] = landmarks.points[landmarks.valid]
    return coords


def face_usable(face: Landmarks | None) -> bool:
    """A face mesh whose rigid points were all seen (and are finite): the head's pose can be removed."""
    if face is None:
        return False
    rigid = list(FACE_RIGID_POINTS)
    return bool(face.valid[rigid].all() and np.isfinite(face.points[rigid]).all())


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :-1].T + matrix[:, -1]


def expression_coordinates(faces: Sequence[Landmarks | None]) -> np.ndarray:
    """[T, P, 3] the expression points (``EXPRESSION_POINTS``) of each frame's face mesh with head translation, rotation
    and scale removed (NaN for frames without a face)."""
    coords = _stack(faces, FACE_MESH_POINTS, 3)
    rigid = list(FACE_RIGID_POINTS)
    seen = np.flatnonzero(np.isfinite(coords[:, rigid]).all(axis=(1, 2)))  # the head's pose needs every rigid point
    if not len(seen):
        return np.full((len(coords), len(EXPRESSION_POINTS), 3), np.nan)
    reference = coords[seen[0], rigid]
    for _ in range(2):  # align to the first face, then to the mean of the aligned faces (generalised Procrustes)
        aligned = np.stack([_apply(similarity_transform(coords[t, rigid], reference), coords[t, rigid]) for t in seen])
        reference = aligned.mean(0)
        reference = (reference - reference.mean(0)) / np.sqrt(((reference - reference.mean(0)) ** 2).sum(1).mean())
    expression = list(EXPRESSION_POINTS)
    out = np.full((len(coords), len(expression), 3), np.nan)
    for t in seen:
        out[t] = _apply(similarity_transform(coords[t, rigid], reference), coords[t, expression])
    return out


def body_coordinates(bodies: Sequence[Landmarks | None], layout: BodyLayout) -> np.ndarray:
    """[T, J, 2] body joints in units of the clip's median shoulder width (NaN where a joint was not seen)."""
    num_points = next((b.points.shape[0] for b in bodies if b is not None), max(layout.joints) + 1)
    coords = _stack(bodies, num_points, 2)
    left, right = layout.shoulders
    widths = np.linalg.norm(coords[:, left] - coords[:, right], axis=-1)
    widths = widths[np.isfinite(widths) & (widths > 0)]
    if not len(widths):
        raise MotionMeasurementError(
            "Body motion (ω_b) is measured in shoulder widths, but both shoulders are visible in no frame of the clip. "
            "Use a reference clip that shows the upper body."
        )
    return coords[:, list(layout.joints)] / np.median(widths)


def windowed_variance(coords: np.ndarray, window: int) -> float | None:
    """Mean over windows of the mean over points of each point's variance over time (summed over coordinates)."""
    frames = coords.shape[0]
    starts = list(range(0, frames - window + 1, max(1, window // 2)))
    if starts and starts[-1] != frames - window:
        starts.append(frames - window)
    need = max(3, math.ceil(window / 2))
    values = []
    for start in starts:
        part = coords[start : start + window]
        seen = (~np.isnan(part).any(-1)).sum(0)  # [P] frames in which each point was seen
        points = seen >= need
        if points.any():
            values.append(np.nanvar(part[:, points], axis=0).sum(-1).mean())
    return float(np.mean(values)) if values else None


def displacement_curve(coords: np.ndarray) -> np.ndarray:
    """[T] RMS distance of each frame's points from their median position over the clip (NaN where nothing was seen)."""
    curve = np.full(coords.shape[0], np.nan)
    with warnings.catch_warnings():  # points never seen have an all-NaN median; they are left out below
        warnings.simplefilter("ignore", RuntimeWarning)
        distance = ((coords - np.nanmedian(coords, axis=0)) ** 2).sum(-1)  # [T, P], NaN where unseen
    for t, row in enumerate(distance):
        row = row[np.isfinite(row)]
        if len(row):
            curve[t] = np.sqrt(row.mean())
    return curve


def fit_for_measuring(frame: np.ndarray) -> np.ndarray:
    """A frame whose longer side exceeds ``MEASURE_SIDE`` scaled down to it (area average): the trackers see the same
    resolution whatever the source, and a long clip stays cheap."""
    height, width = frame.shape[:2]
    if max(height, width) <= MEASURE_SIDE:
        return frame
    scale = MEASURE_SIDE / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    pixels = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
    resized = F.interpolate(pixels, size=size, mode="area")
    return resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def frames_per_window(fps: float, window_seconds: float) -> int:
    if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
        raise MotionMeasurementError(f"The clip's frame rate must be a positive number of frames per second; got {fps!r}.")
    window = round(window_seconds * fps)
    if window < 4:
        raise MotionMeasurementError(
            f"At {fps:g} fps a {window_seconds:g} s measuring window holds {window} frame(s); motion needs at least 4. "
            "Give the clip's real frame rate."
        )
    return window


def measure_motion(
    frames: Sequence[np.ndarray],
    fps: float,
    face_tracker,
    body_tracker,
    calibration: MotionCalibration | None = None,
    clip_name: str = "the clip",
    progress: Callable[[int, int], None] | None = None,
) -> MotionMeasurement:
    """ω_l and ω_b of a clip (RGB uint8 frames at ``fps``), measured by the given trackers (``landmarks``)."""
    calibration = calibration or MotionCalibration()
    window = frames_per_window(fps, calibration.window_seconds)
    total = len(frames)
    if total < window:
        raise MotionMeasurementError(
            f"{clip_name} has {total} frames ({total / fps:.2f} s at {fps:g} fps), but motion is measured over "
            f"{calibration.window_seconds:g} s windows: give at least {window} frames ({calibration.window_seconds:g} s)."
        )
    if body_tracker.layout.name != calibration.body_landmarks:
        if calibration.source != "defaults":
            raise MotionMeasurementError(
                f"The motion calibration of {calibration.source} was measured with {calibration.body_landmarks} body joints, "
                f"but this measurement uses {body_tracker.layout.name}: ω_b would not mean what it meant in training. "
                f"Measure with the {calibration.body_landmarks.replace('_', ' ')} body model."
            )
        logger.warning(
            "FantasyTalking: the default motion calibration was measured with %s body joints but this measurement uses "
            "%s; ω_b may read differently.",
            calibration.body_landmarks,
            body_tracker.layout.name,
        )
    faces, bodies = [], []
    for index, frame in enumerate(frames):
        frame = fit_for_measuring(frame)
        faces.append(face_tracker.track(frame))
        bodies.append(body_tracker.track(frame))
        if progress is not None:
            progress(index + 1, total)
    joints = list(body_tracker.layout.joints)
    face_missing = sum(not face_usable(face) for face in faces)
    body_missing = sum(body is None or not body.valid[joints].any() for body in bodies)
    for what, missing in (("a face", face_missing), ("a body", body_missing)):
        if missing > total - window / 2:
            raise MotionMeasurementError(
                f"{clip_name}: {missing} of {total} frames have no {what[2:]} the trackers could follow, too few left to "
                f"measure motion (at least {math.ceil(window / 2)} are needed). Use a clip with {what} clearly in view."
            )
    expression = expression_coordinates(faces)
    body = body_coordinates(bodies, body_tracker.layout)
    lip_raw = windowed_variance(expression, window)
    body_raw = windowed_variance(body, window)
    if lip_raw is None or body_raw is None:
        raise MotionMeasurementError(
            f"{clip_name}: no {calibration.window_seconds:g} s stretch has the {'face' if lip_raw is None else 'body'} in at "
            "least half of its frames, so its motion cannot be measured. Use a clip where it stays in view."
        )
    intensity = MotionIntensity(calibration.omega_lip(lip_raw), calibration.omega_body(body_raw))
    return MotionMeasurement(
        intensity,
        lip_raw,
        body_raw,
        displacement_curve(expression),
        displacement_curve(body),
        face_missing,
        body_missing,
        float(fps),
        calibration,
    )
