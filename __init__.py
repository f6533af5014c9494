"""FantasyTalking for native ComfyUI Wan2.1 workflows.

ComfyUI calls ``comfy_entrypoint``; the nodes (and ComfyUI's own modules) are imported only then, so the pack's
folder can also be imported outside ComfyUI (tests, tools) without pulling in ComfyUI.
"""

import logging


async def comfy_entrypoint():
    try:
        from .nodes import comfy_entrypoint as nodes_entrypoint
    except Exception:  # ComfyUI logs only the message; keep the traceback for bug reports
        logging.exception("FantasyTalking: the nodes could not be imported")
        raise
    return await nodes_entrypoint()
