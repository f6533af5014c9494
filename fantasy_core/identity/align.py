"""ArcFace alignment: a similarity transform maps five face keypoints onto ArcFace's template, then one warp.

The warp runs on torch (``affine_grid`` / ``grid_sample``), so ArcFace needs only onnxruntime, not OpenCV; it follows
OpenCV's ``warpAffine`` conventions (pixel centres at integer coordinates, bilinear, black outside the image), which
is how insightface's ``norm_crop`` makes the crops its ArcFace models were trained on.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Where insightface puts the eyes, nose tip and mouth corners in a 112 x 112 ArcFace crop (ArcFace order).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def arcface_template(size: int = 112) -> np.ndarray:
    """The template for a size x size crop, scaled as insightface does: sizes divisible by 112 scale it by size/112;
    otherwise sizes divisible by 128 scale it by size/128 and shift x by 8 x size/128 (the 112 box centred in 128)."""
    if size > 0 and size % 112 == 0:
        return ARCFACE_TEMPLATE * (size / 112)
    if size > 0 and size % 128 == 0:
        ratio = size / 128
        return ARCFACE_TEMPLATE * ratio + np.array([8 * ratio, 0], dtype=np.float32)
    raise ValueError(f"ArcFace crops must be a multiple of 112 or of 128 pixels wide; got {size}.")


def similarity_transform(src, dst) -> np.ndarray:
    """[D, D+1] matrix M of the rotation, uniform scale and translation (no reflection) that maps the points src [N, D]
    closest to dst [N, D] in least squares (Umeyama 1991), D = 2 or 3: dst ~ M @ (x, y[, z], 1)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] not in (2, 3) or len(src) < 2:
        raise ValueError(f"A similarity transform needs two matching [N, 2] or [N, 3] point sets, N >= 2; got {src.shape} and {dst.shape}.")
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_centred, dst_centred = src - src_mean, dst - dst_mean
    src_variance = (src_centred**2).sum() / len(src)
    if src_variance < 1e-12:
        raise ValueError("The face keypoints all lie at one point, so no alignment can be computed.")
    covariance = dst_centred.T @ src_centred / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    signs = np.ones(src.shape[1])
    signs[-1] = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0  # -1 would be a reflection: undo it
    rotation = u @ np.diag(signs) @ vt
    scale = (singular * signs).sum() / src_variance
    translation = dst_mean - scale * rotation @ src_mean
    return np.concatenate([scale * rotation, translation[:, None]], axis=1)


def align_face(image: np.ndarray, keypoints, size: int = 112) -> np.ndarray:
    """The ArcFace crop, uint8 [size, size, 3], of an image (uint8 [H, W, C]) with five keypoints in ArcFace order:
    destination pixel (x, y) samples the source at M^-1 (x, y, 1), as OpenCV's ``warpAffine`` does."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError("align_face takes a uint8 image array [height, width, channels].")
    matrix = similarity_transform(np.asarray(keypoints, dtype=np.float64).reshape(5, 2), arcface_template(size))
    height, width = image.shape[:2]
    # affine_grid works in normalised coordinates (align_corners=False: -1 and 1 are the outer pixel edges)
    to_source = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
    theta = _pixels_to_normalised(width, height) @ to_source @ np.linalg.inv(_pixels_to_normalised(size, size))
    grid = F.affine_grid(torch.from_numpy(theta[:2]).float()[None], [1, 1, size, size], align_corners=False)
    pixels = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None]
    warped = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _pixels_to_normalised(width: int, height: int) -> np.ndarray:
    """Pixel-centre coordinates (0 .. width-1) -> grid_sample's (-1 + 1/width .. 1 - 1/width)."""
    return np.array([[2 / width, 0, 1 / width - 1], [0, 2 / height, 1 / height - 1], [0, 0, 1]])
