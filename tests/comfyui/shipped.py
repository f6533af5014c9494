"""The shipped workflows as tests use them: loading, swapping in the test-only encoders, CPU-sized variants."""

import json
import os

from tiers import PACK_DIR

WORKFLOWS = sorted(name[:-5] for name in os.listdir(PACK_DIR / "workflows") if name.endswith(".json"))
LOADER_FOLDERS = {  # loader class -> (widget holding the file name, models folder)
    "UNETLoader": ("unet_name", "diffusion_models"),
    "CLIPLoader": ("clip_name", "text_encoders"),
    "VAELoader": ("vae_name", "vae"),
    "CLIPVisionLoader": ("clip_name", "clip_vision"),
    "LoraLoaderModelOnly": ("lora_name", "loras"),
    "FantasyTalkingModelLoader": ("model_name", "fantasytalking"),
    "FantasyTalkingWav2VecLoader": ("model_name", "audio_encoders"),
}

# Files no one publishes: users train them (README, "Identity"), so their loaders carry no download link.
NOT_PUBLIC = {"fantasytalking_identity.safetensors", "fantasytalking_motion.safetensors"}


def load(name):
    with open(PACK_DIR / "workflows" / f"{name}.json", encoding="utf-8") as f:
        ui = json.load(f)
    with open(PACK_DIR / "workflows" / "api" / f"{name}.json", encoding="utf-8") as f:
        api = json.load(f)
    return ui, api


def with_test_encoders(api):
    """Swap the full-size text encoder and CLIP vision (which cannot be made tiny) for the test-only nodes."""
    graph = json.loads(json.dumps(api))
    for node_id, node in list(graph.items()):
        if node["class_type"] in ("CLIPLoader", "CLIPVisionLoader"):
            del graph[node_id]
        elif node["class_type"] == "CLIPTextEncode":
            graph[node_id] = {"class_type": "FantasyTalkingTestConditioning", "inputs": {"seed": int(node_id)}}
        elif node["class_type"] == "CLIPVisionEncode":
            graph[node_id] = {"class_type": "FantasyTalkingTestClipVisionOutput", "inputs": {"seed": 3}}
    return graph


def cpu_sized_graph(name, **changes):
    """The shipped API workflow with the test encoders, 9 frames of 64 px and 2 steps."""
    graph = with_test_encoders(load(name)[1])
    for node in graph.values():
        inputs = node["inputs"]
        if node["class_type"] == "FantasyTalkingAudioEmbeds":
            inputs["max_frames"] = changes.get("max_frames", 9)
        elif node["class_type"] == "ImageScaleToMaxDimension":
            inputs["largest_size"] = 64
        elif node["class_type"] in ("FantasyTalkingSampler", "FantasyTalkingLongVideo"):
            inputs["steps"] = changes.get("steps", 2)
        elif node["class_type"] == "FantasyTalkingModelLoader" and "adapter" in changes:
            inputs["model_name"] = changes["adapter"]
        elif node["class_type"] == "SaveVideo":
            inputs["filename_prefix"] = f"shipped/{name}"
    return graph


def cpu_sized(name, tmp_path, **changes):
    """cpu_sized_graph written to a file, for `fantasytalking generate --workflow-file`."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cpu_sized_graph(name, **changes)))
    return str(path)
