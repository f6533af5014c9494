"""The FANTASYTALKING_MODEL socket's value: the modules loaded so far (audio adapter, identity module, motion network), each in its
own ModelPatcher on the offload device with cast-on-demand layers, so ComfyUI loads, offloads and streams it with
the diffusion model. Loader nodes can be chained: each adds its file's modules to the ones it is given."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import comfy.model_management
import comfy.model_patcher
import comfy.ops
import torch

from fantasy_core.audio.weights import build_adapter
from fantasy_core.identity.weights import build_identity_module
from fantasy_core.module_file import MODULES, load_fantasytalking_file
from fantasy_core.motion.weights import build_motion_network

WEIGHT_DTYPES = {"default": None, "fp16": torch.float16, "bf16": torch.bfloat16, "fp8_e4m3fn": torch.float8_e4m3fn}


@dataclass(frozen=True)
class FantasyTalkingModules:
    audio: comfy.model_patcher.ModelPatcher | None = None
    identity: comfy.model_patcher.ModelPatcher | None = None
    motion: comfy.model_patcher.ModelPatcher | None = None
    files: tuple[tuple[str, str], ...] = ()  # (module, file name), for messages

    def patchers(self) -> list:
        return [patcher for patcher in (self.audio, self.identity, self.motion) if patcher is not None]

    def file_of(self, module: str) -> str:
        return next((name for owner, name in self.files if owner == module), "?")

    def combined_with(self, other: FantasyTalkingModules) -> FantasyTalkingModules:
        for name in MODULES:
            if getattr(self, name) is not None and getattr(other, name) is not None:
                raise ValueError(
                    f"FantasyTalking: both '{other.file_of(name)}' and '{self.file_of(name)}' hold a {name} module. "
                    f"Chain loaders whose files hold different modules (e.g. the official audio adapter, then an "
                    "identity file), or load one combined file alone."
                )
        taken = {name: getattr(other, name) or getattr(self, name) for name in MODULES}
        return replace(self, **taken, files=other.files + self.files)


def _patcher(module: torch.nn.Module, weight_dtype: str):
    dtype = WEIGHT_DTYPES[weight_dtype]
    if dtype is torch.float8_e4m3fn:
        if hasattr(module, "blocks"):
            module.blocks.to(dtype)  # the large per-block keys/values; the small rest keeps its precision
    elif dtype is not None:
        module.to(dtype)
    offload = comfy.model_management.unet_offload_device()
    return comfy.model_patcher.ModelPatcher(module, load_device=comfy.model_management.get_torch_device(), offload_device=offload)


def load_modules(path: str, weight_dtype: str = "default") -> FantasyTalkingModules:
    """Every module the file holds (recognised from its keys and metadata), each in its own ModelPatcher."""
    weights = load_fantasytalking_file(path)
    offload = comfy.model_management.unet_offload_device()
    name = os.path.basename(path)
    audio = identity = motion = None
    if weights.audio is not None:
        audio = _patcher(build_adapter(weights.audio, operations=comfy.ops.manual_cast, device=offload), weight_dtype)
    if weights.identity is not None:
        identity = _patcher(build_identity_module(weights.identity, operations=comfy.ops.manual_cast, device=offload), weight_dtype)
    if weights.motion is not None:
        motion = _patcher(build_motion_network(weights.motion, operations=comfy.ops.manual_cast, device=offload), weight_dtype)
    return FantasyTalkingModules(audio, identity, motion, tuple((module, name) for module in weights.modules))
