"""Importing ComfyUI outside its server (its own loaders, devices and model folders) and this pack's ComfyUI-side
modules (``nodes.*``), which the pack imports relative to itself."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shlex
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
PACK_PACKAGE = "fantasytalking_native"  # the name the pack's own modules are imported under here


class ComfyUINotFoundError(RuntimeError):
    pass


def find_comfyui(explicit: str | None = None) -> Path:
    candidates = [Path(p) for p in (explicit, os.environ.get("COMFYUI_PATH")) if p]
    if PACK_DIR.parent.name == "custom_nodes":
        candidates.append(PACK_DIR.parent.parent)
    candidates.append(Path.home() / "comfy" / "ComfyUI")
    for path in candidates:
        if (path / "main.py").is_file():
            return path.resolve()
    raise ComfyUINotFoundError(
        "No ComfyUI folder was found: pass --comfyui /path/to/ComfyUI or set COMFYUI_PATH (the data preparation uses "
        "ComfyUI's own VAE, text-encoder and CLIP-vision loaders and its models folder)."
    )


def import_comfyui(explicit: str | None = None, comfy_args: str = "") -> Path:
    """ComfyUI's modules, imported as its main.py would with ``comfy_args`` (e.g. '--cpu', '--lowvram'), plus its
    extra_model_paths.yaml. Nothing happens when ComfyUI is already imported (inside a test or a server)."""
    if "comfy.model_management" in sys.modules:
        import folder_paths

        return Path(folder_paths.base_path)
    root = find_comfyui(explicit)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import comfy.options

    comfy.options.enable_args_parsing()
    saved = sys.argv
    sys.argv = ["main.py", *shlex.split(comfy_args)]
    try:
        import comfy.cli_args
        import comfy.model_management
        import utils.extra_config  # must come before `nodes` shadows `utils`
    finally:
        sys.argv = saved
    extra = root / "extra_model_paths.yaml"
    if extra.is_file():
        utils.extra_config.load_extra_path_config(str(extra))
    return root


def pack_module(name: str):
    """This pack's ``name`` module (e.g. 'nodes.wav2vec'), imported as part of the pack so its relative imports work."""
    if PACK_PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK_PACKAGE, PACK_DIR / "__init__.py", submodule_search_locations=[str(PACK_DIR)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACK_PACKAGE] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{PACK_PACKAGE}.{name}")


def comfyui_core_nodes():
    """ComfyUI's own ``nodes`` module (CLIPTextEncode, VAEDecode, ...), not this pack's ``nodes`` package, which a
    working directory inside the pack would put first on the import path."""
    loaded = sys.modules.get("nodes")
    origin = getattr(loaded, "__file__", None) if loaded is not None else getattr(importlib.util.find_spec("nodes"), "origin", None)
    if origin is None or Path(origin).name != "nodes.py":  # ComfyUI's is one file; this pack's is a package
        raise ImportError(f"'nodes' comes from {origin or 'nowhere'}, not from ComfyUI: put the ComfyUI folder before this "
                          "pack's folder on the import path (run from the pack folder with -m, or pass --comfyui).")
    return importlib.import_module("nodes")
