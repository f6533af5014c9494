"""ONNX stand-ins for insightface's face models, exported from tiny torch modules with the real signatures.

- ArcFace (w600k_r50.onnx, glintr100.onnx): input [N, 3, 112, 112] float, output [N, 512].
- SCRFD (det_10g.onnx): input [1, 3, H, W] float (H, W dynamic), nine unbatched 2-D outputs in det_10g's order:
  scores [A, 1] for strides 8, 16, 32, then boxes [A, 4], then keypoints [A, 10], with A = (H/s)·(W/s)·2 anchors
  (row by row, two anchors per position). The stand-in ignores the pixels: its outputs encode faces chosen at
  construction, so a test knows what insightface must decode from them, and answers only for reddish images (so
  that a red/blue channel mix-up shows).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

STRIDES = (8, 16, 32)
ANCHORS_PER_POSITION = 2


class ArcFaceStandIn(nn.Module):
    """Convolution, pooling and a linear layer: a 512-wide embedding that depends on every pixel and colour."""

    def __init__(self, seed: int = 0, width: int = 512):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, kernel_size=7, stride=7)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(8 * 4 * 4, width)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)

    def forward(self, x):  # [N, 3, 112, 112] -> [N, width]
        return self.fc(self.pool(torch.tanh(self.conv(x))).flatten(1))


def save_arcface_onnx(path: str, seed: int = 0) -> ArcFaceStandIn:
    """Writes the stand-in and returns the torch module it came from."""
    return export_arcface_onnx(ArcFaceStandIn(seed), path)


def export_arcface_onnx(module: nn.Module, path: str, dynamic_batch: bool = True) -> nn.Module:
    """Any [N, 3, 112, 112] -> [N, D] module; with a dynamic batch axis as insightface's files have, or fixed at 1."""
    module = module.eval()
    _export(
        module,
        (torch.zeros(1, 3, 112, 112),),
        path,
        input_names=["input.1"],
        output_names=["embedding"],
        dynamic_axes={"input.1": {0: "None"}, "embedding": {0: "None"}} if dynamic_batch else None,
    )
    return module


def _export(module: nn.Module, args: tuple, path: str, **names_and_axes) -> None:
    with warnings.catch_warnings():  # torch deprecates the TorchScript exporter; the dynamo one needs onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, args, path, dynamo=False, opset_version=17, **names_and_axes)


@dataclass(frozen=True)
class EncodedFace:
    """A face in detector-input pixels (the image insightface resized and padded to det_size x det_size)."""

    box: tuple[float, float, float, float]
    keypoints: tuple[tuple[float, float], ...]  # five (x, y)
    score: float
    stride: int  # which feature level reports it


class ScrfdStandIn(nn.Module):
    """Per stride, a constant map [rows, cols, anchors, 15] (score, 4 distances, 10 offsets) cropped to the input."""

    def __init__(self, faces: list[EncodedFace], max_size: int = 1024):
        super().__init__()
        for stride in STRIDES:
            cells = max_size // stride
            grid = torch.zeros(cells, cells, ANCHORS_PER_POSITION, 15)
            for face in (f for f in faces if f.stride == stride):
                x0, y0, x1, y1 = face.box
                col, row = round((x0 + x1) / 2 / stride), round((y0 + y1) / 2 / stride)
                ax, ay = col * stride, row * stride  # the anchor centre insightface decodes from
                # insightface multiplies box and keypoint outputs by the stride
                distances = [(ax - x0) / stride, (ay - y0) / stride, (x1 - ax) / stride, (y1 - ay) / stride]
                offsets = [((x - ax) / stride, (y - ay) / stride) for x, y in face.keypoints]
                grid[row, col, 0] = torch.tensor([face.score, *distances, *np.ravel(offsets)])
            self.register_buffer(f"grid{stride}", grid)

    def forward(self, x):  # [1, 3, H, W] -> 9 outputs
        height, width = x.shape[2], x.shape[3]
        # faces are reported only when channel 0 (red in SCRFD's RGB input) outweighs channel 2: a test on a reddish
        # image then fails if the caller hands insightface RGB instead of OpenCV's BGR
        seen_in_rgb = (x[:, 0].mean() > x[:, 2].mean()).float()
        scores, boxes, keypoints = [], [], []
        for stride in STRIDES:
            grid = getattr(self, f"grid{stride}")[: height // stride, : width // stride].reshape(-1, 15)
            scores.append(grid[:, :1] * seen_in_rgb)
            boxes.append(grid[:, 1:5])
            keypoints.append(grid[:, 5:])
        return (*scores, *boxes, *keypoints)


def save_scrfd_onnx(path: str, faces: list[EncodedFace], max_size: int = 1024) -> str:
    names = [f"{kind}_{stride}" for kind in ("score", "bbox", "kps") for stride in STRIDES]
    _export(
        ScrfdStandIn(faces, max_size).eval(),
        (torch.zeros(1, 3, 640, 640),),
        path,
        input_names=["input.1"],
        output_names=names,
        dynamic_axes={"input.1": {2: "?", 3: "?"}, **{name: {0: f"{name}_anchors"} for name in names}},
    )
    return path


def write_model_pack(root: str, faces: list[EncodedFace], pack: str = "buffalo_l", seed: int = 0) -> str:
    """An insightface-style pack folder <root>/models/<pack>/{det_10g.onnx, w600k_r50.onnx}; returns the folder."""
    folder = os.path.join(root, "models", pack)
    os.makedirs(folder, exist_ok=True)
    save_scrfd_onnx(os.path.join(folder, "det_10g.onnx"), faces)
    save_arcface_onnx(os.path.join(folder, "w600k_r50.onnx"), seed)
    return folder


class DWPoseStandIn(nn.Module):
    """DWPose's signature (dw-ll_ucoco_384.onnx): input [1, 3, 384, 288], SimCC outputs simcc_x [1, 133, 576] and
    simcc_y [1, 133, 768] (two bins per model-input pixel). Its keypoints sit at fixed model-input pixels, given at
    construction, so a test knows where rtmlib must map them in the source frame."""

    def __init__(self, keypoints: dict[int, tuple[int, int]], num_keypoints: int = 133, height: int = 384, width: int = 288):
        super().__init__()
        simcc_x = torch.zeros(1, num_keypoints, 2 * width)
        simcc_y = torch.zeros(1, num_keypoints, 2 * height)
        for index, (x, y) in keypoints.items():
            simcc_x[0, index, 2 * x] = 1.0
            simcc_y[0, index, 2 * y] = 1.0
        self.register_buffer("simcc_x", simcc_x)
        self.register_buffer("simcc_y", simcc_y)

    def forward(self, image):
        touch = image.mean() * 0  # the outputs must depend on the input for the exporter to keep it
        return self.simcc_x + touch, self.simcc_y + touch


def export_dwpose_onnx(module: nn.Module, path: str, height: int = 384, width: int = 288) -> str:
    _export(module.eval(), (torch.zeros(1, 3, height, width),), path, input_names=["input"], output_names=["simcc_x", "simcc_y"])
    return path
