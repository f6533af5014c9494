"""Reading FantasyTalking adapter files in every layout users have, strictly.

Layouts (keys for DiT block i; the projection is always ``proj.weight``, ``norm.weight``, ``norm.bias``):

=====================  ==================================================================================
official nested .ckpt  ``torch.save({"proj_model": {...}, "audio_processor":
                       {"blocks.{i}.cross_attn.processor.{k_proj,v_proj}.weight": ...}})``
official flat          the same keys flattened: ``proj_model.*``, ``audio_processor.blocks.{i}...``
fp16 repack            ``proj_model.*``, ``blocks.{i}.cross_attn.{k_proj,v_proj}.weight``
=====================  ==================================================================================

The official loader uses ``load_state_dict(strict=False)``, which turns a key mismatch into "no audio effect"
without an error. Here every expected key must be present, nothing unexpected may remain, shapes must agree
across blocks and block indices must be contiguous. Pickles load with ``weights_only=True``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch

from ..dit.layers import CastingOps
from ..weights import CheckpointError, all_finite, read_weights_file
from .adapter import AudioAdapter, AudioAdapterConfig

PROJECTION_KEYS = ("proj.weight", "norm.weight", "norm.bias")
NESTED_TOP_LEVEL = ("proj_model", "audio_processor")
_INDEX = r"(0|[1-9][0-9]*)"


class AdapterCheckpointError(CheckpointError):
    """The file is not a usable FantasyTalking adapter."""


@dataclass(frozen=True)
class _Layout:
    name: str
    block_key: re.Pattern  # groups: block index, "k_proj" | "v_proj"
    block_source: str  # the file's key for (index, name)

    def source_key(self, canonical_key: str) -> str:
        if canonical_key.startswith("proj_model."):
            return canonical_key
        _, index, name, _ = canonical_key.split(".")
        return self.block_source.format(index=index, name=name)


_OFFICIAL_BLOCK = re.compile(rf"audio_processor\.blocks\.{_INDEX}\.cross_attn\.processor\.(k_proj|v_proj)\.weight")
_OFFICIAL_SOURCE = "audio_processor.blocks.{index}.cross_attn.processor.{name}.weight"
_NESTED = _Layout("official nested .ckpt (proj_model + audio_processor)", _OFFICIAL_BLOCK, _OFFICIAL_SOURCE)
_OFFICIAL_FLAT = _Layout("official flat (proj_model.* + audio_processor.*)", _OFFICIAL_BLOCK, _OFFICIAL_SOURCE)
_REPACK = _Layout(
    "fp16 repack (proj_model.* + blocks.N.cross_attn.k_proj/v_proj)",
    re.compile(rf"blocks\.{_INDEX}\.cross_attn\.(k_proj|v_proj)\.weight"),
    "blocks.{index}.cross_attn.{name}.weight",
)


@dataclass(frozen=True)
class AdapterWeights:
    """A validated adapter checkpoint in the canonical key layout of ``AudioAdapter``."""

    state_dict: dict[str, torch.Tensor]
    config: AudioAdapterConfig
    layout: str
    path: str

    @property
    def dtype(self) -> torch.dtype:
        return self.state_dict["blocks.0.k_proj.weight"].dtype


def _fail(path: str, layout: str, problem: str, key: str | None = None, advice: str | None = None):
    where = f" (first offending key: '{key}')" if key is not None else ""
    advice = advice or (
        "Re-download fantasytalking_model.ckpt (acvlab/FantasyTalking) or fantasytalking_fp16.safetensors "
        "(Kijai/WanVideo_comfy); the file may be truncated or converted wrongly."
    )
    raise AdapterCheckpointError(
        f"FantasyTalking adapter '{os.path.basename(path)}' looks like the {layout} layout, but {problem}{where}. {advice}"
    )


def read_checkpoint_file(path: str) -> dict:
    """The raw mapping of an adapter file (any layout), never executing pickled code."""
    return read_weights_file(path, AdapterCheckpointError, "FantasyTalking adapter file")


def _flatten_nested(raw: dict, path: str) -> dict:
    layout = _NESTED.name
    keys = sorted(map(str, raw))
    if keys != sorted(NESTED_TOP_LEVEL):
        odd = next((k for k in keys if k not in NESTED_TOP_LEVEL), None)
        missing = [k for k in NESTED_TOP_LEVEL if k not in raw]
        problem = f"its top level holds {keys}, expected exactly {list(NESTED_TOP_LEVEL)}"
        _fail(path, layout, problem, odd if odd is not None else missing[0])
    flat = {}
    for top, inner in raw.items():
        if not isinstance(inner, dict):
            _fail(path, layout, f"'{top}' is a {type(inner).__name__}, not a dict of tensors", top)
        flat.update({f"{top}.{key}": value for key, value in inner.items()})
    return flat


def _canonical(flat: dict, path: str, layout: _Layout) -> dict[str, torch.Tensor]:
    canonical = {}
    for key in sorted(flat, key=str):
        value = flat[key]
        match = layout.block_key.fullmatch(str(key))
        if match:
            new_key = f"blocks.{int(match.group(1))}.{match.group(2)}.weight"
        elif str(key).startswith("proj_model.") and str(key)[len("proj_model.") :] in PROJECTION_KEYS:
            new_key = key
        else:
            _fail(path, layout.name, "it holds a key this layout does not have", key)
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            _fail(path, layout.name, f"the value is {getattr(value, 'dtype', type(value).__name__)}, not a float tensor", key)
        if not all_finite(value):
            _fail(
                path,
                layout.name,
                "a weight holds NaN or infinite values, which would make every video NaN",
                key,
                "The file is damaged (or was saved after a diverged training run): download or export it again.",
            )
        canonical[new_key] = value
    return canonical


def _validate(sd: dict[str, torch.Tensor], path: str, layout: _Layout) -> AudioAdapterConfig:
    for key in PROJECTION_KEYS:
        if f"proj_model.{key}" not in sd:
            _fail(path, layout.name, "a projection weight is missing", f"proj_model.{key}")
    indices = sorted({int(key.split(".")[1]) for key in sd if key.startswith("blocks.")})
    if not indices:
        _fail(path, layout.name, "it has no audio key/value weights for any DiT block", layout.source_key("blocks.0.k_proj.weight"))
    if indices != list(range(len(indices))):
        gap = next(i for i, index in enumerate(indices) if i != index)
        _fail(
            path,
            layout.name,
            f"its block indices are not contiguous (block {gap} is missing, blocks run to {indices[-1]})",
            layout.source_key(f"blocks.{indices[gap]}.k_proj.weight"),
        )
    for index in indices:
        for name in ("k_proj", "v_proj"):
            key = f"blocks.{index}.{name}.weight"
            if key not in sd:
                _fail(path, layout.name, f"block {index} lacks its {name} weight", layout.source_key(key))

    proj = sd["proj_model.proj.weight"]
    if proj.dim() != 2:
        _fail(path, layout.name, f"the projection weight has shape {list(proj.shape)}, expected [context, audio]", "proj_model.proj.weight")
    context_dim, audio_dim = proj.shape
    for key in ("proj_model.norm.weight", "proj_model.norm.bias"):
        if list(sd[key].shape) != [context_dim]:
            _fail(path, layout.name, f"'{key}' has shape {list(sd[key].shape)}, expected [{context_dim}]", key)
    first = sd["blocks.0.k_proj.weight"]
    if first.dim() != 2 or first.shape[1] != context_dim:
        _fail(
            path,
            layout.name,
            f"block 0's k_proj has shape {list(first.shape)}, expected [model_dim, {context_dim}]",
            layout.source_key("blocks.0.k_proj.weight"),
        )
    for index in indices:
        for name in ("k_proj", "v_proj"):
            key = f"blocks.{index}.{name}.weight"
            if sd[key].shape != first.shape:
                _fail(
                    path,
                    layout.name,
                    f"'{key}' has shape {list(sd[key].shape)} while block 0 has {list(first.shape)}",
                    layout.source_key(key),
                )
    return AudioAdapterConfig(audio_dim=audio_dim, context_dim=context_dim, model_dim=first.shape[0], num_blocks=len(indices))


def parse_adapter_state(raw: dict, path: str = "<state dict>") -> AdapterWeights:
    """Recognise the layout of a loaded checkpoint mapping, validate it and return canonical weights."""
    if not isinstance(raw, dict) or not raw:
        raise AdapterCheckpointError(
            f"'{os.path.basename(path)}' holds {type(raw).__name__ if raw else 'nothing'}, not a FantasyTalking "
            "adapter state dict. Select fantasytalking_model.ckpt or fantasytalking_fp16.safetensors."
        )
    if any(isinstance(value, dict) for value in raw.values()) or set(raw) & set(NESTED_TOP_LEVEL):
        flat, layout = _flatten_nested(raw, path), _NESTED
    else:
        flat = raw
        if any(str(key).startswith("audio_processor.") for key in flat):
            layout = _OFFICIAL_FLAT
        elif any(_REPACK.block_key.fullmatch(str(key)) for key in flat):
            layout = _REPACK
        else:
            sample = sorted(map(str, flat))[:3]
            raise AdapterCheckpointError(
                f"'{os.path.basename(path)}' is not a FantasyTalking adapter: none of its keys are audio key/value "
                f"weights (it starts with {sample}). A Wan model belongs in a model loader; this node needs "
                "fantasytalking_model.ckpt or fantasytalking_fp16.safetensors."
            )
    canonical = _canonical(flat, path, layout)
    config = _validate(canonical, path, layout)
    return AdapterWeights(canonical, config, layout.name, path)


def load_adapter_weights(path: str) -> AdapterWeights:
    return parse_adapter_state(read_checkpoint_file(path), path)


def build_adapter(weights: AdapterWeights, dtype: torch.dtype | None = None, operations=CastingOps, device=None) -> AudioAdapter:
    """An adapter module holding the checkpoint's tensors (no random initialisation, strict key match)."""
    with torch.device("meta"):
        adapter = AudioAdapter(weights.config, operations)
    adapter.load_state_dict(weights.state_dict, strict=True, assign=True)
    if dtype is not None or device is not None:
        adapter.to(device=device, dtype=dtype)
    return adapter.eval().requires_grad_(False)
