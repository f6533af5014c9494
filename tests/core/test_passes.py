import math

import pytest

from fantasy_core import PassSettings


def test_a_pass_without_settings_is_silent_and_with_audio_changes_only_the_audio():
    assert PassSettings().audio_scale == 0.0
    heard = PassSettings().with_audio(1.5)
    assert heard.audio_scale == 1.5 and heard.with_audio(0) == PassSettings()


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_scales_are_rejected(bad):
    with pytest.raises(ValueError, match="audio_scale must be a finite number"):
        PassSettings(audio_scale=bad)
