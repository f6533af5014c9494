"""The identity module: Q-Former, per-block identity attention through the shared injection layer (Eq. 4), and its file."""

import json

import pytest
import torch
from naive_reference import naive_attention, naive_qformer
from test_injection import HEADS, IMG, audio_branch, naive_block_with_audio, setup, tapped
from tiny_models import TINY_IDENTITY, random_identity_state

from fantasy_core.dit.injection import branch_terms
from fantasy_core.identity.embeds import FaceEmbedding
from fantasy_core.identity.model import IdentityConfig, IdentityModule, initialise_identity_module
from fantasy_core.identity.weights import IdentityWeights, build_identity_module

SMALL = IdentityConfig(face_dim=10, width=8, num_queries=3, num_layers=2, num_heads=2, ffn_dim=12, model_dim=16, num_blocks=2)


def identity_module(seed=1, zero_key_values=False, config=SMALL):
    state = random_identity_state(config, seed=seed, zero_key_values=zero_key_values)
    return build_identity_module(IdentityWeights(state, config, "test")), state


def identity_branch(module, tokens, *scales):
    rows = [i for i, scale in enumerate(scales) if scale != 0]
    return branch_terms(rows, torch.tensor(scales), module.keys_values(tokens, torch.float32))


def face(seed=5, width=SMALL.face_dim):
    vector = torch.randn(1, width, generator=torch.Generator().manual_seed(seed))
    return vector / vector.norm()


@torch.no_grad()
def test_qformer_equals_its_naive_restatement():
    module, state = identity_module()
    faces = torch.randn(2, SMALL.face_dim)  # two ArcFace tokens, so the cross-attention's softmax matters
    tokens = module.identity_tokens(faces)
    assert tokens.shape == (1, SMALL.num_queries, SMALL.width)
    torch.testing.assert_close(tokens[0], naive_qformer(state, faces, SMALL.num_layers, SMALL.num_heads), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_identity_attention_equals_equation_4_block_by_block():
    """Z' = Z + λ1·Attn(Q, K_a, V_a) + λ2·Attn(Q, K_id, V_id), before o, with the block's own q, every frame alike."""
    wan, adapter, audio, x, context = setup()
    module, state = identity_module()
    tokens = module.identity_tokens(face())
    with tapped(wan, [audio_branch(adapter, audio, 1.0, 1.0), identity_branch(module, tokens, 0.5, 0.5)]):
        got = [block.cross_attn(x, context, IMG) for block in wan.blocks]
    for index, (block, out) in enumerate(zip(wan.blocks, got)):
        attn = block.cross_attn
        q = attn.norm_q(attn.q(x))
        keys = tokens[0] @ state[f"blocks.{index}.k_proj.weight"].T
        values = tokens[0] @ state[f"blocks.{index}.v_proj.weight"].T
        identity_x = torch.stack([naive_attention(q[b], keys, values, HEADS) for b in range(x.shape[0])])
        # o(base + λ1·audio + λ2·identity) = o(base + λ1·audio) + W_o·(λ2·identity): o is linear
        expected = naive_block_with_audio(attn, adapter.blocks[index], x, context, audio, 1.0) + 0.5 * identity_x @ attn.o.weight.T
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_zero_initialised_key_values_give_exactly_the_audio_only_model():
    wan, adapter, audio, x, context = setup()
    module = initialise_identity_module(IdentityModule(SMALL), seed=3)
    assert any(p.abs().sum() > 0 for p in module.qformer.parameters())
    with tapped(wan, [audio_branch(adapter, audio, 1.0, 1.0)]):
        audio_only = [block.cross_attn(x, context, IMG) for block in wan.blocks]
    branch = identity_branch(module, module.identity_tokens(face()), 0.5, 0.5)
    with tapped(wan, [audio_branch(adapter, audio, 1.0, 1.0), branch]):
        with_identity = [block.cross_attn(x, context, IMG) for block in wan.blocks]
    for a, b in zip(audio_only, with_identity):
        assert torch.equal(a, b)


@torch.no_grad()
def test_trained_identity_changes_only_the_rows_that_see_it():
    wan, adapter, audio, x, context = setup(batch=3)
    module, _ = identity_module()
    tokens = module.identity_tokens(face())
    with tapped(wan, [audio_branch(adapter, audio, 1.0, 1.0, 1.0)]):
        audio_only = wan.blocks[1].cross_attn(x, context, IMG)
    with tapped(wan, [audio_branch(adapter, audio, 1.0, 1.0, 1.0), identity_branch(module, tokens, 0.5, 0.0, 1.5)]):
        mixed = wan.blocks[1].cross_attn(x, context, IMG)
    assert torch.equal(mixed[1], audio_only[1])
    for row in (0, 2):
        assert (mixed[row] - audio_only[row]).abs().max() > 1e-3
    # the identity term is linear in λ2: row 2's change is three times row 0's for the same input
    with tapped(wan, [audio_branch(adapter, audio, 1.0, 1.0, 1.0), identity_branch(module, tokens, 1.5, 1.5, 1.5)]):
        tripled = wan.blocks[1].cross_attn(x, context, IMG)
    torch.testing.assert_close(tripled[0] - audio_only[0], 3 * (mixed[0] - audio_only[0]), rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_another_face_gives_other_tokens():
    module, _ = identity_module()
    assert (module.identity_tokens(face(1)) - module.identity_tokens(face(2))).abs().max() > 1e-3


def test_face_embedding_of_the_wrong_width_is_rejected():
    module, _ = identity_module()
    with pytest.raises(ValueError, match="expects 10-wide ArcFace embeddings"):
        module.identity_tokens(torch.randn(1, 512))


def test_several_photos_average_to_one_unit_token():
    a, b = face(1), face(2)
    embedding = FaceEmbedding.averaged(torch.cat([a, b]), "buffalo_l/w600k_r50.onnx", "CPUExecutionProvider")
    expected = (a + b) / (a + b).norm()
    torch.testing.assert_close(embedding.vectors, expected)
    assert embedding.vectors.shape == (1, SMALL.face_dim)


@pytest.mark.parametrize("bad", [{"width": 9}, {"num_heads": 0}, {"num_blocks": 1.5}])
def test_invalid_architecture_is_rejected(bad):
    values = {**json.loads(json.dumps(TINY_IDENTITY.__dict__)), **bad}
    with pytest.raises(ValueError, match="identity config"):
        IdentityConfig(**values)
