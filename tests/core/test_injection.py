import pytest
import torch
from torch import nn
from naive_reference import naive_attention, naive_frame_attention

from fantasy_core import AudioAdapter, AudioAdapterConfig, AudioBranch, DiTInjection, ModelMismatchError
from fantasy_core.audio.windows import compute_audio_windows
from fantasy_core.dit.injection import check_blocks_fit

DIM, HEADS, FRAMES, PER_FRAME, TXT, IMG = 16, 2, 3, 4, 6, 5


class WanLikeI2VCrossAttention(nn.Module):
    """Shaped like Wan's image-to-video cross-attention: one q, text and image branches, one o."""

    def __init__(self):
        super().__init__()
        self.num_heads = HEADS
        self.q, self.k, self.v, self.o = (nn.Linear(DIM, DIM) for _ in range(4))
        self.k_img, self.v_img = nn.Linear(DIM, DIM), nn.Linear(DIM, DIM)
        self.norm_q, self.norm_k, self.norm_k_img = (nn.RMSNorm(DIM, eps=1e-6) for _ in range(3))

    def forward(self, x, context, context_img_len):
        img, txt = context[:, :context_img_len], context[:, context_img_len:]
        q = self.norm_q(self.q(x))
        out = []
        for b in range(x.shape[0]):
            text = naive_attention(q[b], self.norm_k(self.k(txt[b])), self.v(txt[b]), HEADS)
            image = naive_attention(q[b], self.norm_k_img(self.k_img(img[b])), self.v_img(img[b]), HEADS)
            out.append(text + image)
        return self.o(torch.stack(out))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.cross_attn = WanLikeI2VCrossAttention()


class WanLike(nn.Module):
    """The two things the injection layer taps: ``blocks[i].cross_attn`` and ``time_embedding``."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(2))
        self.time_embedding = nn.Sequential(nn.Linear(DIM, DIM), nn.SiLU(), nn.Linear(DIM, DIM))


def setup(batch=2, seed=0):
    torch.manual_seed(seed)
    wan = WanLike()
    adapter = AudioAdapter(AudioAdapterConfig(audio_dim=8, context_dim=12, model_dim=DIM, num_blocks=2))
    for p in adapter.parameters():
        nn.init.normal_(p, std=0.3)
    windows = compute_audio_windows(30, 4 * (FRAMES - 1) + 1)
    features = torch.randn(30, 8)
    x = torch.randn(batch, FRAMES * PER_FRAME, DIM)
    context = torch.randn(batch, IMG + TXT, DIM)
    return wan, adapter, adapter.frame_context(features, windows), x, context


def naive_block_with_audio(attn, kv, x, context, audio, scale):
    """Official per-block formula: o(x_text + x_image + scale * x_audio), shared q and o, per-frame valid tokens."""
    q = attn.norm_q(attn.q(x))
    img, txt = context[:, :IMG], context[:, IMG:]
    base = torch.stack(
        [
            naive_attention(q[b], attn.norm_k(attn.k(txt[b])), attn.v(txt[b]), HEADS)
            + naive_attention(q[b], attn.norm_k_img(attn.k_img(img[b])), attn.v_img(img[b]), HEADS)
            for b in range(x.shape[0])
        ]
    )
    tokens = audio.tokens.expand(x.shape[0], *audio.tokens.shape[1:])
    keys = tokens @ kv.k_proj.weight.T
    values = tokens @ kv.v_proj.weight.T
    audio_x = naive_frame_attention(q, keys, values, audio.k_lens.expand(x.shape[0], -1), HEADS)
    scale = torch.as_tensor(scale, dtype=x.dtype).reshape(-1, 1, 1)
    return attn.o(base + scale * audio_x)


def audio_branch(adapter, audio, *scales):
    return AudioBranch(adapter, audio, torch.tensor(scales))


def no_hooks_left(wan):
    return not wan.time_embedding._forward_hooks and all(
        not b.cross_attn.norm_q._forward_hooks and not b.cross_attn.o._forward_pre_hooks for b in wan.blocks
    )


@torch.no_grad()
def test_injection_equals_official_block_formula():
    wan, adapter, audio, x, context = setup()
    with DiTInjection(wan, [audio_branch(adapter, audio, 1.3, 1.3)]):
        out = [block.cross_attn(x, context, IMG) for block in wan.blocks]
    for block, kv, got in zip(wan.blocks, adapter.blocks, out):
        torch.testing.assert_close(got, naive_block_with_audio(block.cross_attn, kv, x, context, audio, 1.3), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_scale_zero_on_every_row_installs_nothing_and_is_exactly_the_model():
    wan, adapter, audio, x, context = setup()
    plain = wan.blocks[0].cross_attn(x, context, IMG)
    with DiTInjection(wan, [audio_branch(adapter, audio, 0.0, 0.0)]):
        assert no_hooks_left(wan)
        silent = wan.blocks[0].cross_attn(x, context, IMG)
    with DiTInjection(wan, [audio_branch(adapter, audio, 1.0, 1.0)]):
        voiced = wan.blocks[0].cross_attn(x, context, IMG)
    assert torch.equal(silent, plain)
    assert (voiced - plain).abs().max() > 1e-3


@torch.no_grad()
def test_rows_with_scale_zero_are_untouched_and_not_computed(monkeypatch):
    wan, adapter, audio, x, context = setup(batch=3)
    plain = wan.blocks[1].cross_attn(x, context, IMG)
    branch = audio_branch(adapter, audio, 0.0, 1.5, 0.0)
    seen_rows = []
    attend = AudioBranch.attend
    monkeypatch.setattr(AudioBranch, "attend", lambda self, index, q, heads: (seen_rows.append(q.shape[0]), attend(self, index, q, heads))[1])
    with DiTInjection(wan, [branch]):
        mixed = wan.blocks[1].cross_attn(x, context, IMG)
    assert seen_rows == [1]  # only the row that hears the audio
    assert torch.equal(mixed[0], plain[0]) and torch.equal(mixed[2], plain[2])
    expected = naive_block_with_audio(wan.blocks[1].cross_attn, adapter.blocks[1], x, context, audio, torch.tensor([0.0, 1.5, 0.0]))
    torch.testing.assert_close(mixed[1], expected[1], rtol=1e-5, atol=1e-5)


class ConstantBranch:
    """A second branch (as identity will be): adds scale * a fixed vector before o."""

    def __init__(self, vector, scales):
        self.vector, self.scales = vector, scales

    def attend(self, block_index, q, num_heads):
        return self.vector.expand_as(q) * (block_index + 1)


@torch.no_grad()
def test_branches_add_up_before_the_shared_output_projection():
    wan, adapter, audio, x, context = setup()
    extra = ConstantBranch(torch.randn(DIM), torch.tensor([0.5, 2.0]))
    with DiTInjection(wan, [audio_branch(adapter, audio, 1.0, 1.0), extra]):
        both = wan.blocks[1].cross_attn(x, context, IMG)
    attn = wan.blocks[1].cross_attn
    audio_only = naive_block_with_audio(attn, adapter.blocks[1], x, context, audio, 1.0)
    # o is affine: o(h + d) = o(h) + W_o d
    expected = audio_only + (extra.scales.reshape(-1, 1, 1) * 2 * extra.vector) @ attn.o.weight.T
    torch.testing.assert_close(both, expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_time_embedding_tap_adds_to_the_embedding_and_zero_is_exact():
    wan, _, _, _, _ = setup()
    t = torch.randn(2, DIM)
    plain = wan.time_embedding(t)
    with DiTInjection(wan, time_taps=[lambda e: torch.zeros_like(e)]):
        assert torch.equal(wan.time_embedding(t), plain)
    shift = torch.randn(2, DIM)
    with DiTInjection(wan, time_taps=[lambda e: shift]):
        torch.testing.assert_close(wan.time_embedding(t), plain + shift)
    assert no_hooks_left(wan)


@torch.no_grad()
def test_hooks_are_removed_after_use_and_after_errors():
    wan, adapter, audio, x, context = setup()
    plain = wan.blocks[0].cross_attn(x, context, IMG)
    with pytest.raises(RuntimeError, match="boom"):
        with DiTInjection(wan, [audio_branch(adapter, audio, 1.0, 1.0)], [lambda e: e]):
            raise RuntimeError("boom")
    assert no_hooks_left(wan)
    assert torch.equal(wan.blocks[0].cross_attn(x, context, IMG), plain)


def test_module_for_another_model_size_is_rejected():
    wan = WanLike()
    with pytest.raises(ModelMismatchError, match="audio adapter has 40 blocks of width 5120 \\(Wan2.1-14B\\).*2 blocks of width 16"):
        check_blocks_fit("audio adapter", 40, 5120, wan.blocks)


@torch.no_grad()
def test_output_projection_without_query_is_an_error_not_a_silent_skip():
    wan, adapter, audio, x, _ = setup()
    with DiTInjection(wan, [audio_branch(adapter, audio, 1.0, 1.0)]):
        with pytest.raises(RuntimeError, match="ran without its query"):
            wan.blocks[0].cross_attn.o(x)
