"""wav2vec2 inside ComfyUI: loading Hugging Face folders or single files into ComfyUI's own wav2vec2 model (a core
AUDIO_ENCODER), and encoding a voice track with it, chunked, with the official normalisation."""

from __future__ import annotations

import json
import os
import re

import comfy.audio_encoders.audio_encoders
import comfy.audio_encoders.wav2vec2
import comfy.model_management
import comfy.model_patcher
import comfy.ops
import comfy.utils
import torch

from fantasy_core.audio.track import WAV2VEC_SAMPLE_RATE, check_finite, normalize, resample, to_mono
from fantasy_core.audio.wav2vec import WAV2VEC2_GEOMETRY, AudioEncoderError, encode_in_chunks, wav2vec2_encoder_state

FANTASYTALKING_AUDIO_WIDTH = 768  # wav2vec2-base

# What ComfyUI's Wav2Vec2Model implements; a config asking for anything else cannot load into it.
_FIXED_ARCHITECTURE = {
    "conv_dim": [512] * 7,
    "conv_kernel": list(WAV2VEC2_GEOMETRY.kernels),
    "conv_stride": list(WAV2VEC2_GEOMETRY.strides),
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
}


class Wav2VecAudioEncoder(comfy.audio_encoders.audio_encoders.AudioEncoderModel):
    """A core AUDIO_ENCODER that runs in fp32 (as officially) and normalises input as its folder says."""

    def __init__(self, architecture: dict, normalize_input: bool):  # not super().__init__: it would pick fp16
        self.load_device = comfy.model_management.text_encoder_device()
        offload_device = comfy.model_management.text_encoder_offload_device()
        self.dtype = torch.float32
        self.model = comfy.audio_encoders.wav2vec2.Wav2Vec2Model(
            **architecture, do_normalize=False, dtype=self.dtype, device=offload_device, operations=comfy.ops.manual_cast
        ).eval()
        self.patcher = comfy.model_patcher.ModelPatcher(self.model, load_device=self.load_device, offload_device=offload_device)
        self.model_sample_rate = WAV2VEC_SAMPLE_RATE
        self.normalize_input = normalize_input

    def encode_audio(self, audio, sample_rate):
        """Core AudioEncoderEncode entry point: soxr resampling, downmix and the folder's normalisation first."""
        prepared = []
        for track in audio:
            mono = resample(check_finite(to_mono(track)), sample_rate)
            prepared.append(normalize(mono) if self.normalize_input else mono)
        return super().encode_audio(torch.stack(prepared)[:, None], WAV2VEC_SAMPLE_RATE)


def _architecture_from_config(config: dict, where: str) -> dict:
    if config.get("model_type") != "wav2vec2":
        raise AudioEncoderError(f"{where}: model_type is {config.get('model_type')!r}, not 'wav2vec2'. Use facebook/wav2vec2-base-960h.")
    for key, expected in _FIXED_ARCHITECTURE.items():
        value = config.get(key, expected)
        if (list(value) if isinstance(expected, list) else value) != expected:
            raise AudioEncoderError(
                f"{where}: {key} = {value}, but ComfyUI's wav2vec2 supports only {expected}. Use facebook/wav2vec2-base-960h."
            )
    hidden = config["hidden_size"]
    if config.get("intermediate_size", 4 * hidden) != 4 * hidden:
        raise AudioEncoderError(f"{where}: intermediate_size must be 4 x hidden_size for ComfyUI's wav2vec2.")
    return {
        "embed_dim": hidden,
        "num_heads": config["num_attention_heads"],
        "num_layers": config["num_hidden_layers"],
        "conv_norm": config.get("feat_extract_norm", "group") == "layer",
        "conv_bias": bool(config.get("conv_bias", False)),
        "do_stable_layer_norm": bool(config.get("do_stable_layer_norm", False)),
    }


def _architecture_from_keys(state: dict, where: str) -> dict:
    if "encoder.layer_norm.weight" not in state:
        raise AudioEncoderError(f"{where} is not a wav2vec2 model (no 'encoder.layer_norm.weight'). Use wav2vec2-base-960h.")
    hidden = state["encoder.layer_norm.weight"].shape[0]
    layers = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
    return {
        "embed_dim": hidden,
        "num_heads": hidden // 64,
        "num_layers": len(layers),
        "conv_norm": "feature_extractor.conv_layers.1.layer_norm.weight" in state,
        "conv_bias": "feature_extractor.conv_layers.1.conv.bias" in state,
        "do_stable_layer_norm": hidden == 1024,  # base models post-norm, large models pre-norm (as ComfyUI assumes)
    }


def _read_weights(path: str) -> dict:
    try:
        return comfy.utils.load_torch_file(path, safe_load=True)
    except Exception as error:  # noqa: BLE001 - any read failure means a broken file
        raise AudioEncoderError(f"wav2vec2 weights '{path}' could not be read ({error}). Download them again.") from error


def load_wav2vec(path: str) -> Wav2VecAudioEncoder:
    """A Hugging Face folder (config.json, preprocessor_config.json, weights) or a single .safetensors file."""
    if os.path.isdir(path):
        with open(os.path.join(path, "config.json")) as f:
            architecture = _architecture_from_config(json.load(f), f"'{path}/config.json'")
        normalize_input = True
        preprocessor = os.path.join(path, "preprocessor_config.json")
        if os.path.isfile(preprocessor):
            with open(preprocessor) as f:
                normalize_input = bool(json.load(f).get("do_normalize", True))
        weights = [os.path.join(path, n) for n in ("model.safetensors", "pytorch_model.bin") if os.path.isfile(os.path.join(path, n))]
        if not weights:
            raise AudioEncoderError(
                f"wav2vec2 folder '{path}' has no model.safetensors or pytorch_model.bin. Download the weights into it."
            )
        state = wav2vec2_encoder_state(_read_weights(weights[0]))
    else:
        state = wav2vec2_encoder_state(_read_weights(path))
        architecture = _architecture_from_keys(state, f"'{os.path.basename(path)}'")
        normalize_input = True  # wav2vec2-base-960h's extractor normalises; FantasyTalking was trained that way
    encoder = Wav2VecAudioEncoder(architecture, normalize_input)
    expected = set(encoder.model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        detail = f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'"
        raise AudioEncoderError(
            f"wav2vec2 weights in '{path}' do not match a {architecture['embed_dim']}-wide, {architecture['num_layers']}-layer "
            f"wav2vec2 ({len(missing)} missing, {len(unexpected)} unexpected keys; first {detail}). Use facebook/wav2vec2-base-960h."
        )
    encoder.model.load_state_dict(state, strict=True)
    return encoder


@torch.no_grad()
def encode_voice(encoder, waveform: torch.Tensor) -> torch.Tensor:
    """Mono 16 kHz waveform [T] -> wav2vec2 last hidden state [L, 768] (fp32, CPU), with a progress bar."""
    model = getattr(encoder, "model", None)
    if not isinstance(model, comfy.audio_encoders.wav2vec2.Wav2Vec2Model):
        raise AudioEncoderError(
            f"audio_encoder: FantasyTalking needs wav2vec2-base-960h, but this encoder is {type(model).__name__}. "
            "Load wav2vec2-base-960h with 'FantasyTalking wav2vec2 Loader' (or core 'Load Audio Encoder')."
        )
    width = model.encoder.layer_norm.weight.shape[0]
    if width != FANTASYTALKING_AUDIO_WIDTH:
        raise AudioEncoderError(
            f"audio_encoder: this wav2vec2 is {width} wide; FantasyTalking was trained on the 768-wide "
            "wav2vec2-base-960h. Load that model instead."
        )
    # Core's loader builds 768-wide models with do_normalize=False; FantasyTalking always heard normalised audio.
    if getattr(encoder, "normalize_input", True) and not model.do_normalize:
        waveform = normalize(waveform)
    comfy.model_management.load_model_gpu(encoder.patcher)
    progress_bar = None

    def progress(done: int, total: int) -> None:
        nonlocal progress_bar
        progress_bar = progress_bar or comfy.utils.ProgressBar(total)
        progress_bar.update_absolute(done, total)

    def forward(samples: torch.Tensor) -> torch.Tensor:
        return model(samples[:, None].to(encoder.load_device, torch.float32))[0]  # as core feeds it; weights cast per layer

    return encode_in_chunks(waveform, forward, WAV2VEC2_GEOMETRY, progress=progress)
