"""The pack's ComfyUI nodes (V3 schema). The maths lives in ``fantasy_core``."""

from comfy_api.latest import ComfyExtension, io


class FantasyTalkingExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return []


async def comfy_entrypoint() -> FantasyTalkingExtension:
    return FantasyTalkingExtension()
