"""Writes the shipped workflows from one description: workflows/*.json (UI format, for dragging into ComfyUI and the
template browser) and workflows/api/*.json (API format, for POST /prompt and `fantasytalking generate`); the
examples that score a video rather than make one go to workflows/evaluation/ (and its api/).

Widget order comes from the node definitions of a real ComfyUI with the pack loaded (COMFYUI_PATH or
~/comfy/ComfyUI), so the UI files match what the frontend expects. Run it with the test environment:

    ~/.cache/fantasytalking-nodes/venv/bin/python scripts/build_workflows.py
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass, field

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PACK_DIR)
from fantasy_core.guidance import OFFICIAL_NEGATIVE_PROMPT  # noqa: E402 (after the pack's folder is on the path)

WORKFLOWS_DIR = os.path.join(PACK_DIR, "workflows")
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}

REPACK = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files"
MODELS = {
    "wan_bf16": (
        "wan2.1_i2v_720p_14B_bf16.safetensors",
        f"{REPACK}/diffusion_models/wan2.1_i2v_720p_14B_bf16.safetensors",
        "diffusion_models",
    ),
    "wan_fp8": (
        "wan2.1_i2v_720p_14B_fp8_e4m3fn.safetensors",
        f"{REPACK}/diffusion_models/wan2.1_i2v_720p_14B_fp8_e4m3fn.safetensors",
        "diffusion_models",
    ),
    "umt5": ("umt5_xxl_fp8_e4m3fn_scaled.safetensors", f"{REPACK}/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders"),
    "vae": ("wan_2.1_vae.safetensors", f"{REPACK}/vae/wan_2.1_vae.safetensors", "vae"),
    "clip_vision": ("clip_vision_h.safetensors", f"{REPACK}/clip_vision/clip_vision_h.safetensors", "clip_vision"),
    # The fp16 repack of the official weights: ComfyUI's Missing Models dialog downloads only .safetensors files.
    "adapter": (
        "fantasytalking_fp16.safetensors",
        "https://huggingface.co/Kijai/WanVideo_comfy/resolve/main/fantasytalking_fp16.safetensors",
        "fantasytalking",
    ),
    "wav2vec": (
        "wav2vec2-base-960h.safetensors",
        "https://huggingface.co/facebook/wav2vec2-base-960h/resolve/main/model.safetensors",
        "audio_encoders",
    ),
    # No public identity weights exist: users train them (README, "Identity"); the loader carries no download link.
    "identity": ("fantasytalking_identity.safetensors", None, "fantasytalking"),
    "motion": ("fantasytalking_motion.safetensors", None, "fantasytalking"),
    "lightx2v": (
        "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors",
        "https://huggingface.co/Kijai/WanVideo_comfy/resolve/main/Lightx2v/lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors",
        "loras",
    ),
}


@dataclass
class Node:
    id: int
    type: str
    title: str
    group: str
    widgets: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)  # input name -> (source node id, output slot)
    model: str | None = None  # key of MODELS, for the Missing Models dialog


GROUPS = {  # title -> (x, y, colour); nodes are laid out in columns inside their group
    "1. Your inputs: portrait, voice, prompt": (0, 0, "#3f789e"),
    "2. Models (download links in each loader)": (0, 620, "#8A8"),
    "3. FantasyTalking audio": (700, 0, "#a1309b"),
    "4. Image-to-video conditioning": (700, 620, "#b58b2a"),
    "5. Sampling (official settings)": (1400, 0, "#88A"),
    "6. Output video": (1400, 620, "#444"),
    "7. Identity: main face -> ArcFace (insightface pack, see README)": (2100, 0, "#2a7f62"),
    "7. Motion intensity: how much the speaker moves (see README)": (2100, 0, "#7f5a2a"),
    "1. The clip to score: a talking video with its voice": (0, 0, "#3f789e"),
    "2. Lip sync score (SyncNet weights in models/evaluation)": (700, 0, "#a1309b"),
    "1. The clip to score and the portrait it was made from": (0, 0, "#3f789e"),
    "2. Identity consistency (DINO folder in models/evaluation)": (700, 0, "#2a7f62"),
}
INPUTS, MODELS_GROUP, AUDIO, CONDITIONING, SAMPLING, OUTPUT, IDENTITY, MOTION, SCORED_CLIP, SCORE, CLIP_AND_PORTRAIT, IDC = GROUPS


def talking_portrait(variant: str) -> list[Node]:
    """standard: bf16 Wan, official settings; lowvram: fp8 Wan weights; fast: + distilled LoRA, 4 steps at cfg 1."""
    wan = "wan_fp8" if variant in ("lowvram", "fast") else "wan_bf16"
    steps, cfg, audio_cfg = (4, 1.0, 2.0) if variant == "fast" else (30, 5.0, 4.5)
    nodes = [
        Node(1, "LoadImage", "Portrait", INPUTS, {"image": "portrait.png"}),
        Node(2, "LoadAudio", "Voice", INPUTS, {"audio": "speech.wav"}),
        Node(3, "CLIPTextEncode", "Prompt", INPUTS, {"text": "A woman is talking."}, {"clip": (11, 0)}),
        Node(4, "CLIPTextEncode", "Negative prompt (official)", INPUTS, {"text": OFFICIAL_NEGATIVE_PROMPT}, {"clip": (11, 0)}),
        Node(10, "UNETLoader", "Wan2.1 I2V 14B", MODELS_GROUP, {"unet_name": MODELS[wan][0], "weight_dtype": "default"}, model=wan),
        Node(
            11,
            "CLIPLoader",
            "Text encoder (umt5-xxl)",
            MODELS_GROUP,
            {"clip_name": MODELS["umt5"][0], "type": "wan", "device": "default"},
            model="umt5",
        ),
        Node(12, "VAELoader", "Wan VAE", MODELS_GROUP, {"vae_name": MODELS["vae"][0]}, model="vae"),
        Node(13, "CLIPVisionLoader", "CLIP vision (ViT-H)", MODELS_GROUP, {"clip_name": MODELS["clip_vision"][0]}, model="clip_vision"),
        Node(
            14,
            "FantasyTalkingModelLoader",
            "FantasyTalking adapter",
            MODELS_GROUP,
            {"model_name": MODELS["adapter"][0], "weight_dtype": "default"},
            model="adapter",
        ),
        Node(15, "FantasyTalkingWav2VecLoader", "wav2vec2-base-960h", MODELS_GROUP, {"model_name": MODELS["wav2vec"][0]}, model="wav2vec"),
        Node(
            20,
            "FantasyTalkingAudioEmbeds",
            "Audio embeds (23 fps, 81 frames)",
            AUDIO,
            {"fps": 23, "max_frames": 81},
            {"audio": (2, 0), "audio_encoder": (15, 0)},
        ),
        Node(
            21,
            "FantasyTalkingApply",
            "FantasyTalking Apply (positive hears the voice)",
            AUDIO,
            {"audio_scale": 1.0, "identity_scale": 0.5, "identity_guidance": False, "motion_guidance": False},
            {
                "model": (16 if variant == "fast" else 10, 0),
                "fantasytalking_model": (14, 0),
                "audio_embeds": (20, 0),
                "positive": (33, 0),
                "negative": (33, 1),
            },
        ),
        Node(
            30,
            "ImageScaleToMaxDimension",
            "Longest side 512 (official)",
            CONDITIONING,
            {"upscale_method": "lanczos", "largest_size": 512},
            {"image": (1, 0)},
        ),
        Node(31, "GetImageSize", "Video size", CONDITIONING, {}, {"image": (30, 0)}),
        Node(
            32,
            "CLIPVisionEncode",
            "CLIP vision (crop none, official)",
            CONDITIONING,
            {"crop": "none"},
            {"clip_vision": (13, 0), "image": (30, 0)},
        ),
        Node(
            33,
            "WanImageToVideo",
            "Wan image-to-video",
            CONDITIONING,
            {"width": 512, "height": 512, "length": 81, "batch_size": 1},
            {
                "positive": (3, 0),
                "negative": (4, 0),
                "vae": (12, 0),
                "clip_vision_output": (32, 0),
                "start_image": (30, 0),
                "width": (31, 0),
                "height": (31, 1),
                "length": (20, 1),
            },
        ),
        Node(
            40,
            "FantasyTalkingSampler",
            "FantasyTalking Sampler",
            SAMPLING,
            {
                "seed": 1111,
                "steps": steps,
                "cfg": cfg,
                "audio_cfg": audio_cfg,
                "sampler_name": "euler",
                "scheduler": "fantasytalking",
                "denoise": 1.0,
                "shift": 5.0,
            },
            {"model": (21, 0), "positive": (21, 1), "negative": (21, 2), "latent_image": (33, 2)},
        ),
        Node(50, "VAEDecode", "Decode", OUTPUT, {}, {"samples": (40, 0), "vae": (12, 0)}),
        Node(51, "CreateVideo", "Video with the voice", OUTPUT, {"fps": 23.0}, {"images": (50, 0), "fps": (20, 2), "audio": (20, 3)}),
        Node(
            52,
            "SaveVideo",
            "Save MP4",
            OUTPUT,
            {"filename_prefix": "video/FantasyTalking", "format": "mp4", "codec": "h264"},
            {"video": (51, 0)},
        ),
    ]
    if variant == "fast":
        nodes.append(
            Node(
                16,
                "LoraLoaderModelOnly",
                "Distilled LoRA (4 steps, cfg 1)",
                MODELS_GROUP,
                {"lora_name": MODELS["lightx2v"][0], "strength_model": 1.0},
                {"model": (10, 0)},
                model="lightx2v",
            )
        )
    return nodes


def long_talking_portrait() -> list[Node]:
    """The whole voice track as overlapping 81-frame segments, streamed to one MP4 (fp8 Wan weights)."""
    short = {n.id: n for n in talking_portrait("lowvram")}
    keep = [short[i] for i in (1, 2, 3, 4, 10, 11, 12, 13, 14, 15, 30, 31, 32)]
    short[20].widgets["max_frames"] = 100001
    short[20].title = "Audio embeds (23 fps, whole track)"
    return keep + [
        short[20],
        Node(
            41,
            "FantasyTalkingLongVideo",
            "Long video (81-frame segments, 13 overlap)",
            SAMPLING,
            {
                "audio_scale": 1.0,
                "width": 512,
                "height": 512,
                "segment_frames": 81,
                "overlap_frames": 13,
                "seed": 1111,
                "steps": 30,
                "cfg": 5.0,
                "audio_cfg": 4.5,
                "sampler_name": "euler",
                "scheduler": "fantasytalking",
                "shift": 5.0,
                "color_match": 1.0,
                "identity_scale": 0.5,
                "identity_guidance": False,
                "motion_guidance": False,
            },
            {
                "model": (10, 0),
                "fantasytalking_model": (14, 0),
                "audio_embeds": (20, 0),
                "positive": (3, 0),
                "negative": (4, 0),
                "vae": (12, 0),
                "clip_vision_output": (32, 0),
                "start_image": (30, 0),
                "width": (31, 0),
                "height": (31, 1),
                "audio": (20, 3),
            },
        ),
        Node(
            52,
            "SaveVideo",
            "Save MP4",
            OUTPUT,
            {"filename_prefix": "video/FantasyTalking_long", "format": "mp4", "codec": "h264"},
            {"video": (41, 0)},
        ),
    ]


def talking_portrait_with_identity() -> list[Node]:
    """The standard workflow plus the identity module: the portrait's main face, its ArcFace embedding, and an identity
    file chained to the audio adapter's loader."""
    nodes = {n.id: n for n in talking_portrait("standard")}
    nodes[21].links["fantasytalking_model"] = (17, 0)
    nodes[21].links["identity"] = (61, 0)
    nodes[21].title = "FantasyTalking Apply (voice + identity)"
    return [
        *nodes.values(),
        Node(
            17,
            "FantasyTalkingModelLoader",
            "FantasyTalking identity (trained: see README)",
            MODELS_GROUP,
            {"model_name": MODELS["identity"][0], "weight_dtype": "default"},
            {"fantasytalking_model": (14, 0)},
        ),
        Node(
            60,
            "FantasyTalkingFaceCrop",
            "Main face of the portrait",
            IDENTITY,
            {"detector": "mediapipe", "margin": 0.3, "min_face_size": 64, "crop_size": 512},
            {"image": (1, 0)},
        ),
        Node(
            61,
            "FantasyTalkingFaceEmbedding",
            "ArcFace embedding (buffalo_l)",
            IDENTITY,
            {"arcface_model": "buffalo_l/w600k_r50.onnx", "device": "auto"},
            {"face": (60, 0)},
        ),
        Node(62, "PreviewImage", "Which face was chosen", IDENTITY, {}, {"images": (60, 1)}),
    ]


def talking_portrait_with_motion() -> list[Node]:
    """The standard workflow plus the motion module: ω_l and ω_b (the paper's presets or sliders), and a motion file
    chained to the audio adapter's loader. 'FantasyTalking Measure Motion' can replace the intensity node."""
    nodes = {n.id: n for n in talking_portrait("standard")}
    nodes[21].links["fantasytalking_model"] = (18, 0)
    nodes[21].links["motion"] = (70, 0)
    nodes[21].title = "FantasyTalking Apply (voice + motion)"
    return [
        *nodes.values(),
        Node(
            18,
            "FantasyTalkingModelLoader",
            "FantasyTalking motion (trained: see README)",
            MODELS_GROUP,
            {"model_name": MODELS["motion"][0], "weight_dtype": "default"},
            {"fantasytalking_model": (14, 0)},
        ),
        Node(
            70,
            "FantasyTalkingMotionIntensity",
            "Motion intensity (subtle 0.1 / natural 0.5 / intense 1.0)",
            MOTION,
            {"preset": "custom", "omega_lip": 0.5, "omega_body": 0.5},
        ),
    ]


def lip_sync_score() -> list[Node]:
    """A video (e.g. one the talking-portrait workflows saved, copied into ComfyUI's input folder) scored by SyncNet:
    Sync-C, Sync-D and the offset in the report, the distances in the plot. In a generating workflow, connect Create
    Video's VIDEO to the score node instead of Load Video's to compare seeds and settings."""
    return [
        Node(1, "LoadVideo", "Talking video (with its voice)", SCORED_CLIP, {"file": "talking.mp4"}),
        Node(
            2,
            "FantasyTalkingLipSyncScore",
            "Lip sync score (Sync-C, Sync-D, offset)",
            SCORE,
            {"syncnet": "syncnet_v2.model", "fps": 25.0, "on_unscorable": "error", "min_track": 50, "min_face_size": 50},
            {"video": (1, 0)},
        ),
        Node(3, "PreviewImage", "Distance per offset and per window", SCORE, {}, {"images": (2, 3)}),
        Node(4, "PreviewAny", "Report", SCORE, {}, {"source": (2, 4)}),
    ]


def identity_consistency() -> list[Node]:
    """A video scored against the portrait it was made from (both copied into ComfyUI's input folder): IDC in the report,
    each frame's similarities in the plot, and the faces DINO saw. In a generating workflow, connect Create Video's VIDEO
    (or VAE Decode's IMAGE) and the portrait's Load Image to compare seeds and settings."""
    return [
        Node(1, "LoadVideo", "Talking video", CLIP_AND_PORTRAIT, {"file": "talking.mp4"}),
        Node(2, "LoadImage", "Portrait it was made from", CLIP_AND_PORTRAIT, {"image": "portrait.png"}),
        Node(
            3,
            "FantasyTalkingIdentityConsistency",
            "Identity consistency (IDC)",
            IDC,
            {"dino": "dino-vitb16", "reference": "portrait", "min_face_size": 50, "crop_margin": 0.3, "on_unscorable": "error"},
            {"portrait": (2, 0), "video": (1, 0)},
        ),
        Node(4, "PreviewImage", "Similarity per frame", IDC, {}, {"images": (3, 1)}),
        Node(5, "PreviewImage", "Faces scored (the portrait's first)", IDC, {}, {"images": (3, 2)}),
        Node(6, "PreviewAny", "Report", IDC, {}, {"source": (3, 3)}),
    ]


WORKFLOWS = {
    "fantasytalking_standard": talking_portrait("standard"),
    "fantasytalking_identity": talking_portrait_with_identity(),
    "fantasytalking_motion": talking_portrait_with_motion(),
    "fantasytalking_long_video": long_talking_portrait(),
    "fantasytalking_lowvram_fp8": talking_portrait("lowvram"),
    "fantasytalking_fast_distilled_lora": talking_portrait("fast"),
}
# Not template-browser material: they make no video and need no Wan model (the template browser lists workflows/*.json).
EVALUATION_DIR = os.path.join(WORKFLOWS_DIR, "evaluation")
EVALUATION_WORKFLOWS = {
    "fantasytalking_lipsync_score": lip_sync_score(),
    "fantasytalking_identity_consistency": identity_consistency(),
}


def input_specs(info: dict) -> list[tuple[str, list]]:
    return [
        (name, info["input"][section][name])
        for section in ("required", "optional")
        for name in info.get("input_order", {}).get(section, [])
    ]


def is_widget(spec: list) -> bool:
    """Inputs the frontend shows as widgets (and stores in widgets_values): combos and plain values."""
    options = spec[1] if len(spec) > 1 else {}
    return not options.get("forceInput", False) and (isinstance(spec[0], list) or spec[0] in WIDGET_TYPES)


def widget_values(node: Node, info: dict) -> list:
    values = []
    for name, spec in input_specs(info):
        if not is_widget(spec):
            continue
        options = spec[1] if len(spec) > 1 else {}
        if name not in node.widgets:
            raise ValueError(f"node {node.id} ({node.type}) sets no value for its widget '{name}'")
        values.append(node.widgets[name])
        if options.get("control_after_generate"):
            values.append("fixed")
        if options.get("image_upload") or options.get("video_upload"):
            values.append("image")  # the upload button's value, as the frontend saves it (for video files too)
        if options.get("audio_upload"):
            values.extend([None, None])
    return values


def to_api(nodes: list[Node]) -> dict:
    return {
        str(n.id): {
            "class_type": n.type,
            "inputs": {
                **{k: v for k, v in n.widgets.items() if k not in n.links},
                **{k: [str(s), slot] for k, (s, slot) in n.links.items()},
            },
            "_meta": {"title": n.title},
        }
        for n in nodes
    }


def to_ui(name: str, nodes: list[Node], object_info: dict) -> dict:
    links, ui_nodes = [], []
    outgoing: dict[tuple[int, int], list[int]] = {}
    for target in nodes:
        for name, (source, slot) in target.links.items():
            link_id = len(links) + 1
            names = [n for n, _ in input_specs(object_info[target.type])]
            source_type = next(n for n in nodes if n.id == source).type
            links.append([link_id, source, slot, target.id, None, object_info[source_type]["output"][slot], name])
            outgoing.setdefault((source, slot), []).append(link_id)
            assert name in names, f"{target.type} has no input {name}"
    column_of: dict[str, int] = {}
    for order, node in enumerate(sorted(nodes, key=lambda n: n.id)):
        info = object_info[node.type]
        inputs = []
        for name, spec in input_specs(info):
            link = next((entry for entry in links if entry[3] == node.id and entry[6] == name), None)
            if is_widget(spec) and link is None:
                continue
            entry = {"name": name, "type": spec[0] if isinstance(spec[0], str) else "COMBO", "link": link[0] if link else None}
            if is_widget(spec):
                entry["widget"] = {"name": name}
            if link:
                link[4] = len(inputs)
            inputs.append(entry)
        outputs = [
            {"name": out_name, "type": out_type, "links": outgoing.get((node.id, slot), []), "slot_index": slot}
            for slot, (out_type, out_name) in enumerate(zip(info["output"], info["output_name"]))
        ]
        gx, gy, _ = GROUPS[node.group]
        index = column_of[node.group] = column_of.get(node.group, -1) + 1
        properties = {"Node name for S&R": node.type}
        if node.model and MODELS[node.model][1]:
            name, url, directory = MODELS[node.model]
            properties["models"] = [{"name": name, "url": url, "directory": directory}]
        ui_nodes.append(
            {
                "id": node.id,
                "type": node.type,
                "title": node.title,
                "pos": [gx + 20 + 330 * (index % 2), gy + 50 + 130 * (index // 2)],
                "size": [310, 110],
                "flags": {},
                "order": order,
                "mode": 0,
                "inputs": inputs,
                "outputs": outputs,
                "properties": properties,
                "widgets_values": widget_values(node, info),
            }
        )
    used = [(title, place) for title, place in GROUPS.items() if any(node.group == title for node in nodes)]  # no empty groups
    groups = [
        {"id": i + 1, "title": title, "bounding": [x, y, 680, 600], "color": colour, "font_size": 24, "flags": {}}
        for i, (title, (x, y, colour)) in enumerate(used)
    ]
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"fantasytalking-native/{name}")),
        "revision": 0,
        "last_node_id": max(n.id for n in nodes),
        "last_link_id": len(links),
        "nodes": ui_nodes,
        "links": [entry[:6] for entry in links],
        "groups": groups,
        "config": {},
        "extra": {"ds": {"scale": 0.7, "offset": [60, 120]}},
        "version": 0.4,
    }


def object_info_from_comfyui() -> dict:
    from comfyui_host import load_comfyui_with_pack

    node_classes = load_comfyui_with_pack()
    info = {}
    for name, cls in node_classes.items():
        if hasattr(cls, "GET_NODE_INFO_V1"):  # V3 nodes
            info[name] = cls.GET_NODE_INFO_V1()
        else:
            types = cls.INPUT_TYPES()
            info[name] = {
                "input": types,
                "input_order": {k: list(v) for k, v in types.items()},
                "output": list(cls.RETURN_TYPES),
                "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
            }
    return info


def main() -> None:
    object_info = object_info_from_comfyui()
    written = [(WORKFLOWS_DIR, name, nodes) for name, nodes in WORKFLOWS.items()]
    written += [(EVALUATION_DIR, name, nodes) for name, nodes in EVALUATION_WORKFLOWS.items()]
    for folder, name, nodes in written:
        os.makedirs(os.path.join(folder, "api"), exist_ok=True)
        for path, content in (
            (os.path.join(folder, f"{name}.json"), to_ui(name, nodes, object_info)),
            (os.path.join(folder, "api", f"{name}.json"), to_api(nodes)),
        ):
            with open(path, "w", encoding="utf-8") as f:
                json.dump(content, f, indent=1, ensure_ascii=False)
                f.write("\n")
            print(f"wrote {os.path.relpath(path, PACK_DIR)}")


if __name__ == "__main__":
    main()
