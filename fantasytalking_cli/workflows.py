"""The shipped workflows: API files to queue, UI files for the model list (their loaders carry download links)."""

from __future__ import annotations

import json
import os

WORKFLOWS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workflows")
VARIANTS = {
    "standard": "fantasytalking_standard",
    "lowvram": "fantasytalking_lowvram_fp8",
    "fast": "fantasytalking_fast_distilled_lora",
    "long": "fantasytalking_long_video",
}
# the identity and motion workflows are where --identity-module and --motion-* take their nodes from (add_modules)
TEMPLATES = {**VARIANTS, "identity": "fantasytalking_identity", "motion": "fantasytalking_motion"}
ONE_WINDOW_SECONDS = 81 / 23  # the official 81 frames at 23 fps; longer tracks need the long-video workflow


def official_num_frames(seconds: float, fps: float = 23) -> int:
    """The official frame-count rule without the 81 cap (fantasy_core.audio.official_num_frames; no torch here)."""
    return int(fps * seconds // 4) * 4 + 5


def audio_seconds(path: str) -> float | None:
    """Duration of a voice file: WAV through the standard library, anything else through PyAV if installed."""
    import wave

    try:
        with wave.open(path) as f:
            return f.getnframes() / f.getframerate()
    except (wave.Error, EOFError, OSError):
        pass
    try:
        import av

        with av.open(path) as container:
            stream = container.streams.audio[0]
            return float(stream.duration * stream.time_base) if stream.duration else float(container.duration or 0) / 1e6 or None
    except Exception:  # noqa: BLE001 - unknown format or no PyAV: the caller falls back to the long workflow
        return None


def choose_variant(requested: str | None, audio_path: str, max_seconds: float | None) -> str:
    """The requested workflow, or 'standard' for a track of one window and 'long' for anything longer (or unknown)."""
    if requested:
        return requested
    seconds = audio_seconds(audio_path)
    if seconds is not None and max_seconds is not None:
        seconds = min(seconds, max_seconds)
    return "standard" if seconds is not None and seconds <= ONE_WINDOW_SECONDS else "long"


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
    return _read(os.path.join(WORKFLOWS_DIR, "api", f"{TEMPLATES[variant]}.json"))


def required_models(variant: str) -> list[dict]:
    """[{name, url, directory, class_type}] for every model loader of the workflow, from its UI file."""
    ui = _read(os.path.join(WORKFLOWS_DIR, f"{VARIANTS[variant]}.json"))
    models = []
    for node in ui["nodes"]:
        for model in node.get("properties", {}).get("models", []):
            models.append({**model, "class_type": node["type"]})
    return models


def fill(graph: dict, image: str, audio: str, prompt: str | None, seed: int | None, prefix: str, max_seconds: float | None = None) -> dict:
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
        elif kind in ("FantasyTalkingSampler", "FantasyTalkingLongVideo") and seed is not None:
            inputs["seed"] = seed
        elif kind == "FantasyTalkingAudioEmbeds" and max_seconds is not None:
            inputs["max_frames"] = min(inputs["max_frames"], official_num_frames(max_seconds, inputs["fps"]))
        elif kind == "SaveVideo":
            inputs["filename_prefix"] = prefix
    return graph
