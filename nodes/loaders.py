"""Loader nodes: FantasyTalking modules (audio adapter, identity module; chainable) and the wav2vec2 audio encoder."""

from __future__ import annotations

from comfy_api.latest import io

from fantasy_comfy.loaded_modules import WEIGHT_DTYPES, load_modules
from fantasy_comfy.model_folders import module_file_path, module_files, wav2vec_choices, wav2vec_path
from fantasy_comfy.wav2vec import load_wav2vec

from .types import CATEGORY, FantasyTalkingModel


class FantasyTalkingModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingModelLoader",
            display_name="FantasyTalking Model Loader",
            category=CATEGORY,
            description="Loads FantasyTalking modules from one file, recognising what it holds: the released audio "
            "adapter (official .ckpt, official .safetensors or the fp16 repack), or a file from the FantasyTalking "
            "trainer holding any of the audio adapter, the identity module and the motion module. Chain loaders to "
            "combine files.",
            inputs=[
                io.Combo.Input(
                    "model_name",
                    options=module_files(),
                    tooltip="File from ComfyUI/models/fantasytalking/ or models/model_patches/: fantasytalking_model.ckpt "
                    "(acvlab/FantasyTalking), fantasytalking_fp16.safetensors, or a .safetensors written by the "
                    "FantasyTalking trainer (any of the audio adapter, identity module and motion module).",
                ),
                io.Combo.Input(
                    "weight_dtype",
                    options=list(WEIGHT_DTYPES),
                    default="default",
                    tooltip="Precision the modules are kept in. 'default' keeps the file's dtype; fp8_e4m3fn halves "
                    "the memory of the per-block keys/values (computation still runs in the model's dtype).",
                ),
                FantasyTalkingModel.Input(
                    "fantasytalking_model",
                    optional=True,
                    tooltip="Optional: modules from another loader to combine with this file's (e.g. the official audio "
                    "adapter, then an identity file). Each module may come from one file only.",
                ),
            ],
            outputs=[FantasyTalkingModel.Output(display_name="fantasytalking_model")],
        )

    @classmethod
    def execute(cls, model_name: str, weight_dtype: str, fantasytalking_model=None) -> io.NodeOutput:
        modules = load_modules(module_file_path(model_name), weight_dtype)
        if fantasytalking_model is not None:
            modules = fantasytalking_model.combined_with(modules)
        return io.NodeOutput(modules)


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
