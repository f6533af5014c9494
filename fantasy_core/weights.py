"""What every FantasyTalking weight file shares: its error type, the strict check of a module's tensors against its
architecture, and building a module from them without random initialisation."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from dataclasses import fields

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

DAMAGED = "The file is damaged (or was saved after a diverged training run): export it again from a good checkpoint."


class CheckpointError(ValueError):
    """The file is not a usable FantasyTalking module file (wrong, corrupt, mismatched or damaged)."""


def all_finite(tensor: torch.Tensor) -> bool:
    if tensor.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        tensor = tensor.float()  # fp8 has no isfinite kernel
    return bool(torch.isfinite(tensor).all())


def metadata_json(metadata: dict[str, str], key: str, what: str, fail: Callable[..., None]):
    """The JSON value of one metadata entry; ``fail(problem)`` raises the module's own error when absent or malformed."""
    if key not in metadata:
        fail(f"the file's metadata has no {what} (there is no '{key}' entry)")
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as error:
        fail(f"its {what} metadata ('{key}') is not valid JSON ({error})")


def config_from_metadata(config_class, metadata: dict[str, str], key: str, what: str, fail: Callable[..., None]):
    """A module's architecture dataclass from its metadata entry: exactly its fields, each valid."""
    values = metadata_json(metadata, key, what, fail)
    names = sorted(field.name for field in fields(config_class))
    if not isinstance(values, dict) or sorted(values) != names:
        found = sorted(values) if isinstance(values, dict) else type(values).__name__
        fail(f"its {what} metadata holds {found}, expected exactly {names}")
    try:
        return config_class(**values)
    except ValueError as error:
        fail(f"its {what} metadata is invalid: {error}")


def state_shapes(module_class, config) -> dict[str, torch.Size]:
    """The state-dict shapes of ``module_class(config)``, without allocating it."""
    with torch.device("meta"):
        module = module_class(config)
    return {key: value.shape for key, value in module.state_dict().items()}


def check_module_state(state: dict[str, torch.Tensor], module_class, config, fail: Callable[..., None]) -> None:
    """Every key the architecture needs, nothing else, float tensors of the expected shapes, finite values.
    ``fail(problem, key, advice=None)`` raises the module's own error."""
    expected = state_shapes(module_class, config)
    missing = [key for key in expected if key not in state]
    if missing:
        fail(f"{len(missing)} weight(s) its architecture needs are missing", missing[0])
    unexpected = sorted(key for key in state if key not in expected)
    if unexpected:
        fail(f"it holds {len(unexpected)} weight(s) its architecture does not have", unexpected[0])
    for key, shape in expected.items():
        value = state[key]
        if not value.is_floating_point():
            fail(f"the value is {value.dtype}, not a float tensor", key)
        if value.shape != shape:
            fail(f"the tensor has shape {list(value.shape)}, but the metadata's architecture ({config}) needs {list(shape)}", key)
        if not all_finite(value):
            fail("a weight holds NaN or infinite values, which would make every video NaN", key, DAMAGED)


def build_module(module_class, config, state: dict[str, torch.Tensor], operations, device=None) -> nn.Module:
    """A module holding exactly these tensors (built on the meta device, strict key match), frozen, in eval mode."""
    with torch.device("meta"):
        module = module_class(config, operations)
    module.load_state_dict(state, strict=True, assign=True)
    if device is not None:
        module.to(device=device)
    return module.eval().requires_grad_(False)


def read_weights_file(path: str, error_type: type[CheckpointError] = CheckpointError, what: str = "FantasyTalking module file") -> dict:
    """The raw top-level mapping of a .safetensors or torch.save file, without executing pickled code; ``error_type``
    (of the module the caller reads) says what went wrong."""
    if not os.path.isfile(path):
        raise error_type(f"{what} not found: '{path}'.")
    try:
        if path.lower().endswith((".safetensors", ".sft")):
            return load_file(path, device="cpu")
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:  # legacy (non-zip) torch.save files cannot be memory-mapped
            if "mmap" not in str(error):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise error_type(
            f"'{os.path.basename(path)}' contains pickled objects other than tensors, which are never executed "
            f"here ({str(error).splitlines()[0]}). Use the official fantasytalking_model.ckpt or a .safetensors "
            "conversion."
        ) from error
    except (SafetensorError, RuntimeError, EOFError, OSError, ValueError) as error:
        raise error_type(
            f"'{os.path.basename(path)}' could not be read as a checkpoint ({type(error).__name__}: {error}). "
            "The file is corrupt or incomplete: download it again."
        ) from error
