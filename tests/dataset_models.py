"""Tiny encoders for the data preparation, built with ComfyUI's own classes. UMT5-XXL and ViT-H have fixed
architectures in ComfyUI's file loaders (5.7 B and 632 M parameters), so the tiny ones are ComfyUI's T5 and CLIP-vision
classes with small configs but their real output widths (4096 and 1280, what Wan reads), a real SentencePiece
tokenizer, and weights in the real key layouts; the VAE and wav2vec2 go through the real file loaders."""

from __future__ import annotations

import io
import json
import os

import torch
from safetensors.torch import save_file

TINY_UMT5 = {
    "d_ff": 32,
    "d_kv": 8,
    "d_model": 4096,
    "dense_act_fn": "gelu_pytorch_tanh",
    "is_gated_act": True,
    "num_heads": 2,
    "num_layers": 1,
    "model_type": "umt5",
    "relative_attention_num_buckets": 32,
    "layer_norm_epsilon": 1e-6,
}
TINY_CLIP_VISION = {
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "image_size": 224,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 64,
    "layer_norm_eps": 1e-5,
    "model_type": "clip_vision_model",
    "num_attention_heads": 2,
    "num_channels": 3,
    "num_hidden_layers": 2,
    "patch_size": 14,
    "projection_dim": 16,
}
SENTENCES = [
    "A woman is talking.",
    "An astronaut talks about the mission.",
    "Every clip is cut and cached.",
    "The quick brown fox jumps over the lazy dog.",
    "Hello there, how are you today?",
]


def _fill(state: dict, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in sorted(state.items()):
        if value.dim() < 2:
            out[key] = (
                (1 + 0.1 * torch.randn(value.shape, generator=gen)) if "weight" in key else 0.02 * torch.randn(value.shape, generator=gen)
            )
        else:
            out[key] = torch.randn(value.shape, generator=gen) / (value[0].numel() ** 0.5)
    return out


def sentencepiece_model() -> torch.Tensor:
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 20),
        model_writer=model,
        vocab_size=48,
        model_type="unigram",
        character_coverage=1.0,
        minloglevel=2,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
    )
    return torch.ByteTensor(list(model.getvalue()))


def tiny_text_encoder(comfy, seed: int = 0):
    """A comfy.sd.CLIP with Wan's UMT5 tokenizer and ComfyUI's T5 (umt5 flavour), 4096 wide, one layer."""
    import types

    import comfy.sd1_clip
    import comfy.text_encoders.t5
    import comfy.text_encoders.wan

    spiece = sentencepiece_model()
    config = {**TINY_UMT5, "vocab_size": 48}

    class TinyUMT5(comfy.sd1_clip.SDClipModel):
        def __init__(self, device="cpu", layer="last", layer_idx=None, dtype=None, model_options={}):  # noqa: B006 (ComfyUI's)
            super().__init__(
                device=device,
                layer=layer,
                layer_idx=layer_idx,
                textmodel_json_config=config,
                dtype=dtype,
                special_tokens={"end": 1, "pad": 0},
                model_class=comfy.text_encoders.t5.T5,
                enable_attention_masks=True,
                zero_out_masked=True,
                model_options=model_options,
            )

    class TinyWanT5(comfy.sd1_clip.SD1ClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):  # noqa: B006 (ComfyUI's)
            super().__init__(device=device, dtype=dtype, model_options=model_options, name="umt5xxl", clip_model=TinyUMT5)

    with torch.device("meta"):
        shapes = TinyUMT5(dtype=torch.float32).transformer.state_dict()
    state = {f"umt5xxl.transformer.{k}": v for k, v in _fill(shapes, seed).items()}
    target = types.SimpleNamespace(params={}, clip=TinyWanT5, tokenizer=comfy.text_encoders.wan.WanT5Tokenizer)
    clip = comfy.sd.CLIP(target, tokenizer_data={"spiece_model": spiece}, model_options={"dtype": torch.float32})
    missing, unexpected = clip.load_sd(state, full_model=True)  # as comfy.sd.load_clip does (v0.3.64 takes no state_dict)
    missing = [key for key in missing if not key.endswith("logit_scale")]  # older ComfyUI's CLIP-only parameter
    assert not missing and not unexpected, (missing, unexpected)
    return clip


def tiny_clip_vision(comfy, folder: str, seed: int = 0):
    """comfy.clip_vision.ClipVisionModel, 1280 wide with two layers, its weights from a safetensors in the real layout."""
    import comfy.clip_vision

    config = os.path.join(folder, "clip_vision_tiny.json")
    with open(config, "w") as f:
        json.dump(TINY_CLIP_VISION, f)
    model = comfy.clip_vision.ClipVisionModel(config)
    weights = os.path.join(folder, "clip_vision_tiny.safetensors")
    with torch.device("meta"):
        shapes = {k: v for k, v in model.model.state_dict().items()}
    save_file(_fill(shapes, seed), weights)
    model.load_sd(comfy.utils.load_torch_file(weights, safe_load=True))
    return model


def tiny_encoders(comfy, folder: str):
    """DatasetEncoders of tiny models: the Wan VAE and wav2vec2 written to ``folder`` and read by the real loaders."""
    import comfy.sd
    from tiny_models import save_ctc_wav2vec_folder, save_tiny_wan_vae

    from fantasy_comfy.wav2vec import load_wav2vec
    from fantasy_train.encoders import DatasetEncoders

    os.makedirs(folder, exist_ok=True)
    vae_path = os.path.join(folder, "wan_2.1_vae_tiny.safetensors")
    if not os.path.isfile(vae_path):
        save_tiny_wan_vae(comfy, vae_path)
    wav2vec = os.path.join(folder, "wav2vec2-tiny-960h")
    if not os.path.isdir(wav2vec):
        save_ctc_wav2vec_folder(wav2vec)
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(vae_path, safe_load=True))
    return DatasetEncoders(vae, tiny_text_encoder(comfy), tiny_clip_vision(comfy, folder), load_wav2vec(wav2vec))


MODEL_NAMES = {
    "vae": "wan_2.1_vae_tiny.safetensors",
    "text_encoder": "umt5_tiny",
    "clip_vision": "clip_vision_tiny",
    "wav2vec": "wav2vec2-tiny-960h",
    "arcface": "tiny/arcface.onnx",
}
