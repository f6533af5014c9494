"""The data preparation end to end on a small dataset made here from real parts (the astronaut talking with espeak-ng
speech, a faceless, a silent, a scene-cut and a corrupt video), with tiny ComfyUI encoders and an ArcFace ONNX
stand-in: what is kept, what is dropped and why, every cached tensor, the lip mask's place, and resuming a killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors import safe_open

from fantasy_core.dataset.settings import DatasetSettings

pytestmark = pytest.mark.face
SETTINGS = DatasetSettings(fps=12, frames=25, width=128, height=128)  # 2.08 s clips, two per 4.4 s video
SHARD = 1  # one clip per shard, so a kill lands between shards
KEPT = ["talk_0-0000", "talk_0-0001", "talk_1-0000", "talk_1-0001"]
DROPPED = {
    ("corrupt.mp4", None): "unreadable",
    ("cut.mp4", 0): "scene_cut",
    ("cut.mp4", 1): "no_face",
    ("faceless.mp4", 0): "no_face",
    ("faceless.mp4", 1): "no_face",
    ("silent.mp4", 0): "no_speech",
    ("silent.mp4", 1): "no_speech",
}


def short(clip: str) -> str:
    stem, _, index = clip.rsplit("-", 2)
    return f"{stem}-{index}"


def rows(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def children(pid: int) -> list[int]:
    """Worker processes of a process (Linux /proc), the multiprocessing resource tracker aside."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(child) for child in f.read().split()]
    return [child for child in found if "spawn_main" in open(f"/proc/{child}/cmdline").read()]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def shard_tensors(root) -> dict:
    tensors = {}
    for name in sorted(os.listdir(os.path.join(root, "shards"))):
        with safe_open(os.path.join(root, "shards", name), "pt") as f:
            tensors.update({(f"shards/{name}", key): f.get_tensor(key) for key in f.keys()})  # noqa: SIM118 - safe_open has no __iter__
    return tensors


@pytest.fixture(scope="module")
def made(comfy, tmp_path_factory):
    from dataset_media import make_videos
    from dataset_models import MODEL_NAMES, tiny_encoders
    from face_models import save_arcface_onnx

    from fantasy_core.dataset.analyse import AnalysisModels
    from fantasy_train.prepare import RunOptions, prepare_dataset

    root = tmp_path_factory.mktemp("dataset")
    videos, models = root / "videos", root / "models"
    make_videos(str(videos))
    (videos / "talk_1.txt").write_text("An astronaut talks about the mission.\n")
    encoders = tiny_encoders(comfy, str(models))
    save_arcface_onnx(str(models / "arcface.onnx"))
    analysis = AnalysisModels(SETTINGS, arcface_path=str(models / "arcface.onnx"))
    summary = prepare_dataset(
        str(videos),
        str(root / "out"),
        SETTINGS,
        encoders,
        MODEL_NAMES,
        analysis,
        options=RunOptions(clips_per_shard=SHARD, show_progress=False),
    )
    return {"root": root, "videos": videos, "models": models, "out": root / "out", "summary": summary, "encoders": encoders}


def test_talking_clips_are_kept_and_the_rest_dropped_with_their_reasons(made):
    kept = rows(made["out"] / "manifest.jsonl")
    assert [short(row["clip"]) for row in kept] == KEPT
    assert all(row["frames"] == 25 and row["fps"] == 12 and row["end"] - row["start"] == pytest.approx(25 / 12) for row in kept)
    assert [row["start"] for row in kept] == pytest.approx([0, 25 / 12, 0, 25 / 12])
    dropped = rows(made["out"] / "dropped.jsonl")
    assert {(row["source"], None if row["clip"] is None else int(row["clip"][-4:])): row["reason"] for row in dropped} == DROPPED
    by_reason = {row["reason"]: row["detail"] for row in dropped}
    assert "could not be opened as a video" in by_reason["unreadable"]
    assert "0% of the clip is above -45 dBFS" in by_reason["no_speech"]
    assert made["summary"]["clips_kept"] == 4
    assert {reason: entry["count"] for reason, entry in made["summary"]["dropped"].items()} == {
        "no_face": 3,
        "no_speech": 2,
        "scene_cut": 1,
        "unreadable": 1,
    }
    assert [row["caption"] for row in kept] == ["", "", "An astronaut talks about the mission.", "An astronaut talks about the mission."]
    for row in kept:
        assert row["checks"]["face_confidence"] >= 0.8 and row["checks"]["speech_fraction"] >= 0.3
        assert row["checks"]["scene_change"] < 0.1 and row["omega_lip_raw"] > 0 and row["omega_body_raw"] > 0


def test_every_cached_tensor_has_its_shape_and_dtype(made):
    tensors = shard_tensors(made["out"])
    kept = rows(made["out"] / "manifest.jsonl")
    assert len({key[0] for key in tensors}) == 4  # one shard per clip
    latent = (16, 7, 16, 16)  # 25 frames -> 7 latent frames; 128 px -> 16 cells
    expected = {
        "latents": (latent, torch.bfloat16),
        "reference_latents": (latent, torch.bfloat16),
        "reference_mask": ((1, 7, 16, 16), torch.bfloat16),
        "clip_vision": ((257, 1280), torch.bfloat16),
        "audio_features": ((103, 768), torch.bfloat16),  # int(25 / 12 * 16000) samples -> 103 wav2vec tokens
        "lip_mask": ((7, 16, 16), torch.bfloat16),
        "face_embedding": ((512,), torch.float32),
    }
    for row in kept:
        assert row["fields"] == sorted(expected)
        for field, (shape, dtype) in expected.items():
            tensor = tensors[(row["shard"], f"{row['clip']}.{field}")]
            assert (tuple(tensor.shape), tensor.dtype) == (shape, dtype), field
        text = tensors[(row["shard"], row["text"])]
        assert text.shape[1] == 4096 and text.dtype == torch.bfloat16
        assert torch.linalg.norm(tensors[(row["shard"], f"{row['clip']}.face_embedding")]) == pytest.approx(1, abs=1e-5)
        mask = tensors[(row["shard"], f"{row['clip']}.reference_mask")]
        assert mask[:, 0].eq(0).all() and mask[:, 1:].eq(1).all()
    texts = {row["caption"]: tensors[(row["shard"], row["text"])].shape[0] for row in kept}
    assert texts[""] == 1 and texts["An astronaut talks about the mission."] > 1  # the end token alone vs the caption's tokens


def test_the_cached_latents_are_the_vaes_and_the_reference_starts_with_the_first_frame(made):
    """The causal VAE's first latent frame sees only the first frame: the clip's and the reference's agree with the
    encoding of that frame alone, read here from the file independently of the pipeline."""
    import av

    row = rows(made["out"] / "manifest.jsonl")[2]  # talk_1, clip 0: starts at 0 s
    with av.open(str(made["videos"] / "talk_1.mp4")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    pixels = (
        torch.nn.functional.interpolate(
            torch.from_numpy(first).permute(2, 0, 1)[None].float(), size=(128, 128), mode="bilinear", antialias=True, align_corners=False
        )
        .round()
        .clamp(0, 255)
    )
    alone = made["encoders"].vae.encode(pixels.permute(0, 2, 3, 1) / 255)[0][:, 0]
    tensors = shard_tensors(made["out"])
    for field in ("latents", "reference_latents"):
        cached = tensors[(row["shard"], f"{row['clip']}.{field}")][:, 0].float()
        torch.testing.assert_close(cached, alone.to(torch.bfloat16).float(), atol=0.02, rtol=0.02)
    later = tensors[(row["shard"], f"{row['clip']}.latents")][:, 1:].float()
    grey = tensors[(row["shard"], f"{row['clip']}.reference_latents")][:, 1:].float()
    assert (later - grey).abs().mean() > 0.05  # the clip's own frames, not the grey continuation


def test_the_latent_lip_mask_lies_on_the_mouth(made):
    """Centre of mass of the mask, over all latent frames, inside the latent cells the mouth's landmarks fall in (the
    astronaut's mouth from MediaPipe on the still photo, scaled 512 -> 128; the lower lip drops by up to 14/4 px)."""
    from motion_clips import face_points

    points = face_points()
    mouth = np.array([points["mouth_left"], points["mouth_right"], points["lower_lip"]]) / 4
    low = np.floor(mouth.min(0) / 8) * 8
    high = (np.floor((mouth.max(0) + [0, 14 / 4]) / 8) + 1) * 8
    tensors = shard_tensors(made["out"])
    for row in rows(made["out"] / "manifest.jsonl"):
        mask = tensors[(row["shard"], f"{row['clip']}.lip_mask")].float()
        assert mask.sum() > 0 and mask.max() <= 1
        assert (mask.sum((1, 2)) > 0).all()  # a mouth in every latent frame
        ys, xs = torch.meshgrid(torch.arange(16.0) + 0.5, torch.arange(16.0) + 0.5, indexing="ij")
        total = mask.sum()
        centre = np.array([float((mask * xs).sum() / total), float((mask * ys).sum() / total)]) * 8
        assert (low <= centre).all() and (centre <= high).all(), (centre, low, high)


def test_calibration_summary_and_histograms_come_from_the_kept_clips(made):
    from PIL import Image

    from fantasy_core.motion.intensity import MotionCalibration

    kept = rows(made["out"] / "manifest.jsonl")
    calibration = MotionCalibration.from_json(json.load(open(made["out"] / "calibration.json")), "test")
    lip = sorted(row["omega_lip_raw"] for row in kept)
    assert calibration.lip[0] == (0.0, pytest.approx(lip[0])) and calibration.lip[-1] == (100.0, pytest.approx(lip[-1]))
    assert calibration.omega_lip(float(np.median(lip))) == pytest.approx(0.5, abs=1e-6)
    assert calibration.body_landmarks == "mediapipe_pose"
    with Image.open(made["out"] / "omega_histograms.png") as image:
        assert image.size == (640, 400)
    # talk_1 opens its mouth further (14 px against 10 px at 512): its expression reads higher in both clips
    assert min(row["omega_lip_raw"] for row in kept[2:]) > max(row["omega_lip_raw"] for row in kept[:2])


def test_a_run_killed_mid_way_resumes_to_the_files_of_an_uninterrupted_run(made, comfyui_path, tmp_path):
    """The killed run uses two worker processes; the finished one ran without: the same clips, rows and tensors."""
    out = tmp_path / "out"
    runner = os.path.join(os.path.dirname(__file__), "dataset_runner.py")
    command = [sys.executable, runner, str(made["videos"]), str(out), str(made["models"]), "2"]
    process = subprocess.Popen(
        command, env={**os.environ, "COMFYUI_PATH": str(comfyui_path)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 300
    while not (manifest.exists() and manifest.read_text().count("\n") >= 2):
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the run wrote no shard in 300 s"
        time.sleep(0.05)
    workers = children(process.pid)
    assert len(workers) == 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers):  # the orphaned workers leave by themselves
        assert time.monotonic() < deadline, "the worker processes outlived the killed run"
        time.sleep(0.2)
    assert manifest.read_text().count("\n") < 4, "the run finished before it was killed"
    resumed = subprocess.run(command[:-1] + ["0"], env={**os.environ, "COMFYUI_PATH": str(comfyui_path)}, capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    assert rows(manifest) == rows(made["out"] / "manifest.jsonl")
    assert rows(out / "dropped.jsonl") == rows(made["out"] / "dropped.jsonl")
    expected, got = shard_tensors(made["out"]), shard_tensors(out)
    assert sorted(got) == sorted(expected)
    for key, tensor in expected.items():
        assert torch.equal(got[key], tensor), key


def test_a_folder_with_another_dataset_is_refused_and_a_missing_model_named(made, comfyui_path, tmp_path):
    from fantasy_core.dataset.store import DatasetFolder, DatasetFolderError

    with pytest.raises(DatasetFolderError, match="holds another dataset \\(fps: 12 there, 23 now"):
        DatasetFolder.open(str(made["out"]), DatasetSettings(fps=23, frames=25, width=128, height=128), {})
    pack = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fantasy_train",
            "prepare",
            str(made["videos"]),
            str(tmp_path / "new"),
            "--vae",
            "no_such_vae.safetensors",
            "--comfyui",
            str(comfyui_path),
            "--comfyui-args=--cpu",
        ],
        cwd=pack,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 3, result.stderr[-2000:]
    assert "--vae: 'no_such_vae.safetensors' was not found in" in result.stderr and "models/vae" in result.stderr
    assert "--wav2vec: wav2vec2 model 'wav2vec2-base-960h' was not found in" in result.stderr  # every missing file at once


def test_the_syncnet_filter_keeps_clips_at_or_above_its_confidence_and_drops_the_others(made, tmp_path):
    """A SyncNet file in the released layout (random weights) scores every clip; with the threshold between the two
    clips' confidences, exactly the lower one is dropped, with its offset and confidence."""
    import shutil

    from dataset_models import MODEL_NAMES

    from fantasy_core.dataset.analyse import AnalysisModels
    from fantasy_core.lipsync.syncnet import SyncNet
    from fantasy_train.prepare import RunOptions, prepare_dataset

    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), tmp_path / "syncnet_v2.model")
    (tmp_path / "videos").mkdir()
    shutil.copy(made["videos"] / "talk_0.mp4", tmp_path / "videos")

    def run(name: str, min_confidence: float) -> dict:
        settings = DatasetSettings(fps=12, frames=25, width=128, height=128, sync_max_offset=15, sync_min_confidence=min_confidence)
        models = AnalysisModels(settings, syncnet_path=str(tmp_path / "syncnet_v2.model"))
        return prepare_dataset(
            str(tmp_path / "videos"),
            str(tmp_path / name),
            settings,
            made["encoders"],
            MODEL_NAMES,
            models,
            options=RunOptions(show_progress=False),
        )

    assert run("all", 0.0)["clips_kept"] == 2
    scored = rows(tmp_path / "all" / "manifest.jsonl")
    confidences = sorted(row["checks"]["sync_confidence"] for row in scored)
    assert all(row["checks"]["sync_distance"] > 0 and abs(row["checks"]["sync_offset"]) <= 15 for row in scored)
    assert confidences[0] < confidences[1], "the two clips must score differently for this test to mean anything"
    summary = run("strict", (confidences[0] + confidences[1]) / 2)
    assert summary["clips_kept"] == 1 and summary["dropped"]["lip_sync"]["count"] == 1
    [dropped] = rows(tmp_path / "strict" / "dropped.jsonl")
    assert dropped["checks"]["sync_confidence"] == confidences[0] and "SyncNet offset" in dropped["detail"]
    [kept] = rows(tmp_path / "strict" / "manifest.jsonl")
    assert kept["checks"]["sync_confidence"] == confidences[1]


def test_a_clip_whose_sound_ends_early_or_whose_face_is_unsure_is_dropped_with_the_reason(made, tmp_path):
    from dataset_media import VIDEO_FPS, speech, write_video
    from motion_clips import clip

    from fantasy_core.dataset.analyse import AnalysisModels, ClipAnalyser, ClipTask

    voice, rate = speech("a")
    short_sound = write_video(
        str(tmp_path / "short_sound.mp4"), clip(frames=int(4.4 * VIDEO_FPS), expression=10, size=256), VIDEO_FPS, (voice[: 3 * rate], rate)
    )  # picture 4.4 s, sound 3 s
    unsure = DatasetSettings(fps=12, frames=25, width=128, height=128, min_face_confidence=0.99)
    analyser = ClipAnalyser(AnalysisModels(unsure))
    try:
        ended = analyser.analyse(ClipTask(short_sound, "short_sound.mp4", "short-0000", 2.0, ""))
        assert ended.reason == "audio_unusable"
        assert ended.detail.startswith("the sound covers 1.0") and ended.detail.endswith("s of the 2.08 s clip")
        doubted = analyser.analyse(ClipTask(str(made["videos"] / "talk_0.mp4"), "talk_0.mp4", "talk_0-0000", 0.0, ""))
        assert doubted.reason == "face_confidence"
        assert doubted.detail == f"face confidence {doubted.checks['face_confidence']:.3f} (min_face_confidence 0.99)"
        assert 0.8 <= doubted.checks["face_confidence"] < 0.99
    finally:
        analyser.close()
