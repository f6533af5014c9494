"""The one place that finds ComfyUI and imports it outside its server (the training commands, the tests, the
benchmarks, the workflow generator). Standard library only at import time: ``python -m fantasy_comfy.host`` prints
the checkout it finds, so shell scripts use the same rule."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import tempfile
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
PACK_NAME = "fantasytalking-native"  # the folder name under custom_nodes/ the README installs to


class ComfyUINotFoundError(RuntimeError):
    pass


def locate_comfyui(explicit: str | None = None) -> Path | None:
    """``explicit``, $COMFYUI_PATH, the ComfyUI this pack is installed in (ComfyUI/custom_nodes/<pack>), or
    ~/comfy/ComfyUI: the first that holds a main.py; None when none does."""
    candidates = [Path(p) for p in (explicit, os.environ.get("COMFYUI_PATH")) if p]
    if PACK_DIR.parent.name == "custom_nodes":
        candidates.append(PACK_DIR.parent.parent)
    candidates.append(Path.home() / "comfy" / "ComfyUI")
    return next((path.resolve() for path in candidates if (path / "main.py").is_file()), None)


def find_comfyui(explicit: str | None = None) -> Path:
    found = locate_comfyui(explicit)
    if found is None:
        raise ComfyUINotFoundError(
            "No ComfyUI folder was found: pass --comfyui /path/to/ComfyUI or set COMFYUI_PATH (this uses ComfyUI's own "
            "loaders, devices and models folder)."
        )
    return found


def import_comfyui(explicit: str | None = None, comfy_args: str = "") -> Path:
    """ComfyUI's modules, imported as its main.py would with ``comfy_args`` (e.g. '--cpu', '--lowvram'), plus its
    extra_model_paths.yaml. Nothing happens when ComfyUI is already imported (inside a test or a server).

    ComfyUI's folder goes first on the import path: its ``nodes`` module then wins over this pack's ``nodes``
    package, which a working directory inside the pack would otherwise put first."""
    if "comfy.model_management" in sys.modules:
        import folder_paths

        return Path(folder_paths.base_path)
    root = find_comfyui(explicit)
    if str(root) in sys.path:
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))
    import comfy.options

    comfy.options.enable_args_parsing()
    saved = sys.argv
    sys.argv = ["main.py", *shlex.split(comfy_args)]
    try:
        import comfy.cli_args  # noqa: F401  (parses the arguments)
        import comfy.model_management  # noqa: F401
        import utils.extra_config  # ComfyUI's utils package: before anything imports `nodes`
    finally:
        sys.argv = saved
    extra = root / "extra_model_paths.yaml"
    if extra.is_file():
        utils.extra_config.load_extra_path_config(str(extra))
    return root


def comfyui_nodes():
    """ComfyUI's own ``nodes`` module (CLIPTextEncode, VAEDecode, the node registry), after ``import_comfyui``."""
    import nodes

    if Path(nodes.__file__).name != "nodes.py":  # ComfyUI's is one file; this pack's is a package
        raise ImportError(
            f"'nodes' comes from {nodes.__file__}, not from ComfyUI: import ComfyUI with "
            "fantasy_comfy.host.import_comfyui before anything imports 'nodes'."
        )
    return nodes


def load_pack(links_folder: str | None = None) -> dict:
    """ComfyUI's node registry (core, extras and this pack, loaded by ComfyUI's own custom-node loader from a
    custom_nodes folder holding a link to the pack), after ``import_comfyui``."""
    nodes = comfyui_nodes()
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    link = Path(links_folder or tempfile.mkdtemp()) / PACK_NAME
    if not link.exists():
        link.symlink_to(PACK_DIR)
    if not asyncio.run(nodes.load_custom_node(str(link), module_parent="custom_nodes")):
        raise RuntimeError("ComfyUI could not load the pack; see the log above.")
    return nodes.NODE_CLASS_MAPPINGS


if __name__ == "__main__":
    found = locate_comfyui(sys.argv[1] if len(sys.argv) > 1 else None)
    print(found or "")
