"""The data preparation's pure parts: clip arithmetic, settings, filters, the latent lip mask, decoding at the
training frame rate, and the dataset folder's resume rules."""

from __future__ import annotations

import json
import math
import os
from fractions import Fraction

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fantasy_core.dataset.checks import largest_scene_change, speech_fraction
from fantasy_core.dataset.lip_mask import latent_lip_mask, pixel_lip_masks
from fantasy_core.dataset.settings import DatasetSettings, SettingsError
from fantasy_core.dataset.store import DatasetFolder, DatasetFolderError, shard_name
from fantasy_core.frames import clip_starts


def test_clips_are_whole_and_back_to_back_unless_a_stride_is_given():
    length = 81 / 23  # 3.5217 s
    assert clip_starts(10.0, 81, 23) == pytest.approx([0.0, length])  # 2 whole clips in 10 s, the rest dropped
    assert clip_starts(2 * length, 81, 23) == pytest.approx([0.0, length])
    assert clip_starts(length - 0.01, 81, 23) == []
    assert clip_starts(10.0, 81, 23, stride_seconds=2.0) == pytest.approx([0.0, 2.0, 4.0, 6.0])  # 6 + 3.52 <= 10


def test_settings_refuse_what_wan_cannot_take():
    with pytest.raises(ValueError, match="4k\\+1"):
        DatasetSettings(frames=80)
    with pytest.raises(SettingsError, match="width must be a multiple of 16"):
        DatasetSettings(width=500)
    with pytest.raises(SettingsError, match="min_speech_fraction must lie between 0 and 1"):
        DatasetSettings(min_speech_fraction=1.5)
    assert DatasetSettings().face_confidence_threshold == 0.8  # MediaPipe's scale
    assert DatasetSettings(face_detector="insightface/buffalo_l").face_confidence_threshold == 0.9  # the paper's
    assert DatasetSettings(min_face_confidence=0.95).face_confidence_threshold == 0.95
    assert DatasetSettings.from_json(DatasetSettings(fps=12).to_json()) == DatasetSettings(fps=12)
    with pytest.raises(SettingsError, match="unknown dataset settings \\['colour'\\]"):
        DatasetSettings.from_json({"colour": 1})


def test_speech_fraction_counts_windows_above_the_level():
    rate = 16000
    t = np.arange(rate) / rate
    loud = 0.1 * math.sqrt(2) * np.sin(2 * np.pi * 220 * t)  # RMS 0.1 = -20 dBFS
    assert speech_fraction(loud, rate, -45) == 1.0
    assert speech_fraction(np.zeros(rate), rate, -45) == 0.0
    half = np.concatenate([loud[: rate // 2], 1e-4 * loud[rate // 2 :]])  # second half at -100 dBFS
    assert speech_fraction(half, rate, -45) == pytest.approx(0.5, abs=1 / 33)
    assert speech_fraction(loud, rate, -15) == 0.0  # -20 dBFS is below a -15 dBFS level


def test_scene_change_is_small_for_a_moving_face_and_large_at_a_cut():
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    other = 255 - picture
    still = np.stack([picture] * 4)
    assert largest_scene_change(still) == 0.0
    moved = still.copy()
    moved[2, 30:34, 30:40] = 0  # a small region changes, as a mouth does
    assert 0 < largest_scene_change(moved) < 0.02
    cut = np.stack([picture, picture, other, other])
    expected = np.abs(other.astype(float) - picture.astype(float)).mean() / 255  # thumbnails of 64 x 64 are the frames
    assert largest_scene_change(cut) == pytest.approx(expected, rel=1e-5)


def test_lip_mask_fills_the_polygon_and_keeps_only_latent_cells_it_covers():
    square = [(16, 8), (24, 8), (24, 16), (16, 16)]  # covers pixels 16..24 x 8..16 (edges drawn too)
    masks = pixel_lip_masks([square, None], 32, 32)
    assert masks.shape == (2, 32, 32) and masks[1].sum() == 0
    assert masks[0, 8:17, 16:25].min() == 1 and masks[0].sum() == 81
    # one frame of nine covers exactly latent cell (row 1, column 2); trilinear sampling at input (8j + 3.5) and, in
    # time, at frame 3t + 1 of nine frames for three latent frames -> only frame 4's block shows, only in cell (1, 2)
    frames = torch.zeros(9, 32, 32)
    frames[4, 8:16, 16:24] = 1
    latent = latent_lip_mask(frames)
    assert latent.shape == (3, 4, 4)
    expected = torch.zeros(3, 4, 4)
    expected[1, 1, 2] = 1
    assert torch.equal(latent, expected)


def _settings(**changes):
    return DatasetSettings(fps=12, frames=25, width=64, height=64, **changes)


def _row(clip: str) -> dict:
    return {"clip": clip, "source": "a.mp4", "omega_lip_raw": 1e-3, "omega_body_raw": 1e-3}


def test_a_reopened_folder_forgets_what_a_kill_left_half_written(tmp_path):
    root = str(tmp_path / "data")
    folder = DatasetFolder.open(root, _settings(), {"vae": "v"})
    folder.add_shard({"a.x": torch.ones(2)}, [_row("a")])
    folder.add_shard({"b.x": torch.ones(2), "c.x": torch.ones(2)}, [_row("b"), _row("c")])
    folder.add_dropped([{"clip": "d", "source": "a.mp4", "reason": "no_face"}])
    # a kill: the second shard's rows only half appended, a partial dropped line, an orphan and a temporary shard
    manifest = os.path.join(root, "manifest.jsonl")
    lines = open(manifest).read().splitlines(keepends=True)
    open(manifest, "w").write(lines[0] + lines[1] + lines[2][:10])
    with open(os.path.join(root, "dropped.jsonl"), "a") as f:
        f.write('{"clip": "e", "sou')
    save_file({"z.x": torch.ones(1)}, os.path.join(root, shard_name(2)), metadata={"clips": json.dumps(["z"])})
    open(os.path.join(root, shard_name(3)) + ".tmp", "wb").close()
    reopened = DatasetFolder.open(root, _settings(), {"vae": "v"})
    assert [row["clip"] for row in reopened.kept] == ["a"]  # shard 1 lost its row "c": it is done again
    assert sorted(os.listdir(os.path.join(root, "shards"))) == ["shard-00000.safetensors"]
    assert reopened.done == {"a", "d"} and reopened.next_shard == 1
    assert open(manifest).read().count("\n") == 1 and open(os.path.join(root, "dropped.jsonl")).read().endswith("\n")
    assert reopened.add_shard({"b.x": torch.ones(2)}, [_row("b")]) == shard_name(1)


def test_a_folder_holding_another_dataset_or_other_files_is_refused(tmp_path):
    root = str(tmp_path / "data")
    DatasetFolder.open(root, _settings(), {"vae": "v"})
    with pytest.raises(DatasetFolderError, match="holds another dataset \\(fps: 12 there, 23 now\\)"):
        DatasetFolder.open(root, DatasetSettings(fps=23, frames=25, width=64, height=64), {"vae": "v"})
    with pytest.raises(DatasetFolderError, match="vae: 'v' there, 'w' now"):
        DatasetFolder.open(root, _settings(), {"vae": "w"})
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    with pytest.raises(DatasetFolderError, match="not empty and holds no dataset.json"):
        DatasetFolder.open(str(tmp_path / "photos"), _settings(), {})


def test_frames_are_read_at_the_training_rate_from_the_nearest_source_frame(tmp_path):
    av = pytest.importorskip("av")
    from fantasy_core.dataset.video import UnreadableVideoError, probe, read_frames

    path = str(tmp_path / "count.mp4")
    with av.open(path, "w") as container:  # frame i is grey level 8 i: its index survives H.264
        stream = container.add_stream("libx264", rate=25, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv444p"
        for i in range(30):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 8 * i, np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    info = probe(path)
    assert (info.fps, info.width, info.height, info.has_audio) == (25, 32, 32, False)
    frames = read_frames(path, start=0.51, count=6, fps=10)
    indices = np.round(frames[:, 16, 16, 0] / 8).astype(int).tolist()
    assert indices == [math.floor((0.51 + i / 10) * 25 + 0.5) for i in range(6)] == [13, 15, 18, 20, 23, 25]
    with pytest.raises(UnreadableVideoError, match="ends before"):
        read_frames(path, start=1.0, count=6, fps=12)


def _write_av(path: str, audio_start: float, audio: np.ndarray, rate: int = 16000, seconds: float = 1.0) -> None:
    """A Matroska file: 25 fps grey video from 0 s and s16 PCM sound that starts ``audio_start`` seconds later."""
    import av

    with av.open(path, "w", format="matroska") as container:
        video = container.add_stream("libx264", rate=25)
        video.width = video.height = 32
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        for _ in range(int(seconds * 25)):
            for packet in video.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 100, np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        pcm = np.round(audio * 32767).astype(np.int16)
        for first in range(0, len(pcm), 800):
            frame = av.AudioFrame.from_ndarray(pcm[None, first : first + 800], format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, first + int(audio_start * rate), Fraction(1, rate)
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode(None):
            container.mux(packet)


def test_sound_keeps_its_place_against_the_picture_and_ends_where_the_track_ends(tmp_path):
    pytest.importorskip("av")
    from fantasy_core.dataset.video import read_audio

    rate = 16000
    tone = (0.5 * np.sin(2 * np.pi * 300 * np.arange(int(0.6 * rate)) / rate)).astype(np.float32)
    path = str(tmp_path / "late.mkv")
    _write_av(path, audio_start=0.2, audio=tone)  # sound from 0.2 s to 0.8 s of the video
    samples, got_rate = read_audio(path, 0.0, 0.5)
    assert got_rate == rate and samples.shape == (1, int(0.5 * rate))
    assert np.abs(samples[0, : int(0.2 * rate) - 2]).max() == 0  # silence before the sound starts
    np.testing.assert_allclose(samples[0, int(0.2 * rate) :], tone[: int(0.3 * rate)], atol=1e-4)
    later, _ = read_audio(path, 0.5, 0.5)  # 0.5 .. 1.0 s: only 0.3 s of sound is left
    assert later.shape == (1, int(0.3 * rate))
    np.testing.assert_allclose(later[0], tone[int(0.3 * rate) :], atol=1e-4)


def test_an_unexpected_failure_is_reported_for_a_retry_and_a_broken_pool_stops_the_run():
    from concurrent.futures.process import BrokenProcessPool

    from fantasy_core.dataset.analyse import ERROR, ClipTask
    from fantasy_train.prepare import _guarded, read_captions

    task = ClipTask("a.mp4", "a.mp4", "a-0000", 0.0, "")

    def fails(_):
        raise ValueError("odd frame")

    result = _guarded(fails, task)
    assert (result.reason, result.detail) == (ERROR, "ValueError: odd frame")

    def broken(_):
        raise BrokenProcessPool("a worker died")

    with pytest.raises(BrokenProcessPool):
        _guarded(broken, task)
    with pytest.raises(FileNotFoundError, match="--captions: the file"):
        read_captions("videos", "missing.csv")


def test_whole_videos_without_sound_too_small_or_too_short_are_dropped_with_the_reason(tmp_path):
    pytest.importorskip("av")
    from fantasy_train.prepare import plan

    silent_picture = str(tmp_path / "picture_only.mkv")
    import av

    with av.open(silent_picture, "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for _ in range(25):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    talking = str(tmp_path / "talking.mkv")
    _write_av(talking, audio_start=0.0, audio=np.full(16000, 0.1, np.float32))  # 32 x 32, 1 s of sound
    videos = [(silent_picture, "picture_only.mkv"), (talking, "talking.mkv")]

    def reasons(settings):
        tasks, dropped = plan(videos, settings, {}, set())
        return [(row["source"], row["reason"], row["detail"]) for row in dropped], tasks

    dropped, tasks = reasons(DatasetSettings(fps=12, frames=9, width=32, height=32))  # 0.75 s clips
    assert dropped == [("picture_only.mkv", "no_audio", "picture_only.mkv has no audio track")]
    assert [task.start for task in tasks] == [0.0]
    dropped, _ = reasons(DatasetSettings(fps=12, frames=9, width=64, height=64))
    assert dropped[1] == ("talking.mkv", "low_resolution", "32x32, below min_resolution 64 on the shorter side")
    dropped, _ = reasons(DatasetSettings(fps=12, frames=13, width=32, height=32))  # 1.08 s clips
    assert dropped[1][:2] == ("talking.mkv", "too_short") and "one clip needs 1.08 s" in dropped[1][2]
    assert reasons(DatasetSettings(fps=12, frames=9, width=32, height=32))[0][1:] == []
    _, again = plan(videos, DatasetSettings(fps=12, frames=9, width=32, height=32), {}, {"picture_only.mkv", tasks[0].clip_id})
    assert again == []  # what a previous run decided is not planned again


def test_the_command_refuses_bad_settings_before_loading_anything(tmp_path, capsys, monkeypatch):
    import fantasy_train.cli
    from fantasy_train.cli import main

    monkeypatch.setattr(fantasy_train.cli, "_start_comfyui", lambda args: pytest.fail("ComfyUI was started for refused settings"))

    (tmp_path / "videos").mkdir()
    out = str(tmp_path / "out")
    assert main(["prepare", str(tmp_path / "videos"), out, "--sync-min-confidence", "2"]) == 2
    assert "--sync-max-offset and --sync-min-confidence need --syncnet" in capsys.readouterr().err
    assert main(["prepare", str(tmp_path / "videos"), out, "--frames", "80"]) == 2
    assert "frames must be of the form 4k+1" in capsys.readouterr().err
    assert main(["prepare", str(tmp_path / "missing"), out]) == 2
    assert f"VIDEOS: the folder {tmp_path / 'missing'} does not exist." in capsys.readouterr().err
    # clips shorter than the 2 s motion-measuring window could never be measured: refused, with the minimum
    assert main(["prepare", str(tmp_path / "videos"), out, "--frames", "17"]) == 2
    err = capsys.readouterr().err
    assert "frames: 17 frames at 23 fps (0.74 s) is shorter than the 2 s window" in err
    assert "Use --frames 49 or more (at least 46 frames at this frame rate" in err
    assert not os.path.exists(out)


def test_every_option_of_both_commands_says_what_it_does_and_its_default():
    from fantasy_train.cli import HelpFormatter, parser

    commands = next(action for action in parser()._actions if action.dest == "command").choices
    for name in ("prepare", "train"):
        command = commands[name]
        text = command.format_help()
        assert "exit codes:" in text and "3  a model file is missing" in text
        for action in command._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
            if action.option_strings and action.nargs != 0:  # every option with a value names its default
                assert "default" in HelpFormatter(name)._get_help_string(action), f"{name} {action.option_strings}"


def test_settings_name_the_body_model_as_a_calibration_does():
    assert DatasetSettings().body_landmarks == "mediapipe_pose"
    assert DatasetSettings(body_model="dwpose/dw-ll_ucoco_384.onnx").body_landmarks == "dwpose"
