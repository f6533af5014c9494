import pytest
import torch

from fantasy_core import combine_guidance, needs_uncond_pass, scheduled_audio_cfg


def test_three_pass_formula_by_hand():
    cond, noaudio, uncond = torch.tensor([3.0]), torch.tensor([2.0]), torch.tensor([0.5])
    # 0.5 + 5 * (2 - 0.5) + 4.5 * (3 - 2) = 12.5
    assert combine_guidance(cond, noaudio, uncond, cfg=5.0, audio_cfg=4.5).item() == 12.5


def test_differs_from_the_multiplicative_wrapper_formula():
    cond, noaudio, uncond = torch.tensor([3.0]), torch.tensor([2.0]), torch.tensor([0.5])
    official = combine_guidance(cond, noaudio, uncond, cfg=5.0, audio_cfg=4.5)
    # Wrapper: e(0,0) + cfg * [(e(t,a) - e(0,a)) + acfg * (e(0,a) - e(0,0))], audio ON in its uncond.
    assert official.item() != 0.5 + 5.0 * ((3.0 - 2.0) + 4.5 * (2.0 - 0.5))


def test_two_pass_form_at_cfg_one_equals_three_pass_formula():
    gen = torch.Generator().manual_seed(0)
    cond, noaudio, uncond = (torch.randn(2, 4, 3, generator=gen) for _ in range(3))
    assert not needs_uncond_pass(1.0) and needs_uncond_pass(5.0)
    two = combine_guidance(cond, noaudio, None, cfg=1.0, audio_cfg=2.0)
    torch.testing.assert_close(two, combine_guidance(cond, noaudio, uncond, cfg=1.0, audio_cfg=2.0))
    torch.testing.assert_close(two, noaudio + 2.0 * (cond - noaudio))


def test_missing_uncond_pass_with_cfg_above_one_is_an_error():
    with pytest.raises(ValueError, match="needs the negative"):
        combine_guidance(torch.zeros(1), torch.zeros(1), None, cfg=5.0, audio_cfg=4.5)


def test_schedule_applies_audio_cfg_inside_the_range_only():
    values = [scheduled_audio_cfg(step, 30, 4.5, start=0.0, end=0.1) for step in range(30)]
    assert values[:3] == [4.5] * 3 and values[3:] == [1.0] * 27
    assert [scheduled_audio_cfg(s, 30, 4.5) for s in range(30)] == [4.5] * 30
    middle = [scheduled_audio_cfg(s, 10, 3.0, start=0.2, end=0.5) for s in range(10)]
    assert middle == [1.0, 1.0, 3.0, 3.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("start, end", [(0.5, 0.2), (-0.1, 0.5), (0.0, 1.5)])
def test_schedule_range_is_validated(start, end):
    with pytest.raises(ValueError, match="audio_cfg_start/end"):
        scheduled_audio_cfg(0, 30, 4.5, start, end)


def test_official_sigmas_follow_the_flow_matching_formula():
    from fantasy_core.guidance import official_sigmas

    sigmas = official_sigmas(30, shift=5.0)
    assert sigmas.shape == (31,) and sigmas[0] == 1.0 and sigmas[-1] == 0.0
    s = 1 - 7 / 30
    assert sigmas[7].item() == pytest.approx(5 * s / (1 + 4 * s))
    assert torch.all(sigmas[:-1] > sigmas[1:])
    torch.testing.assert_close(official_sigmas(15, 5.0, denoise=0.5), official_sigmas(30, 5.0)[-16:])
