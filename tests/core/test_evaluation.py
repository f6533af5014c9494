"""The evaluation arithmetic against independent expectations: the Fréchet distance against scipy's sqrtm and closed
forms, VBench's consistency formula on designed features, dynamics with a stand-in flow, the aesthetic head restated,
and the Sync-C / Sync-D protocol with a stand-in SyncNet whose embeddings follow mouth brightness and loudness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fantasy_core.evaluation.frame_scores import aesthetic_score, dynamics, identity_consistency
from fantasy_core.evaluation.frechet import FeatureStatistics, StatisticsError, frechet_distance
from fantasy_core.evaluation.sync import SyncProtocol, evaluate_sync, frame_indices, longest_run
from fantasy_core.identity.face import DetectedFace
from fantasy_core.lipsync.score import MFCC_PER_FRAME, WINDOW_FRAMES, mfcc

# --- Fréchet distance -------------------------------------------------------------------------------------------


def statistics_of(features: torch.Tensor) -> FeatureStatistics:
    stats = FeatureStatistics.empty(features.shape[1])
    for part in features.split(7):  # streamed in uneven batches
        stats.update(part)
    return stats


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid's calculation, written out with numpy and scipy."""
    linalg = pytest.importorskip("scipy.linalg")
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1.dot(s2)).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_equals_scipys_and_is_zero_for_the_same_set():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(300, 12, generator=generator, dtype=torch.float64) @ torch.randn(12, 12, generator=generator, dtype=torch.float64)
    b = 0.7 * torch.randn(250, 12, generator=generator, dtype=torch.float64) + 0.3
    assert frechet_distance(statistics_of(a), statistics_of(b)) == pytest.approx(scipy_frechet(a.numpy(), b.numpy()), rel=1e-9)
    assert frechet_distance(statistics_of(a), statistics_of(a)) == pytest.approx(0.0, abs=1e-9)
    mean, covariance = statistics_of(a).mean_and_covariance()
    torch.testing.assert_close(covariance, torch.from_numpy(np.cov(a.numpy(), rowvar=False)))
    torch.testing.assert_close(mean, a.mean(0))


def test_frechet_distance_of_diagonal_gaussians_has_its_closed_form():
    """Σ diagonal: ‖μ₁ − μ₂‖² + Σ (σ₁ − σ₂)², exactly what 1-D Gaussians give per axis."""
    generator = torch.Generator().manual_seed(1)
    unit = torch.randn(4000, 3, generator=generator, dtype=torch.float64)
    unit = (unit - unit.mean(0)) / unit.std(0)  # exactly mean 0, std 1 per axis
    unit = torch.linalg.qr(torch.cat([unit, torch.ones(4000, 1, dtype=torch.float64)], 1))[0][:, :3] * math.sqrt(3999)
    a, b = unit * torch.tensor([1.0, 2.0, 0.5]) + 1.0, unit * torch.tensor([3.0, 2.0, 1.0])
    expected = 3 * 1.0 + (1 - 3) ** 2 + 0 + (0.5 - 1) ** 2
    assert frechet_distance(statistics_of(a), statistics_of(b)) == pytest.approx(expected, rel=1e-6)


def test_statistics_merge_cache_and_refuse_what_cannot_be_compared(tmp_path):
    features = torch.randn(40, 5, dtype=torch.float64)
    whole, first, second = statistics_of(features), statistics_of(features[:15]), statistics_of(features[15:])
    merged = first.merged(second)
    torch.testing.assert_close(merged.outer, whole.outer)
    torch.testing.assert_close(merged.total, whole.total)
    assert merged.count == 40
    whole.save(str(tmp_path / "reference.pt"), "40 frames of the reference set")
    loaded, description = FeatureStatistics.load(str(tmp_path / "reference.pt"))
    assert description == "40 frames of the reference set" and frechet_distance(loaded, whole) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(StatisticsError, match="NaN or infinite"):
        FeatureStatistics.empty(5).update(torch.full((2, 5), float("nan")))
    with pytest.raises(StatisticsError, match=r"features must be \[N, 5\]; got \[2, 4\]"):
        FeatureStatistics.empty(5).update(torch.zeros(2, 4))
    with pytest.raises(StatisticsError, match="at least 2 feature vectors; these statistics hold 1"):
        frechet_distance(statistics_of(features[:1]), whole)
    with pytest.raises(StatisticsError, match="differ in width"):
        frechet_distance(statistics_of(torch.randn(9, 4)), whole)


# --- identity consistency, dynamics, aesthetics -----------------------------------------------------------------


def test_identity_consistency_is_one_for_identical_frames_and_follows_the_formula():
    assert identity_consistency(torch.tensor([[0.3, -1.2, 2.0]]).repeat(5, 1)) == pytest.approx(1.0)
    designed = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 0.0]])
    # frame 1: to previous 0, to first 0; frame 2: both cos 45° = 0.7071; frame 3: to previous -0.7071 -> 0, to first -1 -> 0
    expected = (0.0 + math.sqrt(0.5) + 0.0) / 3
    assert identity_consistency(designed) == pytest.approx(expected)
    with pytest.raises(ValueError, match="at least 2 frames"):
        identity_consistency(torch.ones(1, 4))


def stand_in_flow(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """A flow network stand-in whose magnitude follows motion: the brightness change, as horizontal flow."""
    change = (second - first).abs().mean(0)
    return torch.stack([change, torch.zeros_like(change)])


def moving_clip(person_moves: bool, background_moves: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames [T, 3, 64, 64]: a bright 'person' square on a striped background; each may shift 2 px per frame."""
    frames, masks = [], []
    for t in range(4):
        x = torch.arange(64)
        stripes = (((x + (2 * t if background_moves else 0)) // 4) % 2).float() * 0.4
        frame = stripes.expand(3, 64, 64).clone()
        left = 20 + (2 * t if person_moves else 0)
        frame[:, 16:48, left : left + 16] = 1.0
        mask = torch.zeros(64, 64, dtype=torch.bool)
        mask[16:48, left : left + 16] = True
        frames.append(frame)
        masks.append(mask)
    return torch.stack(frames), torch.stack(masks)


@pytest.mark.parametrize("person_moves", [True, False])
def test_subject_dynamics_exceed_background_dynamics_only_when_the_person_moves(person_moves):
    frames, masks = moving_clip(person_moves, not person_moves)
    flows = torch.stack([stand_in_flow(frames[i], frames[i + 1]) for i in range(len(frames) - 1)])
    measured = dynamics(flows, masks[:-1])
    assert measured.pairs == 3
    assert (measured.subject > measured.background) == person_moves
    assert min(measured.subject, measured.background) >= 0


def test_dynamics_of_a_known_flow_and_of_a_missing_region():
    flows = torch.zeros(2, 2, 8, 8)
    flows[:, 0], flows[:, 1] = 3.0, 4.0  # a 5-pixel motion everywhere
    person = torch.zeros(2, 8, 8, dtype=torch.bool)
    person[:, :4] = True
    assert dynamics(flows, person) == type(dynamics(flows, person))(5.0, 5.0, 2)
    nobody = dynamics(flows, torch.zeros(2, 8, 8))
    assert math.isnan(nobody.subject) and nobody.background == 5.0
    with pytest.raises(ValueError, match=r"flows must be \[N, 2, H, W\]"):
        dynamics(torch.zeros(2, 3, 8, 8), person)


def test_aesthetic_score_is_the_linear_head_of_the_normalised_embedding_over_ten():
    generator = torch.Generator().manual_seed(2)
    embeddings, weight, bias = torch.randn(6, 768, generator=generator), torch.randn(1, 768, generator=generator), torch.tensor([4.5])
    expected = np.mean([(float(weight[0] @ (e / e.norm())) + 4.5) / 10 for e in embeddings])
    assert aesthetic_score(embeddings, weight, bias) == pytest.approx(expected, rel=1e-6)
    assert aesthetic_score(embeddings * 7.0, weight, bias) == pytest.approx(expected, rel=1e-6)  # the length does not count
    with pytest.raises(ValueError, match=r"weight \[1, D\]"):
        aesthetic_score(embeddings, torch.randn(768), bias)


# --- Sync-C / Sync-D ---------------------------------------------------------------------------------------------

SIDE, FACE = 160, (40.0, 30.0, 120.0, 110.0)  # an 80 px face box
LOUD, QUIET = 0.5, 0.002


class StandInDetector:
    """One face at a fixed box in frames that are not blank, like a detector that sees a face."""

    def detect(self, frame):
        if frame.max() == 0:
            return []
        return [DetectedFace(FACE, 0.95, [[60, 60], [100, 60], [80, 75], [65, 95], [95, 95]])]


class StandInSyncNet(torch.nn.Module):
    """Embeds a 5-frame crop as the brightness of its lower half per frame (0..1), and 20 MFCC columns as the
    loudness of each 4-column quarter (0..1): the distance is smallest where the mouth opens as the sound is loud."""

    def __init__(self, quiet_energy: float, loud_energy: float):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a parameter, so the scorer can find the device
        self.quiet, self.loud = quiet_energy, loud_energy

    def embed_lips(self, crops):  # [B, 3, 5, 224, 224], BGR 0-255
        return crops[:, :, :, 150:, :].mean(dim=(1, 3, 4)) / 255.0

    def embed_audio(self, coefficients):  # [B, 1, 13, 20]; row 0 is the log energy
        energy = coefficients[:, 0, 0, :].reshape(-1, WINDOW_FRAMES, MFCC_PER_FRAME).mean(-1)
        return ((energy - self.quiet) / (self.loud - self.quiet)).clamp(0, 1)


def talking_clip(pattern: np.ndarray, sound_lag: int, fps: float = 25.0):
    """Frames whose mouth region is bright where ``pattern`` is 1, and a sound that is loud ``sound_lag`` frames later."""
    frames = np.zeros((len(pattern), SIDE, SIDE, 3), np.uint8)
    frames[:] = 60
    for t, open_mouth in enumerate(pattern):
        frames[t, 95:140, 30:130] = 250 if open_mouth else 20
    samples = int(16000 / 25)
    loud = np.roll(pattern, sound_lag)
    tone = np.sin(2 * np.pi * 220 * np.arange(samples) / 16000)
    sound = np.concatenate([tone * (LOUD if flag else QUIET) for flag in loud]).astype(np.float32)
    return frames, sound


def energies() -> tuple[float, float]:
    tone = np.sin(2 * np.pi * 220 * np.arange(1600) / 16000)
    return tuple(float(mfcc(tone * level)[0, 0, 0].mean()) for level in (QUIET, LOUD))


@pytest.fixture(scope="module")
def syncnet():
    pytest.importorskip("python_speech_features")
    return StandInSyncNet(*energies())


@pytest.mark.parametrize("lag", [0, 3, -4])
def test_the_offset_search_finds_a_known_lag_and_the_scores_follow_syncnet_pythons_formula(syncnet, lag):
    pattern = (np.random.default_rng(3).random(90) > 0.5).astype(int)
    frames, sound = talking_clip(pattern, lag)
    result = evaluate_sync(syncnet, frames, 25.0, sound, StandInDetector())
    assert result.status == "scored" and result.frames == 90 and result.track_frames == 90 and result.face_size == 80
    assert result.offset == -lag  # syncnet_python: negative when the sound comes after the lips
    if lag != 3:
        return
    # the same distances restated: mean over windows of |lips - sound shifted| per offset, then median - min and min
    from fantasy_core.lipsync.score import face_crops

    crops = face_crops(frames, np.tile(np.array(FACE), (90, 1)))
    coefficients = mfcc(sound)
    lips = torch.stack([syncnet.embed_lips(crops[None, :, v : v + 5])[0] for v in range(85)])
    audio = torch.stack([syncnet.embed_audio(coefficients[:, :, :, 4 * v : 4 * v + 20])[0] for v in range(85)])
    padded = torch.cat([torch.zeros(15, 5), audio, torch.zeros(15, 5)])
    mean = torch.stack([torch.stack([(lips[v] - padded[v + k]).norm() for v in range(85)]).mean() for k in range(31)])
    assert result.sync_d == pytest.approx(float(mean.min()), abs=1e-5)
    assert result.sync_c == pytest.approx(float(mean.median() - mean.min()), abs=1e-5)
    assert result.offset == 15 - int(mean.argmin())


def test_clips_that_cannot_be_scored_say_why(syncnet):
    pattern = (np.random.default_rng(4).random(90) > 0.5).astype(int)
    frames, sound = talking_clip(pattern, 0)
    assert evaluate_sync(syncnet, frames, 25.0, np.zeros_like(sound), StandInDetector()).status == "no_sound"
    assert evaluate_sync(syncnet, np.zeros_like(frames), 25.0, sound, StandInDetector()).status == "no_face"
    small = evaluate_sync(syncnet, frames, 25.0, sound, StandInDetector(), SyncProtocol(min_face_size=100))
    assert small.status == "no_face" and "at least 100 px" in small.detail
    broken = frames.copy()
    broken[40] = 0  # a frame without a face splits the track into 40 and 49 frames
    short = evaluate_sync(syncnet, broken, 25.0, sound, StandInDetector())
    assert short.status == "short_track" and short.track_frames == 49 and "at least 50 are scored" in short.detail
    assert evaluate_sync(syncnet, broken, 25.0, sound, StandInDetector(), SyncProtocol(min_track=40)).status == "scored"
    # shorter than one SyncNet window (5 frames), even with no minimum track asked for: counted, with the reason
    tiny = evaluate_sync(syncnet, frames[:4], 25.0, sound[: 4 * 640], StandInDetector(), SyncProtocol(min_track=1))
    assert tiny.status == "short_track" and tiny.track_frames == 4 and "at least 13 are scored" in tiny.detail


def test_an_81_frame_clip_at_23_fps_is_resampled_to_25_fps_and_scored(syncnet):
    indices = frame_indices(81, 23.0)
    assert len(indices) == 88 and indices[0] == 0 and indices[-1] == 80  # 3.52 s at 25 fps
    assert np.all(np.diff(indices) >= 0) and set(np.diff(indices)) == {0, 1}
    pattern = (np.random.default_rng(5).random(81) > 0.5).astype(int)
    frames, _ = talking_clip(pattern, 0)
    _, sound = talking_clip(pattern[indices], 0)
    result = evaluate_sync(syncnet, frames, 23.0, sound, StandInDetector())
    assert result.status == "scored" and result.frames == 88 and result.offset == 0


def test_longest_run():
    assert longest_run([False, True, True, False, True, True, True]) == (4, 7)
    assert longest_run([True, True, False, True, True]) == (0, 2)
    assert longest_run([False, False]) == (0, 0)
