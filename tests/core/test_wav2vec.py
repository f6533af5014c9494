import os

import pytest
import torch
from hf_wav2vec import Wav2VecEncoder, encode_voice_track
from tiny_models import save_wav2vec_folder, tiny_wav2vec_config, voice_like

from fantasy_core import AudioEncoderError
from fantasy_core.audio.wav2vec import FeatureGeometry, plan_chunks

BASE_GEOMETRY = FeatureGeometry((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))


def official_features(folder, wave):
    """The official path: feature extractor (normalise) then Wav2Vec2Model(...).last_hidden_state, one pass."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    extractor = Wav2Vec2FeatureExtractor.from_pretrained(folder)
    model = Wav2Vec2Model.from_pretrained(folder).eval()
    values = extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_values
    with torch.no_grad():
        return model(values).last_hidden_state[0]


def test_one_chunk_track_is_encoded_exactly_as_officially(tiny_wav2vec_dir):
    wave = voice_like(3.5, 16000)
    encoder = Wav2VecEncoder.from_folder(tiny_wav2vec_dir)
    assert encoder.do_normalize
    features = encoder.encode(wave)
    expected = official_features(tiny_wav2vec_dir, wave)
    assert features.shape == expected.shape == (BASE_GEOMETRY.num_tokens(wave.shape[0]), 32)
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)
    assert features.dtype == torch.float32


def test_official_token_count_for_81_frames_at_23_fps():
    assert BASE_GEOMETRY.num_tokens(56347) == 175
    assert BASE_GEOMETRY.hop == 320 and BASE_GEOMETRY.receptive_field == 400


def test_do_normalize_false_is_honoured(tmp_path):
    folder = save_wav2vec_folder(str(tmp_path / "raw"), do_normalize=False)
    wave = voice_like(1.0, 16000) * 0.2
    encoder = Wav2VecEncoder.from_folder(folder)
    assert not encoder.do_normalize
    torch.testing.assert_close(encoder.encode(wave), official_features(folder, wave), rtol=1e-4, atol=1e-4)


def test_chunked_encoding_stitches_tokens_exactly(tmp_path):
    """With a finite receptive field (no transformer layers, per-frame LayerNorm), chunking changes nothing."""
    config = tiny_wav2vec_config(num_layers=0)
    config.feat_extract_norm = "layer"
    encoder = Wav2VecEncoder.from_folder(save_wav2vec_folder(str(tmp_path / "local"), config))
    wave = voice_like(7.3, 16000)
    whole = encoder.encode(wave)
    calls = []
    chunked = encoder.encode(wave, chunk_seconds=2.0, context_seconds=0.5, progress=lambda done, total: calls.append((done, total)))
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    assert len(calls) > 3 and calls[-1] == (len(calls), len(calls))


def test_chunk_plan_covers_every_token_once():
    for samples in (160000, 160001, 480000 + 321, 16000 * 61):
        chunks = plan_chunks(samples, BASE_GEOMETRY, chunk_seconds=3.0, context_seconds=0.5)
        kept = []
        for chunk in chunks:
            assert chunk.first_sample % 320 == 0
            assert chunk.end_sample - chunk.first_sample <= 3.0 * 16000
            assert BASE_GEOMETRY.num_tokens(chunk.end_sample - chunk.first_sample) >= chunk.keep_to
            first_token = chunk.first_sample // 320
            kept.extend(range(first_token + chunk.keep_from, first_token + chunk.keep_to))
        assert kept == list(range(BASE_GEOMETRY.num_tokens(samples)))


def test_long_track_is_chunked_to_one_pass_length(tiny_wav2vec_dir):
    encoder = Wav2VecEncoder.from_folder(tiny_wav2vec_dir)
    wave = voice_like(9.0, 16000)
    chunked = encoder.encode(wave, chunk_seconds=4.0, context_seconds=1.0)
    assert chunked.shape == (BASE_GEOMETRY.num_tokens(wave.shape[0]), 32)
    assert torch.isfinite(chunked).all()


def test_voice_track_to_windows(tiny_wav2vec_dir):
    stereo = torch.stack([voice_like(4.0, 22050), voice_like(4.0, 22050, seed=5)])[None]
    result = encode_voice_track(stereo, 22050, Wav2VecEncoder.from_folder(tiny_wav2vec_dir), fps=23, max_frames=81)
    assert result.num_frames == 81
    assert result.features.shape == (175, 32)
    assert result.windows.k_lens.tolist() == [6, 14] + [17] * 18 + [14]


def test_folder_without_preprocessor_config_is_named(tmp_path, tiny_wav2vec_dir):
    folder = tmp_path / "incomplete"
    folder.mkdir()
    for name in os.listdir(tiny_wav2vec_dir):
        if name != "preprocessor_config.json":
            (folder / name).write_bytes(open(os.path.join(tiny_wav2vec_dir, name), "rb").read())
    with pytest.raises(AudioEncoderError, match="has no preprocessor_config.json.*wav2vec2-base-960h"):
        Wav2VecEncoder.from_folder(str(folder))


def test_audio_shorter_than_the_receptive_field_is_an_error(tiny_wav2vec_dir):
    with pytest.raises(AudioEncoderError, match="at least 400"):
        Wav2VecEncoder.from_folder(tiny_wav2vec_dir).encode(torch.zeros(399))
