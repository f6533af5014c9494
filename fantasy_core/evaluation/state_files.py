"""Reading a metric network's published state-dict file and checking it against the network's layout, with the
refusal each loader words for its own file (``refuse(path, problem)`` raises)."""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable

import torch

from ..weights import all_finite

COUNTER = "num_batches_tracked"  # BatchNorm's training counter: unused in eval, absent from some exports


def read_state(path: str, refuse: Callable[[str, str], None]):
    """torch.load with weights_only=True (never pickled code), or safetensors for .safetensors."""
    if not os.path.isfile(path):
        refuse(path, "the file does not exist")
    try:
        if path.lower().endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        blocked = re.search(r"GLOBAL (\S+)", str(error))  # the pickled class, without torch's advice to allow it
        found = f" ({blocked.group(1)})" if blocked else ""
        refuse(path, f"it holds pickled objects other than tensors{found}, which are never executed here")
    except Exception as error:  # torch and safetensors raise several types for a truncated or foreign file
        reason = str(error).strip().split(". ")[0]  # torch's later sentences suggest weights_only=False
        refuse(path, f"it could not be read as a state dict ({type(error).__name__}: {reason}): another kind of file or a partial download")


def listed(keys, limit: int = 4) -> str:
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_layout(path: str, state, expected: dict[str, torch.Size], refuse: Callable[[str, str], None]) -> None:
    """Every expected key present with its shape, nothing unexpected (BatchNorm counters aside), floats, finite."""
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        refuse(path, f"it holds a {type(state).__name__}, not a state dict of tensors")
    missing = [key for key in expected if key not in state]
    unexpected = sorted(key for key in state if key not in expected and not key.endswith(COUNTER))
    wrong = [
        f"{key} {list(state[key].shape)} (expected {list(shape)})"
        for key, shape in expected.items()
        if key in state and state[key].shape != shape
    ]
    if missing or unexpected or wrong:
        problems = [f"{len(missing)} missing ({listed(missing)})"] if missing else []
        problems += [f"{len(unexpected)} unexpected ({listed(unexpected)})"] if unexpected else []
        problems += [f"{len(wrong)} of the wrong shape ({listed(wrong)})"] if wrong else []
        refuse(path, "weights of another layout: " + "; ".join(problems))
    for key in expected:
        if not state[key].is_floating_point():
            refuse(path, f"{key} is {state[key].dtype}, not a float tensor")
        if not all_finite(state[key]):
            refuse(path, f"{key} holds NaN or infinite values: the file is damaged")
