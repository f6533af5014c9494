"""Where the pack and the ComfyUI checkout for the ComfyUI tier are."""

from __future__ import annotations

import os
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
COMFYUI_SKIP_REASON = (
    "ComfyUI tier skipped: no ComfyUI checkout found. Set COMFYUI_PATH=/path/to/ComfyUI (v0.3.64 or newer), "
    "install this pack in ComfyUI/custom_nodes/, or put a checkout at ~/comfy/ComfyUI; then run `bash scripts/test.sh`."
)


def find_comfyui() -> Path | None:
    candidates = []
    if os.environ.get("COMFYUI_PATH"):
        candidates.append(Path(os.environ["COMFYUI_PATH"]))
    if PACK_DIR.parent.name == "custom_nodes":
        candidates.append(PACK_DIR.parent.parent)
    candidates.append(Path.home() / "comfy" / "ComfyUI")
    return next((path.resolve() for path in candidates if (path / "main.py").is_file()), None)
