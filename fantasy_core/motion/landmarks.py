"""Per-frame landmarks for measuring motion: the face mesh (for ω_l) and body joints (for ω_b).

Each tracker looks at every frame on its own (MediaPipe's static-image mode: deterministic, identical frames give
identical landmarks, no smoothing that would damp the motion being measured) and returns ``Landmarks`` in source
pixels, or None when it found nobody. It follows the most prominent person; clips should show one. Body trackers mark
joints they cannot see as invalid (portrait clips rarely show the hips).

- Face: MediaPipe face mesh, 478 points with z (in the same pixel scale as x).
- Body: MediaPipe Pose (33 points, ``model_complexity=1``, the only complexity whose model ships in the wheel), or
  DWPose / RTMPose ONNX files through rtmlib (COCO order; the whole frame is the person's box, as in a portrait clip).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..optional import import_mediapipe, import_onnxruntime, import_rtmlib

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Landmarks:
    points: np.ndarray  # [P, D] float64, source pixels (x, y[, z])
    valid: np.ndarray  # [P] bool: the tracker saw this point

    def __post_init__(self):
        if self.points.ndim != 2 or self.valid.shape != self.points.shape[:1]:
            raise ValueError(f"Landmarks need points [P, D] and valid [P]; got {self.points.shape} and {self.valid.shape}.")


@dataclass(frozen=True)
class BodyLayout:
    """Which of a body model's points are the body joints motion is measured on, and which two are the shoulders."""

    name: str  # as recorded in a calibration ("mediapipe_pose", "dwpose")
    joints: tuple[int, ...]  # shoulders, elbows, wrists, hips
    shoulders: tuple[int, int]


MEDIAPIPE_POSE = BodyLayout("mediapipe_pose", (11, 12, 13, 14, 15, 16, 23, 24), (11, 12))
COCO_BODY = BodyLayout("dwpose", (5, 6, 7, 8, 9, 10, 11, 12), (5, 6))  # DWPose's 133 points start with COCO's 17


def _require_rgb_uint8(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError("Motion trackers take RGB frames as uint8 arrays [height, width, 3].")
    return np.ascontiguousarray(frame)


class _Closing:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class FaceMeshTracker(_Closing):
    name = "mediapipe face mesh"

    def __init__(self, min_confidence: float = 0.5):
        mp = import_mediapipe("Measuring facial motion (ω_l)")
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=min_confidence,
        )

    def track(self, frame: np.ndarray) -> Landmarks | None:
        frame = _require_rgb_uint8(frame)
        result = self._mesh.process(frame)
        if not result.multi_face_landmarks:
            return None
        height, width = frame.shape[:2]
        points = np.array([[p.x * width, p.y * height, p.z * width] for p in result.multi_face_landmarks[0].landmark])
        return Landmarks(points, np.ones(len(points), dtype=bool))

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None


class MediaPipePoseTracker(_Closing):
    name = "mediapipe pose"
    layout = MEDIAPIPE_POSE

    def __init__(self, min_confidence: float = 0.5, min_visibility: float = 0.8):
        mp = import_mediapipe("Measuring body motion (ω_b) with MediaPipe Pose")
        self.min_visibility = min_visibility
        self._pose = mp.solutions.pose.Pose(
            static_image_mode=True,
            model_complexity=1,
            enable_segmentation=False,
            min_detection_confidence=min_confidence,
        )

    def track(self, frame: np.ndarray) -> Landmarks | None:
        frame = _require_rgb_uint8(frame)
        result = self._pose.process(frame)
        if result.pose_landmarks is None:
            return None
        height, width = frame.shape[:2]
        landmarks = result.pose_landmarks.landmark
        points = np.array([[p.x * width, p.y * height] for p in landmarks])
        valid = np.array([p.visibility >= self.min_visibility for p in landmarks])
        return Landmarks(points, valid)

    def close(self) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None


class DWPoseTracker(_Closing):
    """A DWPose (``dw-ll_ucoco_384.onnx``, 133 points) or RTMPose body model (17 points), run by rtmlib on onnxruntime."""

    name = "dwpose"
    layout = COCO_BODY

    def __init__(self, model_path, min_score: float = 0.3, device: str | None = None):
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"The DWPose model '{path}' does not exist. Put dw-ll_ucoco_384.onnx in ComfyUI/models/dwpose/.")
        rtmlib = import_rtmlib("Measuring body motion with DWPose")
        onnxruntime = import_onnxruntime("Measuring body motion with DWPose")

        try:
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for unreadable files
            raise ValueError(
                f"'{path.name}' could not be read as an ONNX model ({type(error).__name__}: {error}). Download dw-ll_ucoco_384.onnx again."
            ) from error
        inputs, outputs = session.get_inputs(), session.get_outputs()
        shape = inputs[0].shape if len(inputs) == 1 else None
        if shape is None or len(shape) != 4 or not all(isinstance(v, int) for v in shape[2:]) or len(outputs) != 2:
            raise ValueError(
                f"'{path.name}' is not a DWPose/RTMPose model: expected one image input [1, 3, H, W] and two SimCC outputs, "
                f"found inputs {[i.shape for i in inputs]} and {len(outputs)} output(s). Use dw-ll_ucoco_384.onnx (yzd-v/DWPose)."
            )
        keypoints = outputs[0].shape[1]
        if not isinstance(keypoints, int) or keypoints < 17:
            raise ValueError(f"'{path.name}' predicts {keypoints} keypoints; a body model gives at least COCO's 17.")
        if device is None:
            device = "cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "cpu"
        self.min_score = min_score
        self._model = rtmlib.RTMPose(str(path), model_input_size=(shape[3], shape[2]), backend="onnxruntime", device=device)
        logger.info("DWPose '%s' runs on %s", path.name, self._model.session.get_providers()[0])

    def track(self, frame: np.ndarray) -> Landmarks | None:
        frame = _require_rgb_uint8(frame)
        keypoints, scores = self._model(np.ascontiguousarray(frame[..., ::-1]))  # rtmlib takes OpenCV's BGR order
        valid = scores[0] >= self.min_score
        if not valid.any():
            return None
        return Landmarks(np.asarray(keypoints[0], dtype=np.float64), valid)

    def close(self) -> None:
        self._model = None
