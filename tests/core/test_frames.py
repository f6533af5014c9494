import pytest

from fantasy_core.frames import check_video_length, latent_frames, official_num_frames, samples_for_frames, video_frames


@pytest.mark.parametrize("frames, latent", [(5, 2), (9, 3), (81, 21), (465, 117)])
def test_latent_and_video_frames_are_inverse(frames, latent):
    assert latent_frames(frames) == latent and video_frames(latent) == frames


@pytest.mark.parametrize("frames", [4, 80, 82, 1])
def test_lengths_other_than_4k_plus_1_are_rejected_with_the_name(frames):
    with pytest.raises(ValueError, match="segment_frames must be of the form 4k\\+1"):
        check_video_length("segment_frames", frames)


def test_official_rule_and_trim():
    assert official_num_frames(10.0, 23, None) == 233 and official_num_frames(10.0, 23) == 81
    assert samples_for_frames(81, 23, 16000) == 56347
