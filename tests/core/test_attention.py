import pytest
import torch
from naive_reference import naive_attention, naive_frame_attention

from fantasy_core.audio.windows import compute_audio_windows
from fantasy_core.dit.attention import add_attention_, add_frame_attention_, frame_groups


def random_case(frames=4, per_frame=5, window=7, heads=2, head_dim=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    width = heads * head_dim
    q = torch.randn(frames * per_frame, width, generator=gen)
    keys = torch.randn(frames, window, width, generator=gen)
    values = torch.randn(frames, window, width, generator=gen)
    return q, keys, values, heads


def frame_term(q, keys, values, k_lens, heads, scale=1.0):
    out = torch.zeros_like(q)
    add_frame_attention_(out, q, keys, values, frame_groups(k_lens), heads, torch.tensor(scale))
    return out


def test_groups_are_runs_of_equal_window_length_and_empty_windows_are_left_out():
    assert frame_groups([6, 14, 17, 17, 17, 14]) == ((0, 1, 6), (1, 2, 14), (2, 5, 17), (5, 6, 14))
    assert frame_groups([0, 3, 3, 0, 0, 3]) == ((1, 3, 3), (5, 6, 3))
    assert frame_groups([]) == ()


def test_official_81_frame_windows_make_four_groups():
    windows = compute_audio_windows(175, 81)  # 81 frames at 23 fps
    assert frame_groups(windows.k_lens.tolist()) == ((0, 1, 6), (1, 2, 14), (2, 20, 17), (20, 21, 14))


def test_frame_attention_equals_per_frame_attention_on_valid_tokens():
    q, keys, values, heads = random_case()
    k_lens = [1, 7, 7, 3]
    expected = naive_frame_attention(q[None], keys[None], values[None], torch.tensor([k_lens]), heads)[0]
    torch.testing.assert_close(frame_term(q, keys, values, k_lens, heads), expected, rtol=1e-5, atol=1e-5)


def test_padding_tokens_are_never_read():
    q, keys, values, heads = random_case(seed=1)
    k_lens = [4, 4, 2, 4]
    garbage_k, garbage_v = keys.clone(), values.clone()
    garbage_k[:, 4:], garbage_v[:, 4:] = float("nan"), float("inf")
    garbage_k[2, 2:], garbage_v[2, 2:] = float("nan"), float("inf")
    reference = frame_term(q, keys, values, k_lens, heads)
    assert torch.equal(frame_term(q, garbage_k, garbage_v, k_lens, heads), reference)


def test_unmasked_zero_padding_would_dilute_attention():
    """What masking (here: not reading the padding) prevents: zero keys get logit 0 and take softmax weight."""
    q, keys, values, heads = random_case(seed=2)
    keys[:, 4:], values[:, 4:] = 0, 0
    assert (frame_term(q, keys, values, [4] * 4, heads) - frame_term(q, keys, values, [7] * 4, heads)).abs().max() > 1e-2


def test_frames_see_only_their_own_window():
    q, keys, values, heads = random_case(seed=3)
    changed = values.clone()
    changed[1] += 5.0
    a, b = frame_term(q, keys, values, [7] * 4, heads), frame_term(q, keys, changed, [7] * 4, heads)
    assert torch.equal(a[:5], b[:5]) and torch.equal(a[10:], b[10:])
    assert not torch.allclose(a[5:10], b[5:10])


def test_window_without_real_tokens_adds_nothing():
    q, keys, values, heads = random_case(seed=4)
    before = torch.randn_like(q)
    out = before.clone()
    add_frame_attention_(out, q, keys, values, frame_groups([0, 7, 0, 7]), heads, torch.tensor(1.0))
    assert torch.equal(out[:5], before[:5]) and torch.equal(out[10:15], before[10:15])
    assert torch.isfinite(out).all()


def test_the_term_is_added_in_place_with_its_scale():
    q, keys, values, heads = random_case(seed=5)
    base = torch.randn_like(q)
    out = base.clone()
    add_frame_attention_(out, q, keys, values, frame_groups([7, 6, 7, 5]), heads, torch.tensor(-2.5))
    torch.testing.assert_close(out, base - 2.5 * frame_term(q, keys, values, [7, 6, 7, 5], heads), rtol=1e-5, atol=1e-5)


def test_plain_attention_every_query_sees_every_key():
    gen = torch.Generator().manual_seed(7)
    q, k, v = torch.randn(1, 6, 8, generator=gen), torch.randn(1, 9, 8, generator=gen), torch.randn(1, 9, 8, generator=gen)
    out = torch.ones_like(q)
    add_attention_(out, q, k, v, 2, torch.tensor(0.5))
    torch.testing.assert_close(out[0], 1 + 0.5 * naive_attention(q[0], k[0], v[0], 2), rtol=1e-5, atol=1e-5)


def test_gradients_flow_through_the_in_place_add():
    q, keys, values, heads = random_case(seed=8)
    keys, values = keys.requires_grad_(), values.requires_grad_()
    hidden = torch.randn_like(q, requires_grad=True)
    out = hidden * 1.0  # a temporary, as Wan's x_text + x_image
    add_frame_attention_(out, q, keys, values, frame_groups([7, 3, 7, 7]), heads, torch.tensor(1.5))
    weights = torch.randn_like(q)
    (out * weights).sum().backward()
    grads = keys.grad.clone(), values.grad.clone(), hidden.grad.clone()
    keys.grad = values.grad = hidden.grad = None
    k_lens = torch.tensor([[7, 3, 7, 7]])
    reference = hidden + 1.5 * naive_frame_attention(q[None], keys[None], values[None], k_lens, heads)[0].to(q)
    (reference * weights).sum().backward()
    torch.testing.assert_close(grads[2], hidden.grad)
    torch.testing.assert_close(grads[0], keys.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1], values.grad, rtol=1e-4, atol=1e-5)


def test_frame_count_mismatch_is_reported():
    q, keys, values, heads = random_case(frames=4, per_frame=5)
    with pytest.raises(ValueError, match="different frame count"):
        frame_term(q[:14], keys, values, [7] * 4, heads)
