import pytest
import torch
from naive_reference import naive_official_windows

from fantasy_core.audio.windows import compute_audio_windows, gather_windows, official_window_ranges


def wav2vec_tokens(num_frames: int, fps: float) -> int:
    """Tokens wav2vec2-base makes from the official trimmed segment (num_frames / fps seconds at 16 kHz)."""
    samples = int(num_frames / fps * 16000)
    return (samples - 400) // 320 + 1


def test_official_example_23fps_81_frames():
    assert wav2vec_tokens(81, 23) == 175
    windows = compute_audio_windows(175, 81)
    assert windows.latent_frames == 21
    assert windows.window_length == 17
    assert windows.k_lens.tolist() == [6, 14] + [17] * 18 + [14]
    ranges = official_window_ranges(175, 81)
    assert ranges[:4] == [(-7, 1), (1, 9), (10, 18), (18, 26)]
    assert ranges[-2:] == [(157, 165), (165, 173)]


@pytest.mark.parametrize("fps, window_length", [(23, 17), (25, 15), (16, 21)])
def test_window_length_by_fps(fps, window_length):
    windows = compute_audio_windows(wav2vec_tokens(81, fps), 81)
    assert windows.window_length == window_length


@pytest.mark.parametrize("fps", [8, 12, 15, 16, 23, 24, 25, 29.97, 30, 60])
@pytest.mark.parametrize("num_frames", [5, 9, 33, 81, 121])
def test_gather_matches_naive_official_split(fps, num_frames):
    length = wav2vec_tokens(num_frames, fps)
    tokens = torch.randn(length, 3)
    expected, expected_lens = naive_official_windows(tokens, num_frames)
    windows = compute_audio_windows(length, num_frames)
    assert windows.k_lens.tolist() == expected_lens
    torch.testing.assert_close(gather_windows(tokens[None], windows)[0], expected, rtol=0, atol=0)


@pytest.mark.parametrize("length", [1, 2, 7, 40, 150])
def test_short_audio_compresses_mapping_like_official(length):
    """A track shorter than num_frames / fps gives fewer tokens for the same frame count (official behaviour)."""
    tokens = torch.randn(length, 2)
    expected, expected_lens = naive_official_windows(tokens, 81)
    windows = compute_audio_windows(length, 81)
    assert windows.k_lens.tolist() == expected_lens
    assert torch.equal(gather_windows(tokens[None], windows)[0], expected)


def test_padding_is_exact_zero_at_the_end_of_each_window():
    tokens = torch.full((1, 175, 4), float("nan"))
    tokens[0, :, :] = torch.arange(1, 176, dtype=torch.float32)[:, None]
    windows = compute_audio_windows(175, 81)
    gathered = gather_windows(tokens, windows)[0]
    first = gathered[0, :, 0].tolist()
    assert first == [1, 2, 3, 4, 5, 6] + [0] * 11  # window 0 starts at -11: real tokens first, zeros after
    last = gathered[-1, :, 0].tolist()
    assert last[:14] == list(range(162, 176)) and last[14:] == [0, 0, 0]


def test_slice_keeps_whole_track_indices():
    windows = compute_audio_windows(500, 233)
    part = windows.slice(10, 21)
    tokens = torch.randn(1, 500, 5)
    torch.testing.assert_close(gather_windows(tokens, part), gather_windows(tokens, windows)[:, 10:21])


def test_gather_rejects_tokens_of_another_track():
    with pytest.raises(ValueError, match="made for 175 tokens, got 174"):
        gather_windows(torch.zeros(1, 174, 2), compute_audio_windows(175, 81))


@pytest.mark.parametrize("frames", [4, 80, 3])
def test_frame_count_must_be_4k_plus_1(frames):
    with pytest.raises(ValueError, match="4k\\+1"):
        compute_audio_windows(175, frames)


def test_frame_context_projects_only_the_call_windows_and_equals_the_official_order():
    """Official order: project the whole track, then cut windows. The LayerNorm is per token, so projecting only the
    windows' tokens gives the same context, at a cost that does not grow with the track."""
    from fantasy_core import AudioAdapter, AudioAdapterConfig

    torch.manual_seed(0)
    adapter = AudioAdapter(AudioAdapterConfig(audio_dim=8, context_dim=12, model_dim=16, num_blocks=1))
    for p in adapter.parameters():
        torch.nn.init.normal_(p, std=0.5)
    features = torch.randn(2000, 8)
    windows = compute_audio_windows(2000, 4 * 230 + 1).select([0, 1, 100, 101, 230])
    projected_rows = []
    hook = adapter.proj_model.proj.register_forward_hook(lambda _m, args, _out: projected_rows.append(args[0].shape[:-1].numel()))
    try:
        context = adapter.frame_context(features, windows)
    finally:
        hook.remove()
    official = gather_windows(adapter.proj_model(features), windows)
    torch.testing.assert_close(context.tokens[0], official, rtol=1e-6, atol=1e-6)
    assert projected_rows == [5 * windows.window_length]  # not 2000
    assert torch.equal(context.k_lens[0], windows.k_lens)
    padding = ~windows.token_index()[1]
    assert padding.any() and torch.equal(context.tokens[0][padding], torch.zeros_like(context.tokens[0][padding]))
