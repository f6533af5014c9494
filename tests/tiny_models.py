"""Tiny random-weight models and files in the real formats, shared by both test tiers."""

from __future__ import annotations

import math
import os

import torch
from safetensors.torch import save_file

from fantasy_core import AudioAdapterConfig
from fantasy_core.identity.model import IdentityConfig, IdentityModule
from fantasy_core.motion.model import MotionConfig, MotionNetwork

TINY_ADAPTER = AudioAdapterConfig(audio_dim=32, context_dim=512, model_dim=256, num_blocks=2)
TINY_IDENTITY = IdentityConfig(face_dim=512, width=32, num_queries=4, num_layers=2, num_heads=4, ffn_dim=48, model_dim=256, num_blocks=2)
TINY_MOTION = MotionConfig(hidden_dim=16, model_dim=256)


def tiny_wav2vec_config(num_layers: int = 2, hidden: int = 32, pos_kernel: int = 16):
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=pos_kernel,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
        vocab_size=8,
    )


def save_wav2vec_folder(folder: str, config=None, do_normalize: bool = True, seed: int = 0) -> str:
    """A Hugging Face wav2vec2 folder (config.json, model.safetensors, preprocessor_config.json)."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    model = Wav2Vec2Model(config or tiny_wav2vec_config()).eval()
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=do_normalize, return_attention_mask=False
    ).save_pretrained(folder)
    return folder


def random_adapter_state(config: AudioAdapterConfig = TINY_ADAPTER, seed: int = 0, dtype=torch.float32) -> dict:
    """Canonical keys; LayerNorm affine terms random too, so a wrong key mapping shows."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.2):
        return (torch.randn(*shape, generator=gen) * scale).to(dtype)

    state = {
        "proj_model.proj.weight": rand(config.context_dim, config.audio_dim),
        "proj_model.norm.weight": 1 + rand(config.context_dim, scale=0.1),
        "proj_model.norm.bias": rand(config.context_dim, scale=0.1),
    }
    for i in range(config.num_blocks):
        state[f"blocks.{i}.k_proj.weight"] = rand(config.model_dim, config.context_dim)
        state[f"blocks.{i}.v_proj.weight"] = rand(config.model_dim, config.context_dim)
    return state


def random_identity_state(config: IdentityConfig = TINY_IDENTITY, seed: int = 0, zero_key_values: bool = False) -> dict:
    """Every tensor random (norm scales near 1), so a wrong key or a swapped weight shows; optionally zero k/v."""
    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {key: value.shape for key, value in IdentityModule(config).state_dict().items()}
    state = {}
    for key, shape in shapes.items():
        if key.endswith("norm.weight") or key.endswith("_norm.weight"):
            state[key] = 1 + 0.1 * torch.randn(shape, generator=gen)
        elif key.startswith("blocks.") and zero_key_values:
            state[key] = torch.zeros(shape)
        else:
            state[key] = torch.randn(shape, generator=gen) * (0.5 if key == "qformer.queries" else 0.2)
    return state


def random_motion_state(config: MotionConfig = TINY_MOTION, seed: int = 0, zero_out: bool = False) -> dict:
    """Every tensor random; ``zero_out``: the last layer zero, as an untrained network's."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in MotionNetwork(config).state_dict().items():
        if key.startswith("out.") and zero_out:
            state[key] = torch.zeros(value.shape)
        else:
            state[key] = torch.randn(value.shape, generator=gen) * (0.3 if key.startswith("out.") else 0.5)
    return state


def in_layout(state: dict, layout: str) -> dict:
    """Canonical adapter keys -> one of the three published layouts ("nested", "official_flat", "repack")."""
    projection = {k[len("proj_model.") :]: v for k, v in state.items() if k.startswith("proj_model.")}
    blocks = {k: v for k, v in state.items() if k.startswith("blocks.")}

    def official_key(key: str) -> str:
        _, i, name, _ = key.split(".")
        return f"blocks.{i}.cross_attn.processor.{name}.weight"

    if layout == "nested":
        return {"proj_model": projection, "audio_processor": {official_key(k): v for k, v in blocks.items()}}
    flat = {f"proj_model.{k}": v for k, v in projection.items()}
    if layout == "official_flat":
        flat.update({f"audio_processor.{official_key(k)}": v for k, v in blocks.items()})
    elif layout == "repack":
        flat.update({k.replace(".k_proj", ".cross_attn.k_proj").replace(".v_proj", ".cross_attn.v_proj"): v for k, v in blocks.items()})
    else:
        raise ValueError(layout)
    return flat


def write_checkpoint(path: str, mapping: dict) -> str:
    if path.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in mapping.items()}, path)
    else:
        torch.save(mapping, path)
    return path


def voice_like(seconds: float, sample_rate: int, seed: int = 0) -> torch.Tensor:
    """A deterministic band-limited (< 4 kHz) signal with a speech-like syllable envelope, [T] float32."""
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    gen = torch.Generator().manual_seed(seed)
    freqs = 120 + 3000 * torch.rand(12, generator=gen, dtype=torch.float64)
    phases = 2 * math.pi * torch.rand(12, generator=gen, dtype=torch.float64)
    tone = torch.sin(2 * math.pi * freqs[:, None] * t[None] + phases[:, None]).sum(0) / 6
    envelope = 0.6 + 0.4 * torch.sin(2 * math.pi * 4.0 * t)
    return (tone * envelope).float()


TINY_WAN = {"dim": 256, "ffn_dim": 512, "num_heads": 2, "num_layers": 2}  # dim % 128 == 0 for ComfyUI's detection


def save_tiny_wan_i2v(comfy, path: str, seed: int = 0) -> str:
    """A random-weight Wan2.1 image-to-video DiT in ComfyUI's own key layout, as safetensors."""
    from comfy.ldm.wan.model import WanModel

    torch.manual_seed(seed)
    model = WanModel(model_type="i2v", in_dim=36, out_dim=16, text_dim=4096, operations=comfy.ops.disable_weight_init, **TINY_WAN)
    state = {}
    for key, tensor in model.state_dict().items():
        is_norm_scale = key.endswith("weight") and tensor.dim() == 1
        state[key] = (1 + 0.1 * torch.randn(tensor.shape)) if is_norm_scale else 0.05 * torch.randn(tensor.shape)
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path


def comfy_wav2vec_config(num_layers: int = 1):
    """768 wide like wav2vec2-base (ComfyUI's wav2vec2 fixes every width); fewer layers keep it small."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        num_hidden_layers=num_layers, vocab_size=32, feat_extract_norm="group", conv_bias=False, do_stable_layer_norm=False
    )


def save_ctc_wav2vec_folder(folder: str, num_layers: int = 1, seed: int = 0) -> str:
    """Saved the way facebook/wav2vec2-base-960h is: a Wav2Vec2ForCTC (``wav2vec2.`` prefix plus ``lm_head``)."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    torch.manual_seed(seed)
    Wav2Vec2ForCTC(comfy_wav2vec_config(num_layers)).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True).save_pretrained(folder)
    return folder


def save_tiny_wan_vae(comfy, path: str, seed: int = 0) -> str:
    """A random-weight Wan 2.1 VAE in its real key layout. Newer ComfyUI reads the width from decoder.head.0.gamma,
    so 8 channels do; older versions (v0.3.64) fix it at 96, the real size (then stored in bf16 to halve the file)."""
    import comfy.sd
    from comfy.ldm.wan.vae import WanVAE

    for dim, dtype in ((8, torch.float32), (96, torch.bfloat16)):
        torch.manual_seed(seed)
        vae = WanVAE(
            dim=dim, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[], temperal_downsample=[False, True, True], dropout=0.0
        )
        state = {}
        for key, tensor in vae.state_dict().items():  # ComfyUI builds it uninitialised: fill every tensor
            if key.endswith("gamma"):
                value = 1 + 0.1 * torch.randn(tensor.shape)
            elif key.endswith("bias") or tensor.dim() < 2:
                value = 0.01 * torch.randn(tensor.shape)
            else:
                value = torch.randn(tensor.shape) / math.sqrt(tensor[0].numel())
            state[key] = value.to(dtype).contiguous()
        try:
            comfy.sd.VAE(sd=dict(state))
        except RuntimeError:
            continue
        save_file(state, path)
        return path
    raise RuntimeError("this ComfyUI loads neither an 8- nor a 96-channel Wan 2.1 VAE")


def save_media(folder: str, seconds: float = 1.0, seed: int = 0) -> tuple[str, str]:
    """A portrait-sized PNG and a 22.05 kHz stereo WAV, written with the libraries ComfyUI itself reads them with."""
    import av
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    image = f"portrait_{seed}.png"
    Image.fromarray(rng.integers(0, 255, (96, 80, 3), dtype=np.uint8)).save(os.path.join(folder, image))
    audio = f"voice_{seed}.wav"
    samples = torch.stack([voice_like(seconds, 22050, seed), voice_like(seconds, 22050, seed + 100)]).numpy()
    with av.open(os.path.join(folder, audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=22050, layout="stereo")
        frame = av.AudioFrame.from_ndarray((samples * 20000).astype(np.int16).T.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = 22050
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return image, audio


def save_tiny_wan_lora(path: str, seed: int = 3) -> str:
    """A rank-4 LoRA for the tiny Wan in the generic ``diffusion_model.<module>.lora_up/lora_down`` format."""
    gen = torch.Generator().manual_seed(seed)
    lora = {}
    for target in ("blocks.0.cross_attn.q", "blocks.1.cross_attn.o", "blocks.1.ffn.0"):
        out_dim = TINY_WAN["ffn_dim"] if target.endswith("ffn.0") else TINY_WAN["dim"]
        lora[f"diffusion_model.{target}.lora_up.weight"] = torch.randn(out_dim, 4, generator=gen) * 0.3
        lora[f"diffusion_model.{target}.lora_down.weight"] = torch.randn(4, TINY_WAN["dim"], generator=gen) * 0.3
    save_file(lora, path)
    return path
