"""SyncNet scoring: offsets and confidence against a separate statement of syncnet_python's rule, the face crop's
geometry, MFCC framing, and the weight file checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fantasy_core.lipsync.score import face_crops, mfcc, offsets_and_confidence
from fantasy_core.lipsync.syncnet import SyncNet, load_syncnet
from fantasy_core.weights import CheckpointError


def restated(lips: np.ndarray, sound: np.ndarray, shift: int) -> tuple[int, float, float]:
    """For each offset k in -shift..shift, the mean over windows i of |lips[i] - sound[i + k]| (sound outside: zeros);
    offset = the k with the least mean, negated as syncnet_python reports it (shift - index)."""
    means = []
    for k in range(-shift, shift + 1):
        total = 0.0
        for i in range(len(lips)):
            other = sound[i + k] if 0 <= i + k < len(sound) else np.zeros_like(sound[0])
            total += np.sqrt(((lips[i] - other + 1e-6) ** 2).sum())  # pairwise_distance's eps
        means.append(total / len(lips))
    best = int(np.argmin(means))
    return shift - best, float(np.median(means) - means[best]), float(means[best])


def test_offset_and_confidence_follow_syncnet_pythons_rule():
    gen = torch.Generator().manual_seed(0)
    lips = torch.randn(40, 16, generator=gen)
    sound = torch.roll(lips, shifts=3, dims=0) + 0.05 * torch.randn(40, 16, generator=gen)  # sound = lips 3 windows later
    score = offsets_and_confidence(lips, sound, max_shift=5)
    offset, confidence, distance = restated(lips.numpy(), sound.numpy(), 5)
    assert score.offset == offset == -3
    assert score.confidence == pytest.approx(confidence, rel=1e-5) and score.confidence > 3
    assert score.min_distance == pytest.approx(distance, rel=1e-5)
    unrelated = offsets_and_confidence(lips, torch.randn(40, 16, generator=gen), max_shift=5)
    assert unrelated.confidence < score.confidence / 4


def test_face_crop_is_the_padded_box_of_syncnet_python():
    frame = np.zeros((100, 120, 3), np.uint8)
    frame[..., 0] = np.arange(120)[None]  # red = x, so the crop's columns tell where they came from
    frame[..., 2] = np.arange(100)[:, None]  # blue = y
    boxes = np.tile([[40.0, 30.0, 80.0, 70.0]], (13, 1))  # 40 px box centred at (60, 50): half side 20
    crops = face_crops(np.stack([frame] * 13), boxes)
    assert crops.shape == (3, 13, 224, 224)
    # rows y - 20 .. y + 20 x 1.8 = 30 .. 85; columns x - 28 .. x + 28 = 32 .. 87 (56 x 56, stretched to 224: the
    # outermost output pixels sample the outermost input ones); channels BGR
    red, blue = crops[2, 0], crops[0, 0]
    assert (red[112, 0], red[112, -1], blue[0, 112], blue[-1, 112]) == (32, 87, 30, 85)
    assert red[112, 112] == pytest.approx(60, abs=0.5) and blue[112, 112] == pytest.approx(58, abs=0.5)  # 30 + 28
    beyond = face_crops(np.stack([frame] * 13), np.tile([[0.0, 0.0, 40.0, 40.0]], (13, 1)))
    assert beyond[1, 0, 0, 0] == 110  # outside the picture: syncnet_python's grey padding


def test_mfcc_is_100_per_second_with_13_coefficients():
    pytest.importorskip("python_speech_features")
    coefficients = mfcc(np.sin(np.linspace(0, 2000, 16000)).astype(np.float32))
    assert coefficients.shape == (1, 1, 13, 99)  # (1 s - 25 ms) / 10 ms + 1 frames


def test_weights_load_strictly_and_without_pickled_code(tmp_path):
    model = SyncNet()
    torch.save(model.state_dict(), tmp_path / "syncnet_v2.model")
    loaded = load_syncnet(str(tmp_path / "syncnet_v2.model"))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    with torch.no_grad():
        assert loaded.embed_lips(torch.zeros(2, 3, 5, 224, 224)).shape == (2, 1024)
        assert loaded.embed_audio(torch.zeros(2, 1, 13, 20)).shape == (2, 1024)
    state = model.state_dict()
    state.pop("netfclip.3.bias")
    torch.save(state, tmp_path / "partial.model")
    with pytest.raises(CheckpointError, match="not SyncNet's syncnet_v2.model \\(1 keys missing"):
        load_syncnet(str(tmp_path / "partial.model"))
    torch.save({"model": model}, tmp_path / "pickled.model")  # a whole pickled module: refused, never executed
    with pytest.raises(CheckpointError, match="could not be read as SyncNet weights"):
        load_syncnet(str(tmp_path / "pickled.model"))
    with pytest.raises(FileNotFoundError, match="Download syncnet_v2.model"):
        load_syncnet(str(tmp_path / "missing.model"))
