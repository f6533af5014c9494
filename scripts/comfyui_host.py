"""A real ComfyUI in this process with the pack loaded by ComfyUI's own custom-node loader (for the workflow
generator and the benchmarks; the tests have the same as pytest fixtures)."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_comfyui_with_pack(comfyui_path: str | None = None, cpu: bool = True, options: tuple[str, ...] = ()) -> dict:
    """ComfyUI's NODE_CLASS_MAPPINGS (core, extras and this pack), started with --cpu unless ``cpu`` is False (then on
    the GPU ComfyUI finds) and with ComfyUI's command-line ``options``."""
    comfyui_path = comfyui_path or os.environ.get("COMFYUI_PATH") or os.path.expanduser("~/comfy/ComfyUI")
    sys.path.insert(0, comfyui_path)
    import comfy.options

    comfy.options.enable_args_parsing()
    sys.argv = ["main.py", *(["--cpu"] if cpu else []), *options]
    import comfy.cli_args  # noqa: F401
    import utils.extra_config  # noqa: F401  (must precede `nodes`, which shadows `utils`)
    import nodes

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    links = tempfile.mkdtemp()
    os.symlink(PACK_DIR, os.path.join(links, "fantasytalking-native"))
    if not asyncio.run(nodes.load_custom_node(os.path.join(links, "fantasytalking-native"))):
        raise RuntimeError("ComfyUI could not load the pack; see the log above.")
    return nodes.NODE_CLASS_MAPPINGS
