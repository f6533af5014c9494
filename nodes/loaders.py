"""Loader nodes: the FantasyTalking adapter and the wav2vec2 audio encoder."""

from __future__ import annotations

import comfy.model_management
import comfy.model_patcher
import comfy.ops
import torch
from comfy_api.latest import io

from ..fantasy_core.audio.checkpoint import build_adapter, load_adapter_weights
from .folders import adapter_files, adapter_path, wav2vec_choices, wav2vec_path
from .types import CATEGORY, FantasyTalkingModel
from .wav2vec import load_wav2vec

WEIGHT_DTYPES = {"default": None, "fp16": torch.float16, "bf16": torch.bfloat16, "fp8_e4m3fn": torch.float8_e4m3fn}


def load_adapter_patcher(path: str, weight_dtype: str = "default"):
    """The adapter on the offload device with cast-on-demand layers, wrapped in its own ModelPatcher."""
    offload = comfy.model_management.unet_offload_device()
    adapter = build_adapter(load_adapter_weights(path), operations=comfy.ops.manual_cast, device=offload)
    dtype = WEIGHT_DTYPES[weight_dtype]
    if dtype is torch.float8_e4m3fn:
        adapter.blocks.to(dtype)  # the large k/v weights; the small projection keeps its precision
    elif dtype is not None:
        adapter.to(dtype)
    return comfy.model_patcher.ModelPatcher(adapter, load_device=comfy.model_management.get_torch_device(), offload_device=offload)


class FantasyTalkingModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingModelLoader",
            display_name="FantasyTalking Model Loader",
            category=CATEGORY,
            description="Loads the FantasyTalking audio adapter (official .ckpt, official .safetensors or the fp16 repack).",
            inputs=[
                io.Combo.Input(
                    "model_name",
                    options=adapter_files(),
                    tooltip="Adapter file from ComfyUI/models/fantasytalking/ or models/model_patches/: "
                    "fantasytalking_model.ckpt (acvlab/FantasyTalking) or fantasytalking_fp16.safetensors.",
                ),
                io.Combo.Input(
                    "weight_dtype",
                    options=list(WEIGHT_DTYPES),
                    default="default",
                    tooltip="Precision the adapter is kept in. 'default' keeps the file's dtype; fp8_e4m3fn halves "
                    "the memory of the per-block audio keys/values (computation still runs in the model's dtype).",
                ),
            ],
            outputs=[FantasyTalkingModel.Output(display_name="fantasytalking_model")],
        )

    @classmethod
    def execute(cls, model_name: str, weight_dtype: str) -> io.NodeOutput:
        return io.NodeOutput(load_adapter_patcher(adapter_path(model_name), weight_dtype))


class FantasyTalkingWav2VecLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingWav2VecLoader",
            display_name="FantasyTalking wav2vec2 Loader",
            category=CATEGORY,
            description="Loads wav2vec2-base-960h offline as a core AUDIO_ENCODER (fp32, as officially).",
            inputs=[
                io.Combo.Input(
                    "model_name",
                    options=wav2vec_choices(),
                    tooltip="A Hugging Face folder (config.json, preprocessor_config.json, model.safetensors) under "
                    "models/audio_encoders/ or models/transformers/, or a single .safetensors file in "
                    "models/audio_encoders/. FantasyTalking was trained with facebook/wav2vec2-base-960h.",
                ),
            ],
            outputs=[io.AudioEncoder.Output(display_name="audio_encoder")],
        )

    @classmethod
    def execute(cls, model_name: str) -> io.NodeOutput:
        return io.NodeOutput(load_wav2vec(wav2vec_path(model_name)))
