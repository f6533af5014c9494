"""The pack's ComfyUI nodes (V3 schema). The maths lives in ``fantasy_core``; every hook on the Wan model lives in
``patch.py``."""

from comfy_api.latest import ComfyExtension, io

from .conditioning import FantasyTalkingApply, FantasyTalkingAudioEmbeds
from .folders import register_folders
from .loaders import FantasyTalkingModelLoader, FantasyTalkingWav2VecLoader
from .sampling import FantasyTalkingCFGGuider, FantasyTalkingSampler

NODES = [
    FantasyTalkingModelLoader,
    FantasyTalkingWav2VecLoader,
    FantasyTalkingAudioEmbeds,
    FantasyTalkingApply,
    FantasyTalkingCFGGuider,
    FantasyTalkingSampler,
]


class FantasyTalkingExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> FantasyTalkingExtension:
    register_folders()
    return FantasyTalkingExtension()
