import contextlib

import pytest
import torch
from naive_reference import naive_attention, naive_frame_attention
from torch import nn

from fantasy_core import AudioAdapter, AudioAdapterConfig, Injection, ModelMismatchError
from fantasy_core.audio.windows import compute_audio_windows
from fantasy_core.dit import attention
from fantasy_core.dit.attention import frame_groups
from fantasy_core.dit.injection import TAP, branch_terms, check_blocks_fit

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
    """The audio terms of every block, the rows with a non-zero scale hearing them (as the nodes and trainer build them)."""
    rows = [i for i, scale in enumerate(scales) if scale != 0]
    groups = frame_groups(audio.k_lens[0].tolist())
    return branch_terms(rows, torch.tensor(scales), adapter.keys_values(audio, torch.float32), groups)


@contextlib.contextmanager
def tapped(wan, branches=(), time_addition=None):
    """The injection layer's twins in ``wan`` with these terms set, as for one model call; the originals back afterwards."""
    injection = Injection(len(wan.blocks), HEADS)
    remove = injection.install(wan)
    undo = injection.set_call(list(branches), time_addition)
    try:
        yield injection
    finally:
        undo()
        remove()


@torch.no_grad()
def test_injection_equals_official_block_formula():
    wan, adapter, audio, x, context = setup()
    with tapped(wan, [audio_branch(adapter, audio, 1.3, 1.3)]):
        out = [block.cross_attn(x, context, IMG) for block in wan.blocks]
    for block, kv, got in zip(wan.blocks, adapter.blocks, out):
        torch.testing.assert_close(got, naive_block_with_audio(block.cross_attn, kv, x, context, audio, 1.3), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_twins_with_nothing_to_add_are_exactly_the_model():
    wan, adapter, audio, x, context = setup()
    plain = wan.blocks[0].cross_attn(x, context, IMG)
    t = torch.randn(2, DIM)
    plain_e = wan.time_embedding(t)
    with tapped(wan, [audio_branch(adapter, audio, 0.0, 0.0)]) as injection:
        assert all(not tap.terms for tap in injection.blocks)  # a branch no row gets is left out
        assert type(wan.blocks[0].cross_attn.o) is not nn.Linear
        assert torch.equal(wan.blocks[0].cross_attn(x, context, IMG), plain)
        assert torch.equal(wan.time_embedding(t), plain_e)
        undo = injection.set_call([audio_branch(adapter, audio, 1.0, 1.0)])  # a call inside the call
        voiced = wan.blocks[0].cross_attn(x, context, IMG)
        undo()  # the outer call's (empty) terms are back
        assert torch.equal(wan.blocks[0].cross_attn(x, context, IMG), plain)
    assert (voiced - plain).abs().max() > 1e-3


@torch.no_grad()
def test_rows_with_scale_zero_are_untouched_and_not_computed(monkeypatch):
    wan, adapter, audio, x, context = setup(batch=3)
    plain = wan.blocks[1].cross_attn(x, context, IMG)
    seen_rows = []
    add = attention.add_frame_attention_
    monkeypatch.setattr(attention, "add_frame_attention_", lambda out, q, *args: (seen_rows.append(q.data_ptr()), add(out, q, *args))[1])
    import fantasy_core.dit.injection as injection_module

    monkeypatch.setattr(injection_module, "add_frame_attention_", attention.add_frame_attention_)
    with tapped(wan, [audio_branch(adapter, audio, 0.0, 1.5, 0.0)]):
        mixed = wan.blocks[1].cross_attn(x, context, IMG)
    assert len(seen_rows) == 1  # only the row that hears the audio, in block 1 only
    assert torch.equal(mixed[0], plain[0]) and torch.equal(mixed[2], plain[2])
    expected = naive_block_with_audio(wan.blocks[1].cross_attn, adapter.blocks[1], x, context, audio, torch.tensor([0.0, 1.5, 0.0]))
    torch.testing.assert_close(mixed[1], expected[1], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_branches_add_up_before_the_shared_output_projection():
    wan, adapter, audio, x, context = setup()
    tokens = torch.randn(1, 3, DIM)
    extra = branch_terms([0, 1], torch.tensor([0.5, 2.0]), [(tokens, tokens * (i + 1)) for i in range(2)])
    with tapped(wan, [audio_branch(adapter, audio, 1.0, 1.0), extra]):
        both = wan.blocks[1].cross_attn(x, context, IMG)
    attn = wan.blocks[1].cross_attn
    audio_only = naive_block_with_audio(attn, adapter.blocks[1], x, context, audio, 1.0)
    q = attn.norm_q(attn.q(x))
    extra_x = torch.stack([naive_attention(q[b], tokens[0], 2 * tokens[0], HEADS) for b in range(2)])
    # o is affine: o(h + d) = o(h) + W_o d
    expected = audio_only + (torch.tensor([0.5, 2.0]).reshape(-1, 1, 1) * extra_x) @ attn.o.weight.T
    torch.testing.assert_close(both, expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_time_embedding_gets_each_rows_addition_and_none_is_exact():
    wan, _, _, _, _ = setup()
    t = torch.randn(2, DIM)
    plain = wan.time_embedding(t)
    per_token = torch.randn(6, DIM)  # Wan embeds t.flatten(): three timesteps per row, rows in order
    plain_per_token = wan.time_embedding(per_token)
    with tapped(wan, time_addition=torch.zeros(2, DIM)):
        assert torch.equal(wan.time_embedding(t), plain)
    shift = torch.randn(2, DIM)
    with tapped(wan, time_addition=shift):
        torch.testing.assert_close(wan.time_embedding(t), plain + shift)
        torch.testing.assert_close(wan.time_embedding(per_token), plain_per_token + shift.repeat_interleave(3, 0))
        with pytest.raises(RuntimeError, match="time embedding of 5 rows for a batch of 2"):
            wan.time_embedding(torch.randn(5, DIM))


def test_twins_keep_every_name_and_share_the_real_layers_state():
    wan, _, _, _, _ = setup()
    names = [name for name, _ in wan.named_modules()]
    parameters = dict(wan.named_parameters())
    real_attn, real_o = wan.blocks[0].cross_attn, wan.blocks[0].cross_attn.o
    with tapped(wan):
        attn = wan.blocks[0].cross_attn
        assert [name for name, _ in wan.named_modules()] == names
        assert all(p is parameters[name] for name, p in wan.named_parameters())
        assert attn is real_attn and attn.o is not real_o  # only the layers are twins; Wan's cross-attention stays
        assert attn.o.__dict__ is real_o.__dict__  # ComfyUI's casting and low-VRAM flags set on one are on the other
        attn.o.comfy_cast_weights = True
        assert real_o.comfy_cast_weights
        assert type(real_o) is nn.Linear  # the real layer itself is untouched
    assert wan.blocks[0].cross_attn.o is real_o and type(wan.time_embedding[2]) is nn.Linear
    assert TAP not in real_o.__dict__  # nothing of a call stays in the layers' state


def test_a_twin_is_made_from_the_real_layer_never_from_another_twin():
    wan, _, _, _, _ = setup()
    remove = Injection(2, HEADS).install(wan)
    second = Injection(2, HEADS).twins(lambda path: wan.get_submodule(path))
    twin = second["blocks.0.cross_attn.o"]
    assert type(twin).__bases__ == (type(twin).__bases__[0], nn.Linear)  # not a twin of a twin
    assert twin.__dict__ is wan.blocks[0].cross_attn.o.__dict__
    remove()


@torch.no_grad()
def test_output_projection_without_query_is_an_error_not_a_silent_skip():
    wan, adapter, audio, x, context = setup()
    with tapped(wan, [audio_branch(adapter, audio, 1.0, 1.0)]):
        with pytest.raises(RuntimeError, match="ran without its query"):
            wan.blocks[0].cross_attn.o(x)


def test_module_for_another_model_size_is_rejected():
    wan = WanLike()
    with pytest.raises(ModelMismatchError, match="audio adapter has 40 blocks of width 5120 \\(Wan2.1-14B\\).*2 blocks of width 16"):
        check_blocks_fit("audio adapter", 40, 5120, wan.blocks)


def test_gradients_through_the_in_place_terms_equal_the_out_of_place_formula():
    """The trainer's path: the same twins and terms, with autograd through the in-place adds."""
    wan, adapter, audio, x, context = setup()
    audio = type(audio)(audio.tokens.detach(), audio.k_lens)  # the projection's own graph is not under test
    weights = torch.randn(2, x.shape[1], DIM)
    with tapped(wan, [audio_branch(adapter, audio, 1.0, 0.7)]):
        (wan.blocks[1].cross_attn(x, context, IMG) * weights).sum().backward()
    got = [p.grad.clone() for p in (adapter.blocks[1].k_proj.weight, adapter.blocks[1].v_proj.weight, wan.blocks[1].cross_attn.q.weight)]
    assert all(g.abs().sum() > 0 for g in got)
    for module in (adapter, wan):
        module.zero_grad()
    attn = wan.blocks[1].cross_attn
    (naive_block_with_audio(attn, adapter.blocks[1], x, context, audio, torch.tensor([1.0, 0.7])) * weights).sum().backward()
    expected = [p.grad for p in (adapter.blocks[1].k_proj.weight, adapter.blocks[1].v_proj.weight, attn.q.weight)]
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)
