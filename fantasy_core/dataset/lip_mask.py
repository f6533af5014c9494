"""The paper's lip mask M: MediaPipe's outer lip polygon filled per frame in pixels, then trilinear interpolation to
Wan's latent grid (one latent frame for the first frame and per 4 after it, one cell per 8 x 8 pixels)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..frames import latent_frames
from .settings import LATENT_SCALE

# MediaPipe face mesh (478 points): the outer lip contour, in order around the mouth.
OUTER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)


def pixel_lip_masks(lip_polygons, height: int, width: int) -> torch.Tensor:
    """float32 [frames, height, width]: 1 inside each frame's lip polygon ([20, 2] x, y pixels), 0 elsewhere and in
    frames without one (None)."""
    masks = np.zeros((len(lip_polygons), height, width), dtype=np.float32)
    for index, polygon in enumerate(lip_polygons):
        if polygon is None:
            continue
        canvas = Image.new("L", (width, height), 0)
        ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for x, y in polygon], fill=255, outline=255)
        masks[index] = np.asarray(canvas, dtype=np.float32) / 255
    return torch.from_numpy(masks)


def latent_lip_mask(pixel_masks: torch.Tensor) -> torch.Tensor:
    """[frames, H, W] -> [latent frames, H / 8, W / 8] by trilinear interpolation (values in 0..1)."""
    frames, height, width = pixel_masks.shape
    size = (latent_frames(frames), height // LATENT_SCALE, width // LATENT_SCALE)
    return F.interpolate(pixel_masks[None, None].float(), size=size, mode="trilinear", align_corners=False)[0, 0]
