"""Identity and motion on any FantasyTalking API workflow: the nodes the shipped identity and motion workflows add
(their loaders, Face Crop and Face Embedding, Motion Intensity, or Load Video and Measure Motion for a reference
clip), copied from those workflows with their settings and wired into the workflow's Apply or Long Video node."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .workflows import api_workflow

TALKING_NODES = ("FantasyTalkingApply", "FantasyTalkingLongVideo")


class GraphError(ValueError):
    pass


@dataclass
class IdentityChoice:
    module: str  # file name in ComfyUI/models/fantasytalking
    arcface: str | None = None  # None: the identity workflow's (buffalo_l/w600k_r50.onnx)
    face_detector: str | None = None  # None: the identity workflow's (mediapipe)
    scale: float | None = None  # λ2; None: the workflow's (0.5)


@dataclass
class MotionChoice:
    module: str
    preset: str | None = None
    omega_lip: float | None = None
    omega_body: float | None = None
    reference_video: str | None = None  # a file in ComfyUI's input folder: ω measured from it on the server
    body_model: str | None = None  # for the measurement; None: Measure Motion's default (mediapipe pose)


def _template(variant: str, class_type: str) -> dict:
    found = [node for node in api_workflow(variant).values() if node["class_type"] == class_type]
    return json.loads(json.dumps(found[0]))


def _add(graph: dict, node: dict) -> str:
    node_id = str(max((int(key) for key in graph if key.isdigit()), default=0) + 1)
    graph[node_id] = node
    return node_id


def _one(graph: dict, class_types: tuple[str, ...], what: str) -> str:
    found = [key for key, node in graph.items() if node["class_type"] in class_types]
    if len(found) != 1:
        raise GraphError(f"the workflow needs exactly one {what} ({' or '.join(class_types)}) to add to; it has {len(found)}.")
    return found[0]


def _chain_loader(graph: dict, talking: str, variant: str, module: str) -> str:
    """A Model Loader for ``module`` combined with what the talking node had (the audio adapter's loader)."""
    loaders = [node for node in api_workflow(variant).values() if node["class_type"] == "FantasyTalkingModelLoader"]
    loader = json.loads(json.dumps(next(node for node in loaders if "fantasytalking_model" in node["inputs"])))
    loader["inputs"]["model_name"] = module
    loader["inputs"]["fantasytalking_model"] = graph[talking]["inputs"]["fantasytalking_model"]
    loader_id = _add(graph, loader)
    graph[talking]["inputs"]["fantasytalking_model"] = [loader_id, 0]
    return loader_id


def add_identity(graph: dict, choice: IdentityChoice) -> dict:
    graph = json.loads(json.dumps(graph))
    talking = _one(graph, TALKING_NODES, "FantasyTalking Apply or Long Video node")
    portrait = _one(graph, ("LoadImage",), "portrait (LoadImage)")
    _chain_loader(graph, talking, "identity", choice.module)
    crop = _template("identity", "FantasyTalkingFaceCrop")
    crop["inputs"]["image"] = [portrait, 0]
    if choice.face_detector:
        crop["inputs"]["detector"] = choice.face_detector
    crop_id = _add(graph, crop)
    embedding = _template("identity", "FantasyTalkingFaceEmbedding")
    embedding["inputs"]["face"] = [crop_id, 0]
    if choice.arcface:
        embedding["inputs"]["arcface_model"] = choice.arcface
    graph[talking]["inputs"]["identity"] = [_add(graph, embedding), 0]
    if choice.scale is not None:
        graph[talking]["inputs"]["identity_scale"] = choice.scale
    return graph


def add_motion(graph: dict, choice: MotionChoice) -> dict:
    graph = json.loads(json.dumps(graph))
    talking = _one(graph, TALKING_NODES, "FantasyTalking Apply or Long Video node")
    loader = _chain_loader(graph, talking, "motion", choice.module)
    if choice.reference_video is not None:
        video = _add(graph, {"class_type": "LoadVideo", "inputs": {"file": choice.reference_video}, "_meta": {"title": "Motion reference"}})
        measure = {
            "video": [video, 0],
            "fps": 25.0,
            "body_model": choice.body_model or "mediapipe pose",
            "fantasytalking_model": [loader, 0],
        }
        node = {"class_type": "FantasyTalkingMeasureMotion", "inputs": measure, "_meta": {"title": "Motion of the reference clip"}}
    else:
        node = _template("motion", "FantasyTalkingMotionIntensity")
        if choice.preset:
            node["inputs"]["preset"] = choice.preset
        if choice.omega_lip is not None or choice.omega_body is not None:
            node["inputs"]["preset"] = "custom"
            node["inputs"]["omega_lip"] = 0.5 if choice.omega_lip is None else choice.omega_lip
            node["inputs"]["omega_body"] = 0.5 if choice.omega_body is None else choice.omega_body
    graph[talking]["inputs"]["motion"] = [_add(graph, node), 0]
    return graph
