"""Synthetic talking clips made from a real face (``skimage.data.astronaut()``) with known motion: expression (the lower
lip and the upper eyelids pulled by a smooth warp), head motion (the whole picture shifted, zoomed or turned) and body
motion (everything below the chin shifted), each with an amplitude in pixels of the 512 x 512 source."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

SIZE = 512
FPS = 10.0


@lru_cache(maxsize=1)
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@lru_cache(maxsize=1)
def face_points() -> dict[str, np.ndarray]:
    """Where the astronaut's features are, from MediaPipe's face mesh on the still image (x, y pixels)."""
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as mesh:
        landmarks = mesh.process(astronaut()).multi_face_landmarks[0].landmark
    point = lambda i: np.array([landmarks[i].x * SIZE, landmarks[i].y * SIZE])
    return {
        "lower_lip": point(17),
        "mouth_left": point(61),
        "mouth_right": point(291),
        "left_lid": point(159),
        "right_lid": point(386),
        "chin": point(152),
        "nose": point(1),
        "left_eye": point(33),
        "right_eye": point(263),
    }


def _grid() -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(SIZE, dtype=torch.float64), torch.arange(SIZE, dtype=torch.float64), indexing="ij")
    return xs, ys


def _bump(centre, sigma: float) -> torch.Tensor:
    xs, ys = _grid()
    return torch.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))


def _warp(image: np.ndarray, source_x: torch.Tensor, source_y: torch.Tensor) -> np.ndarray:
    """Output pixel (x, y) takes the source at (source_x, source_y), bilinear, edges repeated."""
    grid = torch.stack([(2 * source_x + 1) / SIZE - 1, (2 * source_y + 1) / SIZE - 1], -1)[None].float()
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    out = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _phase(t: int, hz: float) -> float:
    return math.sin(2 * math.pi * hz * t / FPS)


def clip(
    frames: int = 24,
    expression: float = 0.0,
    shift: float = 0.0,
    zoom: float = 0.0,
    turn_degrees: float = 0.0,
    body: float = 0.0,
    blank: tuple[int, ...] = (),
    size: int = SIZE,
) -> list[np.ndarray]:
    """``frames`` RGB uint8 frames. ``expression``: pixels the lower lip drops (eyelids half that); ``shift``: pixels the
    head and everything moves; ``zoom``: relative scale change about the face; ``turn_degrees``: in-plane rotation
    about the face; ``body``: pixels everything below the chin moves; ``blank``: frames replaced by grey (no face)."""
    points = face_points()
    mouth_width = float(np.linalg.norm(points["mouth_left"] - points["mouth_right"]))
    eye_width = mouth_width * 0.6
    lips = _bump(points["lower_lip"], mouth_width * 0.35)
    lids = _bump(points["left_lid"], eye_width * 0.3) + _bump(points["right_lid"], eye_width * 0.3)
    xs, ys = _grid()
    below_chin = torch.sigmoid((ys - points["chin"][1] - 25) / 8)
    centre = points["nose"]
    out = []
    for t in range(frames):
        if t in blank:
            out.append(np.full((size, size, 3), 128, np.uint8))
            continue
        mouth_open = abs(_phase(t, 1.7))
        dy = expression * mouth_open * lips + 0.5 * expression * abs(_phase(t, 0.9)) * lids
        dy = dy + body * _phase(t, 0.8) * below_chin
        dx = 0.6 * body * _phase(t, 1.1) * below_chin
        # head: backward map of a similarity about the face centre, then a shift
        scale = 1 + zoom * _phase(t, 0.7)
        angle = math.radians(turn_degrees * _phase(t, 0.6))
        tx, ty = shift * _phase(t, 0.5), shift * _phase(t + 2, 0.75)
        u, v = (xs - tx - centre[0]) / scale, (ys - ty - centre[1]) / scale
        source_x = centre[0] + math.cos(angle) * u + math.sin(angle) * v
        source_y = centre[1] - math.sin(angle) * u + math.cos(angle) * v
        frame = _warp(astronaut(), source_x - dx, source_y - dy)
        if size != SIZE:
            tensor = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
            tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            frame = tensor[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
        out.append(frame)
    return out
