"""The shipped workflows: API files to queue, UI files for the model list (their loaders carry download links)."""

from __future__ import annotations

import json
import os

WORKFLOWS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workflows")
VARIANTS = {
    "standard": "fantasytalking_standard",
    "lowvram": "fantasytalking_lowvram_fp8",
    "fast": "fantasytalking_fast_distilled_lora",
}
LOADER_WIDGETS = {  # loader class -> widget naming its model file
    "UNETLoader": "unet_name",
    "CLIPLoader": "clip_name",
    "VAELoader": "vae_name",
    "CLIPVisionLoader": "clip_name",
    "LoraLoaderModelOnly": "lora_name",
    "FantasyTalkingModelLoader": "model_name",
    "FantasyTalkingWav2VecLoader": "model_name",
}


def _read(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def api_workflow(variant: str) -> dict:
    return _read(os.path.join(WORKFLOWS_DIR, "api", f"{VARIANTS[variant]}.json"))


def required_models(variant: str) -> list[dict]:
    """[{name, url, directory, class_type}] for every model loader of the workflow, from its UI file."""
    ui = _read(os.path.join(WORKFLOWS_DIR, f"{VARIANTS[variant]}.json"))
    models = []
    for node in ui["nodes"]:
        for model in node.get("properties", {}).get("models", []):
            models.append({**model, "class_type": node["type"]})
    return models


def fill(graph: dict, image: str, audio: str, prompt: str | None, seed: int | None, prefix: str) -> dict:
    """Set the user's inputs on the nodes that take them; everything else keeps the workflow's settings."""
    graph = json.loads(json.dumps(graph))
    for node in graph.values():
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "LoadImage":
            inputs["image"] = image
        elif kind == "LoadAudio":
            inputs["audio"] = audio
        elif kind == "CLIPTextEncode" and prompt is not None and "negative" not in node["_meta"]["title"].lower():
            inputs["text"] = prompt
        elif kind == "FantasyTalkingSampler" and seed is not None:
            inputs["seed"] = seed
        elif kind == "SaveVideo":
            inputs["filename_prefix"] = prefix
    return graph
