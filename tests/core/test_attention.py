import pytest
import torch
from naive_reference import naive_attention, naive_frame_attention

from fantasy_core.dit.attention import frame_attention, masked_attention


def random_case(batch=2, frames=3, per_frame=5, window=7, heads=2, head_dim=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    width = heads * head_dim
    q = torch.randn(batch, frames * per_frame, width, generator=gen)
    keys = torch.randn(batch, frames, window, width, generator=gen)
    values = torch.randn(batch, frames, window, width, generator=gen)
    k_lens = torch.randint(1, window + 1, (batch, frames), generator=gen)
    return q, keys, values, k_lens, heads


def test_frame_attention_equals_per_frame_attention_on_valid_tokens():
    q, keys, values, k_lens, heads = random_case()
    k_lens[0, 0], k_lens[1, 2] = 1, 7
    out = frame_attention(q, keys, values, k_lens, heads)
    torch.testing.assert_close(out, naive_frame_attention(q, keys, values, k_lens, heads), rtol=1e-5, atol=1e-5)


def test_padding_tokens_do_not_change_output():
    q, keys, values, k_lens, heads = random_case(seed=1)
    k_lens[:] = 4
    garbage_k, garbage_v = keys.clone(), values.clone()
    garbage_k[:, :, 4:] = 1e3 * torch.randn_like(garbage_k[:, :, 4:])
    garbage_v[:, :, 4:] = -1e3
    reference = frame_attention(q, keys, values, k_lens, heads)
    torch.testing.assert_close(frame_attention(q, garbage_k, garbage_v, k_lens, heads), reference, rtol=0, atol=1e-6)


def test_unmasked_zero_padding_would_dilute_attention():
    """The bug the mask prevents: zero keys get logit 0 and take softmax weight."""
    q, keys, values, k_lens, heads = random_case(seed=2)
    keys[:, :, 4:] = 0
    values[:, :, 4:] = 0
    k_lens[:] = 4
    masked = frame_attention(q, keys, values, k_lens, heads)
    unmasked = frame_attention(q, keys, values, torch.full_like(k_lens, keys.shape[2]), heads)
    assert (masked - unmasked).abs().max() > 1e-2


def test_frames_see_only_their_own_window():
    q, keys, values, k_lens, heads = random_case(seed=3)
    changed = values.clone()
    changed[:, 1] += 5.0
    a = frame_attention(q, keys, values, k_lens, heads)
    b = frame_attention(q, keys, changed, k_lens, heads)
    per_frame = q.shape[1] // keys.shape[1]
    frame_rows = slice(per_frame, 2 * per_frame)
    assert torch.equal(a[:, :per_frame], b[:, :per_frame]) and torch.equal(a[:, 2 * per_frame :], b[:, 2 * per_frame :])
    assert not torch.allclose(a[:, frame_rows], b[:, frame_rows])


def test_window_without_real_tokens_gives_zeros_not_nan():
    q, keys, values, k_lens, heads = random_case(seed=4)
    k_lens[1] = 0  # second batch entry carries no audio
    out = frame_attention(q, keys, values, k_lens, heads)
    assert torch.isfinite(out).all()
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    torch.testing.assert_close(out, naive_frame_attention(q, keys, values, k_lens, heads), rtol=1e-5, atol=1e-5)


def test_batch_entries_use_their_own_audio():
    q, keys, values, k_lens, heads = random_case(seed=5)
    together = frame_attention(q, keys, values, k_lens, heads)
    for b in range(2):
        alone = frame_attention(q[b : b + 1], keys[b : b + 1], values[b : b + 1], k_lens[b : b + 1], heads)
        torch.testing.assert_close(together[b : b + 1], alone)


def test_single_audio_broadcasts_over_batch():
    q, keys, values, k_lens, heads = random_case(seed=6)
    out = frame_attention(q, keys[:1], values[:1], k_lens[:1], heads)
    expected = naive_frame_attention(q, keys[:1].expand_as(keys), values[:1].expand_as(values), k_lens[:1].expand_as(k_lens), heads)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_masked_attention_attends_to_the_valid_keys_of_each_group():
    gen = torch.Generator().manual_seed(7)
    q, k, v = torch.randn(2, 6, 8, generator=gen), torch.randn(2, 9, 8, generator=gen), torch.randn(2, 9, 8, generator=gen)
    k_lens = torch.tensor([9, 5])
    out = masked_attention(q, k, v, k_lens, 2)
    for b in range(2):
        n = int(k_lens[b])
        torch.testing.assert_close(out[b], naive_attention(q[b], k[b, :n], v[b, :n], 2), rtol=1e-5, atol=1e-5)


def test_frame_count_mismatch_is_reported():
    q, keys, values, k_lens, heads = random_case(frames=3, per_frame=5)
    with pytest.raises(ValueError, match="different frame count"):
        frame_attention(q[:, :14], keys, values, k_lens, heads)
