import pytest
import torch
from torch import nn
from naive_reference import naive_attention, naive_frame_attention

from fantasy_core import AdapterConfig, AdapterMismatchError, AudioInjection, FantasyTalkingAdapter
from fantasy_core.windows import compute_audio_windows

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


def setup(batch=2, seed=0):
    torch.manual_seed(seed)
    blocks = nn.ModuleList(Block() for _ in range(2))
    adapter = FantasyTalkingAdapter(AdapterConfig(audio_dim=8, context_dim=12, model_dim=DIM, num_blocks=2))
    for p in adapter.parameters():
        nn.init.normal_(p, std=0.3)
    windows = compute_audio_windows(30, 4 * (FRAMES - 1) + 1)
    features = torch.randn(batch, 30, 8)
    x = torch.randn(batch, FRAMES * PER_FRAME, DIM)
    context = torch.randn(batch, IMG + TXT, DIM)
    return blocks, adapter, adapter.frame_context(features, windows), x, context


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
    keys = audio.tokens @ kv.k_proj.weight.T
    values = audio.tokens @ kv.v_proj.weight.T
    audio_x = naive_frame_attention(q, keys, values, audio.k_lens, HEADS)
    scale = torch.as_tensor(scale, dtype=x.dtype).reshape(-1, 1, 1)
    return attn.o(base + scale * audio_x)


@torch.no_grad()
def test_injection_equals_official_block_formula():
    blocks, adapter, audio, x, context = setup()
    with AudioInjection(blocks, adapter, audio, audio_scale=1.3):
        out = [block.cross_attn(x, context, IMG) for block in blocks]
    for block, kv, got in zip(blocks, adapter.blocks, out):
        torch.testing.assert_close(got, naive_block_with_audio(block.cross_attn, kv, x, context, audio, 1.3), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_audio_scale_zero_is_exactly_the_model_without_audio():
    blocks, adapter, audio, x, context = setup()
    plain = blocks[0].cross_attn(x, context, IMG)
    with AudioInjection(blocks, adapter, audio, audio_scale=0.0):
        silent = blocks[0].cross_attn(x, context, IMG)
    with AudioInjection(blocks, adapter, audio, audio_scale=1.0):
        voiced = blocks[0].cross_attn(x, context, IMG)
    assert torch.equal(silent, plain)
    assert (voiced - plain).abs().max() > 1e-3


@torch.no_grad()
def test_per_entry_scale_turns_audio_off_for_one_batch_entry():
    blocks, adapter, audio, x, context = setup()
    plain = blocks[1].cross_attn(x, context, IMG)
    scale = torch.tensor([1.0, 0.0])
    with AudioInjection(blocks, adapter, audio, audio_scale=scale):
        mixed = blocks[1].cross_attn(x, context, IMG)
    assert torch.equal(mixed[1], plain[1])
    torch.testing.assert_close(mixed[0], naive_block_with_audio(blocks[1].cross_attn, adapter.blocks[1], x, context, audio, scale)[0], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_hooks_are_removed_after_use_and_after_errors():
    blocks, adapter, audio, x, context = setup()
    plain = blocks[0].cross_attn(x, context, IMG)
    with pytest.raises(RuntimeError, match="boom"):
        with AudioInjection(blocks, adapter, audio):
            raise RuntimeError("boom")
    for block in blocks:
        assert not block.cross_attn.norm_q._forward_hooks and not block.cross_attn.o._forward_pre_hooks
    assert torch.equal(blocks[0].cross_attn(x, context, IMG), plain)


def test_adapter_for_another_model_size_is_rejected():
    blocks, _, audio, _, _ = setup()
    wide = FantasyTalkingAdapter(AdapterConfig(audio_dim=8, context_dim=12, model_dim=5120, num_blocks=40))
    with pytest.raises(AdapterMismatchError, match="40 blocks of width 5120 \\(Wan2.1-14B\\).*2 blocks of width 16"):
        AudioInjection(blocks, wide, audio)


@torch.no_grad()
def test_output_projection_without_query_is_an_error_not_a_silent_skip():
    blocks, adapter, audio, x, _ = setup()
    with AudioInjection(blocks, adapter, audio):
        with pytest.raises(RuntimeError, match="ran without its query"):
            blocks[0].cross_attn.o(x)
