"""FantasyTalking for native ComfyUI Wan2.1 workflows.

The pack has one import root: its folder is on the import path, and ``fantasy_core`` (pure PyTorch),
``fantasy_comfy`` (the ComfyUI-side machinery) and ``fantasy_train`` are imported by those names everywhere: by the
node files here, by the training commands, the tests and the benchmarks. Only ``nodes/`` is imported relative to
this file, by ComfyUI alone (CONTRIBUTING.md). ComfyUI calls ``comfy_entrypoint``; nothing of ComfyUI is imported
before, so the folder can be imported outside ComfyUI too.
"""

import logging
import os
import sys

PACK_DIR = os.path.dirname(os.path.realpath(__file__))


def use_pack_folder() -> None:
    """Puts the pack's folder on the import path (last, so ComfyUI's own ``nodes`` and ``utils`` keep winning) and
    refuses a second copy of the pack whose ``fantasy_core`` was imported first."""
    if not any(os.path.realpath(entry or os.getcwd()) == PACK_DIR for entry in sys.path):
        sys.path.append(PACK_DIR)
    import fantasy_core

    found = os.path.dirname(os.path.dirname(os.path.realpath(fantasy_core.__file__)))
    if found != PACK_DIR:
        raise ImportError(
            f"Two copies of the FantasyTalking pack are installed: {found} and {PACK_DIR}. Keep one of "
            "them in ComfyUI/custom_nodes/ and restart ComfyUI."
        )


async def comfy_entrypoint():
    try:
        use_pack_folder()
        from .nodes import comfy_entrypoint as nodes_entrypoint
    except Exception:  # ComfyUI logs only the message; keep the traceback for bug reports
        logging.exception("FantasyTalking: the nodes could not be imported")
        raise
    return await nodes_entrypoint()
