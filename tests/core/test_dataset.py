"""The data preparation's pure parts: clip arithmetic, settings, filters, the latent lip mask, decoding at the
training frame rate, and the dataset folder's resume rules."""

from __future__ import annotations

import json
import math
import os

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
