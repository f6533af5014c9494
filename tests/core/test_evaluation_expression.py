"""ES: Deep3DFaceRecon's R-Net at its real size with random weights, saved as its epoch_20.pth layout ({'net_recon':
state dict, optimizer, scheduler}) and loaded through the real loader; the expression coefficients checked against a
restatement with torchvision's own ResNet-50; the face alignment against where a frontal face's landmarks must land and
against Deep3DFaceRecon's align_img restated with PIL; ES against the cosine formula, with stand-in faces (fixed
keypoints, none in a blank frame) and with real ones (the astronaut, MediaPipe)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from evaluation_models import write_face_recon
from torch import nn

from fantasy_core.evaluation.expression import (
    STANDARD_LANDMARKS,
    EsProtocol,
    align_face,
    expression_coefficients,
    fit_scale_translation,
    load_face_recon,
    video_expression_similarity,
)
from fantasy_core.identity.face import DetectedFace
from fantasy_core.weights import CheckpointError

STANDARD = np.array(STANDARD_LANDMARKS)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return write_face_recon(str(tmp_path_factory.mktemp("weights")))


@pytest.fixture(scope="module")
def state(checkpoint) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True)["net_recon"]


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_face_recon(checkpoint)


def frontal_keypoints(centre, pixels_per_unit: float) -> np.ndarray:
    """Where a frontal face's five landmarks fall in an image: the standard points seen straight on, y downwards."""
    return np.stack([centre[0] + pixels_per_unit * STANDARD[:, 0], centre[1] - pixels_per_unit * STANDARD[:, 1]], 1)


def smooth_pictures(count: int, size: int, seed: int) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 6, 6, generator=generator)
    pictures = F.interpolate(coarse, size=(size, size), mode="bicubic").clamp(0, 1) * 255
    return pictures.round().byte().permute(0, 2, 3, 1).numpy()


class MarkedFaces:
    """A stand-in detector: one face with fixed keypoints in every picture that is not a single flat colour."""

    def __init__(self, keypoints):
        self.keypoints = np.asarray(keypoints, dtype=np.float32)

    def detect(self, image):
        if image.min() == image.max():
            return []
        x0, y0 = self.keypoints.min(0) - 20
        x1, y1 = self.keypoints.max(0) + 20
        return [DetectedFace((x0, y0, x1, y1), 0.9, self.keypoints)]


STAND_IN = MarkedFaces(frontal_keypoints((64, 60), 70))  # a 120 px picture, a face of about 100 px


# --- the R-Net and its file ----------------------------------------------------------------------------------------


def restated_coefficients(state, crops: np.ndarray) -> torch.Tensor:
    """torchvision's ResNet-50 given the backbone.* weights, its layers up to the average pool run by hand, then the
    seven 1x1 convolutions as matrix products, in Deep3DFaceRecon's order (identity, expression, texture, ...)."""
    from torchvision.models import resnet50

    net = resnet50(weights=None)
    backbone = {key[len("backbone.") :]: value for key, value in state.items() if key.startswith("backbone.")}
    net.load_state_dict({**net.state_dict(), **backbone})  # its own fc stays: it is not used below
    net.eval()
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        for layer in (net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4, net.avgpool):
            x = layer(x)
        pooled = x.flatten(1)
        heads = [pooled @ state[f"final_layers.{i}.weight"][:, :, 0, 0].T + state[f"final_layers.{i}.bias"] for i in range(7)]
    return torch.cat(heads, 1)


def test_the_epoch_20_layout_loads_and_expression_is_the_second_head(checkpoint, model, state):
    assert not model.training and not any(parameter.requires_grad for parameter in model.parameters())
    loaded = model.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())
    frames = smooth_pictures(2, 120, seed=1)
    crops = np.stack([align_face(frame, STAND_IN.keypoints) for frame in frames])
    expected = restated_coefficients(state, crops)
    assert expected.shape == (2, 257)
    with torch.no_grad():
        torch.testing.assert_close(model(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255), expected, rtol=1e-4, atol=1e-4)
    faces = [STAND_IN.detect(frame)[0] for frame in frames]
    coefficients = expression_coefficients(model, frames, faces, batch=1)
    assert coefficients.shape == (2, 64) and coefficients.dtype == torch.float32
    torch.testing.assert_close(coefficients, expected[:, 80:144], rtol=1e-4, atol=1e-4)
    assert (coefficients[0] - coefficients[1]).abs().max() > 1e-3  # different pictures, different coefficients


def test_a_bare_state_dict_without_batchnorm_counters_loads_too(state, tmp_path):
    path = tmp_path / "net_recon.pth"
    torch.save({key: value for key, value in state.items() if not key.endswith("num_batches_tracked")}, path)
    loaded = load_face_recon(str(path)).state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items() if not key.endswith("num_batches_tracked"))


def test_files_of_other_layouts_are_refused_with_what_to_download(state, tmp_path):
    from torchvision.models import resnet50

    def refused(content, pattern: str):
        path = tmp_path / "file.pth"
        torch.save(content, path)
        with pytest.raises(CheckpointError, match=pattern) as error:
            load_face_recon(str(path))
        assert "sicxu/Deep3DFaceRecon_pytorch" in str(error.value) and "deep3dfacerecon_epoch_20.pth" in str(error.value)

    backbone_only = {key: value for key, value in state.items() if not key.startswith("final_layers.")}
    refused(resnet50(weights=None).state_dict(), r"plain torchvision ResNet \(conv1\.weight \.\.\. fc\.weight")
    refused({"net_recon": backbone_only}, r"14 missing \(final_layers\.0\.weight, final_layers\.0\.bias")
    last_fc = {**backbone_only, "backbone.fc.weight": torch.zeros(257, 2048), "backbone.fc.bias": torch.zeros(257)}
    refused(last_fc, r"14 missing .*; 2 unexpected \(backbone\.fc\.bias, backbone\.fc\.weight\)")  # use_last_fc=True
    narrow = {**state, "final_layers.1.weight": torch.zeros(32, 2048, 1, 1), "final_layers.1.bias": torch.zeros(32)}
    refused(narrow, r"2 of the wrong shape \(final_layers\.1\.weight \[32, 2048, 1, 1\] \(expected \[64, 2048, 1, 1\]\)")
    refused({"model": {"lr": 0.1}}, r"holds \['model'\], neither a 'net_recon' entry nor a state dict of tensors")
    refused(nn.Linear(2, 2), "pickled objects other than tensors .*, which are never executed")
    damaged = {**state, "final_layers.1.bias": torch.full((64,), float("nan"))}
    refused({"net_recon": damaged}, r"final_layers\.1\.bias holds NaN")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_face_recon(str(tmp_path / "absent.pth"))


# --- alignment -----------------------------------------------------------------------------------------------------


def blob_image(height: int, width: int, points: np.ndarray, sigma: float) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    image = sum(np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)) for x, y in points)
    return np.repeat((np.clip(image, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def centroid(crop: np.ndarray, near, radius: int = 9) -> np.ndarray:
    x, y = (int(round(v)) for v in near)
    window = crop[y - radius : y + radius + 1, x - radius : x + radius + 1, 0].astype(np.float64)
    ys, xs = np.mgrid[y - radius : y + radius + 1, x - radius : x + radius + 1]
    return np.array([(window * xs).sum(), (window * ys).sum()]) / window.sum()


@pytest.mark.parametrize("centre, pixels_per_unit", [((150, 170), 160.0), ((60, 70), 45.0), ((250, 110), 100.0)])
def test_a_frontal_faces_landmarks_land_where_the_3d_template_puts_them(centre, pixels_per_unit):
    """The standard points (X, Y) seen straight on at any scale and place end at (112 + 102 X, 112 - 102 Y) of the
    crop: 102 px per model unit around the crop's centre, and exactly 102 px per unit between them. The slack is
    Deep3DFaceRecon's box: int() truncates its corner towards zero and its y flip (H - 1 - y) moves the picture by one
    source pixel, together up to 1.5 + s / 2 crop pixels at a resize by s, and the blobs' centroids are measured to a
    quarter pixel (the PIL test below pins the box)."""
    keypoints = frontal_keypoints(centre, pixels_per_unit)
    image = blob_image(240, 320, keypoints, sigma=2.5 * pixels_per_unit / 102)  # blobs of 2.5 px in the crop
    scale, translation = fit_scale_translation(keypoints, 240)
    assert scale == pytest.approx(pixels_per_unit, rel=1e-9)
    np.testing.assert_allclose(translation, [centre[0], 240 - 1 - centre[1]], atol=1e-6)
    crop = align_face(image, keypoints)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    template = np.stack([112 + 102 * STANDARD[:, 0], 112 - 102 * STANDARD[:, 1]], 1)
    found = np.stack([centroid(crop, point) for point in template])
    np.testing.assert_allclose(found, template, atol=1.75 + 0.5 * 102 / pixels_per_unit)
    np.testing.assert_allclose(found - found[2], template - template[2], atol=0.35)  # the scale, free of the box's offset


def test_the_crop_is_black_where_it_leaves_the_picture():
    white = np.full((200, 200, 3), 255, np.uint8)
    crop = align_face(white, frontal_keypoints((30, 30), 100))  # the face at the top-left corner
    assert (crop[:40, :40] == 0).all() and (crop[150:, 150:] == 255).all()


def test_alignment_matches_deep3dfacerecons_align_img_restated_with_pil():
    """align_img: landmarks with y flipped (H - 1 - y), POS as one 10 x 8 least-squares system, the PIL image resized
    (bicubic) to (int(W s), int(H s)) with s = 102 / POS scale and cropped at its box (black outside)."""
    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (200, 180, 3), dtype=np.uint8)  # every pixel its own: filters and their widths show
    for centre, pixels_per_unit, tilt in [((90, 100), 130.0, 0.1), ((40, 170), 50.0, -0.2), ((150, 30), 260.0, 0.0)]:
        keypoints = frontal_keypoints(centre, pixels_per_unit)
        keypoints[:, 1] += tilt * (keypoints[:, 0] - centre[0])  # a slight roll
        keypoints += rng.normal(0, 1.0, keypoints.shape)  # a detector's noise
        height, width = image.shape[:2]
        flipped = np.stack([keypoints[:, 0], height - 1 - keypoints[:, 1]], 1)
        system = np.zeros((10, 8))
        system[0::2, 0:3], system[0::2, 3], system[1::2, 4:7], system[1::2, 7] = STANDARD, 1, STANDARD, 1
        k = np.linalg.lstsq(system, flipped.reshape(10), rcond=None)[0]
        s = 102 / ((np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2)
        w, h = int(width * s), int(height * s)
        left, up = int(w / 2 - 112 + (k[3] - width / 2) * s), int(h / 2 - 112 + (height / 2 - k[7]) * s)
        expected = np.asarray(pil.fromarray(image).resize((w, h), resample=pil.BICUBIC).crop((left, up, left + 224, up + 224)))
        difference = np.abs(align_face(image, keypoints).astype(int) - expected.astype(int))
        assert difference.max() <= 1 and difference.mean() < 0.01  # PIL's fixed-point weights: a level here and there


# --- ES ------------------------------------------------------------------------------------------------------------


def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().numpy(), b.double().numpy()
    b = np.broadcast_to(b, a.shape)
    return float(np.mean([x @ y / (np.linalg.norm(x) * np.linalg.norm(y)) for x, y in zip(a, b)]))


def coefficients_of(model, frames) -> torch.Tensor:
    return expression_coefficients(model, frames, [STAND_IN.detect(frame)[0] for frame in frames])


def test_es_is_one_against_the_same_video_and_the_mean_cosine_otherwise(model):
    frames, references = smooth_pictures(2, 120, seed=4), smooth_pictures(3, 120, seed=5)
    coefficients = coefficients_of(model, np.concatenate([frames, references]))  # each picture's, computed once
    same = video_expression_similarity(model, frames, STAND_IN, reference_frames=frames.copy())
    assert same == {
        "es": pytest.approx(1.0, abs=1e-9),
        "es_status": "scored",
        "es_detail": "",
        "es_reference": "video",
        "es_frames": 2,
        "es_face_frames": 2,
    }
    row = video_expression_similarity(model, frames, STAND_IN, reference_frames=references)
    assert row["es"] == pytest.approx(mean_cosine(coefficients[:2], coefficients[2:4]), abs=1e-6) and row["es"] < 1 - 1e-6
    assert (row["es_frames"], row["es_face_frames"]) == (2, 2) and "the first 2 of 2 generated and 3 reference frames" in row["es_detail"]
    row = video_expression_similarity(model, frames, STAND_IN, EsProtocol(reference="portrait"), portrait=references[2])
    assert row["es"] == pytest.approx(mean_cosine(coefficients[:2], coefficients[4]), abs=1e-6) and row["es_reference"] == "portrait"


def test_frames_without_a_face_are_left_out_and_counted(model):
    frames = smooth_pictures(4, 120, seed=6)
    frames[1], frames[3] = 90, 90  # no face
    references = smooth_pictures(4, 120, seed=7)
    references[2] = 30  # no face in the reference's third frame
    row = video_expression_similarity(model, frames, STAND_IN, reference_frames=references)
    assert row["es"] == pytest.approx(mean_cosine(coefficients_of(model, frames[:1]), coefficients_of(model, references[:1])), abs=1e-6)
    assert (row["es_status"], row["es_frames"], row["es_face_frames"]) == ("scored", 4, 1)
    assert row["es_detail"] == "2 of 4 frames without a face left out; 1 frames whose reference frame has no face left out"


def test_a_faceless_video_or_reference_is_reported_not_scored(model):
    frames = smooth_pictures(2, 120, seed=8)
    blank = np.full_like(frames, 128)
    cases = [
        (dict(frames=blank, portrait=frames[0]), "no_face", "no face of at least 50 px in any of 2 frames"),
        (dict(frames=frames, portrait=blank[0]), "no_reference_face", "no face of at least 50 px in the portrait"),
        (dict(frames=frames, reference_frames=blank), "no_reference_face", "in the reference video"),
        (dict(frames=frames * [[[[1]]], [[[0]]]], reference_frames=frames * [[[[0]]], [[[1]]]]), "no_face", "in both the video"),
    ]
    for given, status, detail in cases:
        row = video_expression_similarity(model, detector=STAND_IN, **{key: np.asarray(value, np.uint8) for key, value in given.items()})
        assert (row["es"], row["es_status"], row["es_face_frames"]) == (None, status, 0) and detail in row["es_detail"]
    small = video_expression_similarity(model, frames, STAND_IN, EsProtocol(min_face_size=200), portrait=frames[0])
    assert small["es_status"] == "no_face"


def test_the_reference_must_agree_with_the_protocol(model):
    frames = smooth_pictures(2, 120, seed=9)
    with pytest.raises(ValueError, match="reference is 'video' but no reference_frames was given"):
        video_expression_similarity(model, frames, STAND_IN, EsProtocol(reference="video"), portrait=frames[0])
    with pytest.raises(ValueError, match="reference is 'portrait' but no portrait was given"):
        video_expression_similarity(model, frames, STAND_IN, EsProtocol(reference="portrait"), reference_frames=frames)
    with pytest.raises(ValueError, match="ES needs a reference"):
        video_expression_similarity(model, frames, STAND_IN)
    with pytest.raises(ValueError, match="reference must be one of"):
        EsProtocol(reference="first_frame")
    with pytest.raises(ValueError, match="one DetectedFace per frame: 2 frames, got 1 faces"):
        expression_coefficients(model, frames, STAND_IN.detect(frames[0]))


# --- real faces ----------------------------------------------------------------------------------------------------

REAL = EsProtocol(min_face_size=32)  # the astronaut's face is about 52 px in a 256 px frame


@pytest.fixture(scope="module")
def detector(mediapipe_face_detector):
    pytest.importorskip("skimage", reason="the astronaut comes from `pip install scikit-image`")
    return mediapipe_face_detector


@pytest.mark.face
def test_real_faces_score_one_against_themselves_and_the_formula_against_the_portrait(model, detector):
    from motion_clips import clip

    talking = np.stack(clip(frames=4, expression=14, size=256, blank=(0, 2)))  # the mouth open in frames 1 and 3
    row = video_expression_similarity(model, talking, detector, REAL, reference_frames=talking.copy())
    assert (row["es"], row["es_status"], row["es_frames"], row["es_face_frames"]) == (pytest.approx(1.0, abs=1e-9), "scored", 4, 2)
    assert row["es_detail"] == "2 of 4 frames without a face left out"
    still = clip(frames=1, size=256)[0]  # the astronaut as photographed
    row = video_expression_similarity(model, talking, detector, REAL, portrait=still)
    faces = [max(detector.detect(image), key=lambda face: face.area) for image in (talking[1], talking[3], still)]
    coefficients = expression_coefficients(model, np.stack([talking[1], talking[3], still]), faces, REAL)
    assert (row["es_status"], row["es_reference"], row["es_face_frames"]) == ("scored", "portrait", 2)
    assert row["es"] == pytest.approx(mean_cosine(coefficients[:2], coefficients[2]), abs=1e-6)
    assert row["es"] < 1 - 1e-7  # the mouth moves, the portrait's does not


@pytest.mark.face
def test_a_portrait_without_a_face_gives_no_reference_face(model, detector):
    from motion_clips import clip
    from skimage import data

    coffee = np.ascontiguousarray(data.coffee()[:256, :256])
    row = video_expression_similarity(model, np.stack(clip(frames=2, size=256)), detector, REAL, portrait=coffee)
    assert (row["es"], row["es_status"], row["es_reference"]) == (None, "no_reference_face", "portrait")
