import numpy as np
import pytest
import torch
from hf_wav2vec import Wav2VecEncoder
from tiny_models import voice_like

from fantasy_core import AudioInputError, official_num_frames, prepare_audio
from fantasy_core.audio.track import normalize, to_mono
from fantasy_core.frames import latent_frames


@pytest.mark.parametrize(
    "duration, fps, max_frames, expected",
    [
        (3.52, 23, 81, 81),  # int(80.96 // 4) * 4 + 5 = 85, capped
        (1.0, 23, 81, 25),  # int(23 // 4) * 4 + 5
        (2.0, 23, 81, 49),
        (2.0, 25, 81, 53),
        (0.17, 23, 81, 5),
        (60.0, 23, None, 1385),  # no cap: the long-video case
        (10.0, 23, 121, 121),
    ],
)
def test_official_frame_count_rule(duration, fps, max_frames, expected):
    assert official_num_frames(duration, fps, max_frames) == expected
    assert (expected - 1) % 4 == 0


@pytest.mark.parametrize("max_frames", [80, 3, 0])
def test_max_frames_must_be_4k_plus_1(max_frames):
    with pytest.raises(ValueError, match="max_frames must be of the form 4k\\+1"):
        official_num_frames(2.0, 23, max_frames)


def test_trimmed_to_num_frames_over_fps_seconds():
    prepared = prepare_audio(voice_like(5.0, 16000)[None], 16000, fps=23, max_frames=81)
    assert prepared.num_frames == 81
    assert prepared.waveform.shape == (int(81 / 23 * 16000),) == (56347,)
    assert latent_frames(prepared.num_frames) == 21


def test_shorter_audio_is_not_padded_as_officially():
    """1 s at 23 fps -> 25 frames, which would need 1.087 s: the official code keeps the 1 s as it is."""
    wave = voice_like(1.0, 16000)
    prepared = prepare_audio(wave[None], 16000, fps=23)
    assert prepared.num_frames == 25
    assert torch.equal(prepared.waveform, wave)


def test_comfyui_audio_batch_layout_and_downmix():
    left, right = voice_like(1.0, 16000, seed=1), voice_like(1.0, 16000, seed=2)
    mono = to_mono(torch.stack([left, right])[None])  # ComfyUI AUDIO waveform [1, C, T]
    torch.testing.assert_close(mono, (left + right) / 2)
    with pytest.raises(AudioInputError, match="batch of 2"):
        to_mono(torch.zeros(2, 1, 100))


def test_normalisation_matches_the_960h_feature_extractor():
    from transformers import Wav2Vec2FeatureExtractor

    wave = voice_like(2.0, 16000) * 0.3 + 0.05
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True)
    expected = extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_values[0]
    torch.testing.assert_close(normalize(wave), expected, rtol=1e-5, atol=1e-5)
    assert abs(float(normalize(wave).mean())) < 1e-6 and abs(float(normalize(wave).std()) - 1) < 1e-4


def test_too_short_audio_is_a_clear_error():
    with pytest.raises(AudioInputError, match="shorter than one latent frame.*Use a longer voice track"):
        prepare_audio(torch.zeros(1, 1000), 16000, fps=23)


def test_stereo_44k_and_mono_16k_of_the_same_signal_give_the_same_features(tiny_wav2vec_dir):
    """The same band-limited signal, sampled at 16 kHz mono and at 44.1 kHz in two channels whose mean is it."""
    mono16k = voice_like(3.0, 16000)
    signal44k = voice_like(3.0, 44100)
    stereo44k = torch.stack([1.25 * signal44k, 0.75 * signal44k])
    a = prepare_audio(mono16k[None], 16000)
    b = prepare_audio(stereo44k, 44100)
    assert a.num_frames == b.num_frames
    assert a.waveform.shape == b.waveform.shape
    inner = slice(200, -200)  # away from the resampler's edge transients
    assert float((a.waveform - b.waveform)[inner].abs().max()) < 2e-3

    encoder = Wav2VecEncoder.from_folder(tiny_wav2vec_dir)
    fa, fb = encoder.encode(a.waveform), encoder.encode(b.waveform)
    assert fa.shape == fb.shape
    relative = float((fa - fb).norm() / fa.norm())
    assert relative < 1e-2, relative
    unrelated = encoder.encode(prepare_audio(voice_like(3.0, 16000, seed=9)[None], 16000).waveform)
    assert float((fa - unrelated).norm() / fa.norm()) > 10 * relative


def test_resampling_is_band_limited_not_naive():
    """A 1 kHz tone at 48 kHz resampled to 16 kHz stays a clean 1 kHz tone (no aliasing, right amplitude)."""
    t = np.arange(48000) / 48000
    prepared = prepare_audio(torch.from_numpy(np.sin(2 * np.pi * 1000 * t)).float()[None], 48000)
    expected = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    got = prepared.waveform.numpy()[: len(expected)]
    assert np.abs(got - expected)[100:-100].max() < 1e-3


def test_missing_resampler_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "soxr", None)  # makes `import soxr` raise ImportError
    with pytest.raises(AudioInputError, match="needs the 'soxr' package.*pip install -r requirements.txt"):
        prepare_audio(voice_like(1.0, 44100)[None], 44100)
    assert prepare_audio(voice_like(1.0, 16000)[None], 16000).num_frames == 25  # 16 kHz audio needs no resampler


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_samples_are_reported_not_turned_into_a_nan_video(bad):
    track = voice_like(2.0, 22050).repeat(2, 1)
    track[1, 1000] = bad
    track[0, 5000] = bad
    with pytest.raises(AudioInputError, match="2 non-finite samples.*first at sample 1000.*Re-export the track"):
        prepare_audio(track, 22050, fps=23)
