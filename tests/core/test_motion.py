"""Motion intensity: ω, its calibration, the modulation network on Wan's time embedding, and its file."""

import json

import pytest
import torch
from naive_reference import naive_motion_embedding
from test_injection import DIM, setup, tapped
from test_module_file import rewrite
from tiny_models import (
    TINY_ADAPTER,
    TINY_IDENTITY,
    TINY_MOTION,
    random_adapter_state,
    random_identity_state,
    random_motion_state,
)

from fantasy_core.module_file import load_fantasytalking_file, save_fantasytalking_file
from fantasy_core.motion.intensity import (
    PRESETS,
    CalibrationError,
    MotionCalibration,
    MotionIntensity,
)
from fantasy_core.motion.model import (
    MotionConfig,
    MotionNetwork,
    initialise_motion_network,
)
from fantasy_core.motion.weights import (
    MotionCheckpointError,
    MotionWeights,
    build_motion_network,
)

SMALL = MotionConfig(hidden_dim=8, model_dim=DIM)


def network(seed=1, zero_out=False, config=SMALL):
    state = random_motion_state(config, seed=seed, zero_out=zero_out)
    return build_motion_network(MotionWeights(state, config, MotionCalibration(), "test")), state


def addition(net, *levels):
    """The time-embedding addition of a call whose rows get these intensities (as the nodes build it)."""
    return torch.stack([net.embed(level) for level in levels])


def test_intensity_accepts_0_to_1_and_names_the_input_otherwise():
    assert MotionIntensity(0, 1) == MotionIntensity(0.0, 1.0)
    assert MotionIntensity() == MotionIntensity(0.5, 0.5)
    assert PRESETS == {"subtle": (0.1, 0.1), "natural": (0.5, 0.5), "intense": (1.0, 1.0)}  # paper Table 2
    for lip, body, name in ((1.5, 0.5, "omega_lip"), (0.5, -0.1, "omega_body"), (float("nan"), 0.5, "omega_lip"), (True, 0.5, "omega_lip")):
        with pytest.raises(ValueError, match=f"{name} must be a number from 0 to 1"):
            MotionIntensity(lip, body)


def test_calibration_reads_raw_values_as_dataset_percentiles():
    calibration = MotionCalibration(lip=((0, 1.0), (50, 3.0), (100, 5.0)), body=((0, 0.0), (100, 10.0)))
    # an independent reading of the table: halfway between the 0% and 50% points is the 25th percentile
    assert calibration.omega_lip(2.0) == pytest.approx(0.25)
    assert calibration.omega_lip(4.0) == pytest.approx(0.75)
    assert calibration.omega_lip(0.2) == 0.0 and calibration.omega_lip(9.0) == 1.0  # clamped at the ends
    assert calibration.omega_body(2.5) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="finite number >= 0"):
        calibration.omega_lip(float("nan"))


def test_tied_calibration_values_read_as_their_lowest_percentile():
    """A dataset in which a fifth of the clips are perfectly still: a still clip reads 0, a barely moving one 0.2+."""
    calibration = MotionCalibration(lip=((0, 0.0), (10, 0.0), (20, 0.0), (100, 1.0)), body=((0, 0.0), (100, 1.0)))
    assert calibration.omega_lip(0.0) == 0.0
    assert calibration.omega_lip(1e-9) == pytest.approx(0.2, abs=1e-6)
    assert calibration.omega_lip(0.5) == pytest.approx(0.6)


def test_calibration_from_a_dataset_puts_its_median_clip_at_neutral():
    lip = torch.rand(201, generator=torch.Generator().manual_seed(0)).numpy() * 1e-3
    body = lip * 7
    calibration = MotionCalibration.from_dataset(lip, body, window_seconds=2.0, body_landmarks="dwpose")
    import numpy as np

    assert calibration.omega_lip(float(np.median(lip))) == pytest.approx(0.5, abs=1e-9)
    assert calibration.omega_body(float(np.percentile(body, 90))) == pytest.approx(0.9, abs=1e-9)
    assert MotionCalibration.from_json(json.loads(json.dumps(calibration.to_json())), "x") == calibration


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(lip=((0, 1.0),)), "at least two"),
        (dict(lip=((0, 1.0), (90, 2.0))), "rise strictly from 0 to 100"),
        (dict(body=((0, 2.0), (100, 1.0))), "never fall"),
        (dict(window_seconds=0), "positive number of seconds"),
        (dict(body_landmarks="openpose"), "body_landmarks"),
    ],
)
def test_bad_calibration_tables_are_rejected(change, message):
    with pytest.raises(CalibrationError, match=message):
        MotionCalibration(**change)


@torch.no_grad()
def test_network_equals_its_naive_restatement():
    net, state = network()
    omegas = torch.tensor([[0.1, 0.9], [0.5, 0.5], [1.0, 0.0]])
    got = net(omegas)
    assert got.shape == (3, DIM)
    for row, (lip, body) in enumerate(omegas.tolist()):
        torch.testing.assert_close(got[row], naive_motion_embedding(state, lip, body), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_untrained_network_is_exactly_neutral_and_a_trained_one_is_not():
    wan, _, _, _, _ = setup()
    t = torch.randn(2, DIM)
    plain = wan.time_embedding(t)
    untrained = initialise_motion_network(MotionNetwork(SMALL), seed=3)
    with tapped(wan, time_addition=addition(untrained, MotionIntensity(1.0, 0.0), MotionIntensity(0.1, 0.9))):
        assert torch.equal(wan.time_embedding(t), plain)
    trained, state = network()
    with tapped(wan, time_addition=addition(trained, MotionIntensity(1.0, 0.0), MotionIntensity(0.1, 0.9))):
        moved = wan.time_embedding(t)
    torch.testing.assert_close(moved[0], plain[0] + naive_motion_embedding(state, 1.0, 0.0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(moved[1], plain[1] + naive_motion_embedding(state, 0.1, 0.9), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_embed_is_the_network_of_one_intensity():
    net, state = network()
    torch.testing.assert_close(net.embed(MotionIntensity(0.8, 0.2)), naive_motion_embedding(state, 0.8, 0.2), rtol=1e-5, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_omega_is_monotone_in_its_effect_on_the_embedding(seed):
    """For a fixed random network (trained-like: last layer non-zero), the embedding's distance from ω = (0, 0) grows
    with ω_l, with ω_b and with both together."""
    net = initialise_motion_network(MotionNetwork(TINY_MOTION), seed=seed)
    net.out.weight.normal_(std=0.3, generator=torch.Generator().manual_seed(seed))
    grid = torch.linspace(0, 1, 21)
    still = net(torch.zeros(1, 2))
    for lip, body in ((grid, torch.zeros(21)), (torch.zeros(21), grid), (grid, grid)):
        effect = (net(torch.stack([lip, body], 1)) - still).norm(dim=-1)
        assert (effect.diff() > 0).all(), effect


def test_motion_file_round_trip_alone_and_combined(tmp_path):
    state = random_motion_state(TINY_MOTION, seed=2)
    calibration = MotionCalibration(lip=((0, 1e-4), (100, 1e-2)), body=((0, 1e-3), (50, 5e-3), (100, 5e-2)), body_landmarks="dwpose")
    path = save_fantasytalking_file(str(tmp_path / "m.safetensors"), motion=(state, TINY_MOTION, calibration))
    weights = load_fantasytalking_file(path)
    assert weights.modules == ("motion",)
    assert weights.motion.config == TINY_MOTION and weights.motion.calibration == calibration
    assert all(torch.equal(weights.motion.state_dict[key], value) for key, value in state.items())
    combined = save_fantasytalking_file(
        str(tmp_path / "all.safetensors"),
        audio=random_adapter_state(TINY_ADAPTER, seed=1),
        identity=(random_identity_state(TINY_IDENTITY, seed=1), TINY_IDENTITY),
        motion=(state, TINY_MOTION, calibration),
    )
    assert load_fantasytalking_file(combined).modules == ("audio", "identity", "motion")


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda t, m: t.__setitem__("motion.out.weight", torch.zeros(300, TINY_MOTION.hidden_dim)),
            r"shape \[300, 16\].*needs \[256, 16\]",
        ),
        (lambda t, m: t.pop("motion.resnet.fc1.bias"), "missing.*motion.resnet.fc1.bias"),
        (lambda t, m: t.__setitem__("motion.extra", torch.zeros(1)), "does not have.*motion.extra"),
        (lambda t, m: t["motion.lip_mlp.fc1.weight"].fill_(float("nan")), "NaN or infinite"),
        (lambda t, m: m.pop("fantasytalking.motion.calibration"), "no 'fantasytalking.motion.calibration'"),
        (lambda t, m: m.__setitem__("fantasytalking.motion", '{"hidden_dim": 16}'), "expected exactly"),
        (
            lambda t, m: m.__setitem__(
                "fantasytalking.motion.calibration",
                json.dumps({"lip": [[0, 1]], "body": [[0, 1], [100, 2]], "window_seconds": 2, "body_landmarks": "dwpose"}),
            ),
            "at least two",
        ),
    ],
)
def test_damaged_motion_files_are_rejected_with_the_reason(tmp_path, damage, message):
    path = save_fantasytalking_file(
        str(tmp_path / "m.safetensors"), motion=(random_motion_state(TINY_MOTION), TINY_MOTION, MotionCalibration())
    )
    edits = {}
    edited = rewrite(
        path,
        tmp_path,
        change_tensors=lambda tensors: edits.setdefault("tensors", tensors),
        change_metadata=lambda metadata: damage(edits["tensors"], metadata),
    )
    with pytest.raises(MotionCheckpointError, match=message):
        load_fantasytalking_file(edited)
