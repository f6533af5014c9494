"""A real ComfyUI in this process with the pack loaded by ComfyUI's own custom-node loader (for the workflow
generator and the benchmarks; the tests have the same as pytest fixtures)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the pack's import root

from fantasy_comfy.host import import_comfyui, load_pack  # noqa: E402


def load_comfyui_with_pack(comfyui_path: str | None = None, cpu: bool = True, options: tuple[str, ...] = ()) -> dict:
    """ComfyUI's NODE_CLASS_MAPPINGS (core, extras and this pack), started with --cpu unless ``cpu`` is False (then on
    the GPU ComfyUI finds) and with ComfyUI's command-line ``options``."""
    import_comfyui(comfyui_path, " ".join([*(["--cpu"] if cpu else []), *options]))
    return load_pack()
