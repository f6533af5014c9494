"""Where the pack and the ComfyUI checkout for the ComfyUI tier are (found by fantasy_comfy.host, as everywhere)."""

from __future__ import annotations

from pathlib import Path

from fantasy_comfy.host import PACK_DIR, locate_comfyui

COMFYUI_SKIP_REASON = (
    "ComfyUI tier skipped: no ComfyUI checkout found. Set COMFYUI_PATH=/path/to/ComfyUI (v0.3.64 or newer), "
    "install this pack in ComfyUI/custom_nodes/, or put a checkout at ~/comfy/ComfyUI; then run `bash scripts/test.sh`."
)

__all__ = ["COMFYUI_SKIP_REASON", "PACK_DIR", "find_comfyui"]


def find_comfyui() -> Path | None:
    return locate_comfyui()
