"""The core adapter injected into ComfyUI's real Wan2.1 I2V model, loaded by ComfyUI's own loader."""

import contextlib

import pytest
import torch
from naive_reference import naive_attention, naive_frame_attention
from tiny_models import TINY_WAN, in_layout, random_adapter_state, save_tiny_wan_i2v, write_checkpoint

from fantasy_core import AudioAdapterConfig, Injection, build_adapter, load_adapter_weights
from fantasy_core.audio.windows import compute_audio_windows
from fantasy_core.dit.attention import frame_groups
from fantasy_core.dit.injection import branch_terms

LATENT_FRAMES, LATENT_HW = 3, 8  # 9 video frames of 64x64 -> 3 * 4 * 4 = 48 video tokens


@contextlib.contextmanager
def tapped(wan, adapter=None, audio=None, scale=1.0, time_addition=None):
    """The injection layer's twins in ComfyUI's WanModel for one call: the audio heard at ``scale`` by row 0."""
    injection = Injection(len(wan.blocks), wan.blocks[0].cross_attn.num_heads)
    remove = injection.install(wan)
    branches = []
    if audio is not None:
        keys_values = adapter.keys_values(audio, torch.float32)
        branches.append(branch_terms([0] if scale else [], torch.tensor([scale]), keys_values, frame_groups(audio.k_lens[0].tolist())))
    undo = injection.set_call(branches, time_addition)
    try:
        yield
    finally:
        undo()
        remove()


@pytest.fixture(scope="module")
def wan(comfy, tmp_path_factory):
    path = save_tiny_wan_i2v(comfy, str(tmp_path_factory.mktemp("wan") / "wan2.1_i2v_tiny.safetensors"))
    patcher = comfy.sd.load_diffusion_model(path)
    return patcher.model.diffusion_model


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    config = AudioAdapterConfig(audio_dim=32, context_dim=512, model_dim=TINY_WAN["dim"], num_blocks=TINY_WAN["num_layers"])
    path = write_checkpoint(
        str(tmp_path_factory.mktemp("ft") / "fantasytalking_model.ckpt"), in_layout(random_adapter_state(config), "nested")
    )
    return build_adapter(load_adapter_weights(path))


def inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 36, LATENT_FRAMES, LATENT_HW, LATENT_HW, generator=gen)
    context = torch.randn(1, 512, 4096, generator=gen) * 0.5
    clip_fea = torch.randn(1, 257, 1280, generator=gen) * 0.5
    features = torch.randn(40, 32, generator=gen)
    return x, torch.tensor([700.0]), context, clip_fea, features


def naive_cross_attention(attn, kv, audio, scale):
    """Official WanCrossAttentionProcessor restated with loops, replacing ComfyUI's forward for the reference run."""

    def forward(x, context, context_img_len, transformer_options={}):  # noqa: B006 (WanT2VCrossAttention's)
        heads = attn.num_heads
        img, txt = context[:, :context_img_len], context[:, context_img_len:]
        q = attn.norm_q(attn.q(x))
        text = naive_attention(q[0], attn.norm_k(attn.k(txt))[0], attn.v(txt)[0], heads)
        image = naive_attention(q[0], attn.norm_k_img(attn.k_img(img))[0], attn.v_img(img)[0], heads)
        keys = audio.tokens @ kv.k_proj.weight.T
        values = audio.tokens @ kv.v_proj.weight.T
        audio_x = naive_frame_attention(q, keys, values, audio.k_lens, heads)[0]
        return attn.o((text + image + scale * audio_x)[None])

    return forward


@torch.no_grad()
def test_one_model_evaluation_equals_the_naive_official_formula(wan, adapter):
    x, t, context, clip_fea, features = inputs()
    audio = adapter.frame_context(features, compute_audio_windows(40, 4 * (LATENT_FRAMES - 1) + 1))
    with tapped(wan, adapter, audio):
        patched = wan(x, t, context, clip_fea=clip_fea)
    for block, kv in zip(wan.blocks, adapter.blocks):
        block.cross_attn.forward = naive_cross_attention(block.cross_attn, kv, audio, 1.0)
    try:
        reference = wan(x, t, context, clip_fea=clip_fea)
    finally:
        for block in wan.blocks:
            del block.cross_attn.forward
    assert patched.shape == (1, 16, LATENT_FRAMES, LATENT_HW, LATENT_HW)
    torch.testing.assert_close(patched, reference, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_scale_zero_equals_unpatched_and_audio_changes_the_output(wan, adapter):
    x, t, context, clip_fea, features = inputs(1)
    audio = adapter.frame_context(features, compute_audio_windows(40, 4 * (LATENT_FRAMES - 1) + 1))
    plain = wan(x, t, context, clip_fea=clip_fea)
    with tapped(wan, adapter, audio, scale=0.0):
        silent = wan(x, t, context, clip_fea=clip_fea)
    with tapped(wan, adapter, audio):
        voiced = wan(x, t, context, clip_fea=clip_fea)
    assert torch.equal(silent, plain)
    assert (voiced - plain).abs().max() > 1e-4
    assert all(type(block.cross_attn.o) is type(block.cross_attn.k) for block in wan.blocks)  # the real layers are back
    assert torch.equal(wan(x, t, context, clip_fea=clip_fea), plain)


@torch.no_grad()
def test_time_embedding_tap_reaches_the_real_wan(wan):
    """The motion tap's mechanism on ComfyUI's own WanModel: a zero addition is bit-identical; any other changes the
    output through the blocks' modulation and the head."""
    x, t, context, clip_fea, _ = inputs(2)
    plain = wan(x, t, context, clip_fea=clip_fea)
    with tapped(wan, time_addition=torch.zeros(1, TINY_WAN["dim"])):
        assert torch.equal(wan(x, t, context, clip_fea=clip_fea), plain)
    with tapped(wan, time_addition=torch.full((1, TINY_WAN["dim"]), 0.5)):
        shifted = wan(x, t, context, clip_fea=clip_fea)
    assert (shifted - plain).abs().max() > 1e-4
    assert torch.equal(wan(x, t, context, clip_fea=clip_fea), plain)
