import pytest
import torch

from fantasy_core.guidance import audio_guidance_active, official_sigmas, step_of_sigma


def test_audio_guidance_is_active_inside_the_range_only():
    assert [audio_guidance_active(step, 30, 0.0, 0.1) for step in range(30)] == [True] * 3 + [False] * 27
    assert all(audio_guidance_active(s, 30) for s in range(30))  # default: every step, as officially
    middle = [audio_guidance_active(s, 10, 0.2, 0.5) for s in range(10)]
    assert middle == [False, False, True, True, True, False, False, False, False, False]


@pytest.mark.parametrize("start, end", [(0.5, 0.2), (-0.1, 0.5), (0.0, 1.5)])
def test_range_is_validated(start, end):
    with pytest.raises(ValueError, match="audio_cfg_start/end"):
        audio_guidance_active(0, 30, start, end)


def test_step_of_sigma_finds_the_interval_of_intermediate_evaluations():
    sigmas = official_sigmas(4)
    assert [step_of_sigma(sigmas, float(s)) for s in sigmas[:-1]] == [0, 1, 2, 3]
    midway = float((sigmas[1] + sigmas[2]) / 2)  # a second-order sampler's evaluation inside step 1
    assert step_of_sigma(sigmas, midway) == 1
    assert step_of_sigma(sigmas, 0.0) == 3


def test_official_sigmas_follow_the_flow_matching_formula():
    sigmas = official_sigmas(30, shift=5.0)
    assert sigmas.shape == (31,) and sigmas[0] == 1.0 and sigmas[-1] == 0.0
    s = 1 - 7 / 30
    assert sigmas[7].item() == pytest.approx(5 * s / (1 + 4 * s))
    assert torch.all(sigmas[:-1] > sigmas[1:])
    torch.testing.assert_close(official_sigmas(15, 5.0, denoise=0.5), official_sigmas(30, 5.0)[-16:])
