"""The filters that need no model: scene cuts inside a clip and whether the clip has speech."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

THUMBNAIL_SIDE = 64
SPEECH_WINDOW_SECONDS = 0.03


def largest_scene_change(frames: np.ndarray) -> float:
    """The largest mean absolute difference between two consecutive frames, on 64 x 64 thumbnails, as a fraction of
    full scale (0: identical; PySceneDetect's content threshold of 27/255 is 0.106). A talking head changes by well
    under 0.03 from frame to frame; a cut to another shot by far more."""
    if len(frames) < 2:
        return 0.0
    pixels = torch.from_numpy(np.ascontiguousarray(frames[..., :3])).permute(0, 3, 1, 2).float()
    thumbnails = F.interpolate(pixels, size=(THUMBNAIL_SIDE, THUMBNAIL_SIDE), mode="area") / 255
    return float((thumbnails[1:] - thumbnails[:-1]).abs().mean(dim=(1, 2, 3)).max())


def speech_fraction(mono: np.ndarray, sample_rate: int, level_db: float) -> float:
    """Share of 30 ms windows whose RMS level is at least ``level_db`` dBFS: an energy voice-activity measure that
    tells speech from silence and room tone (it does not tell speech from music)."""
    window = max(int(SPEECH_WINDOW_SECONDS * sample_rate), 1)
    count = len(mono) // window
    if count == 0:
        return 0.0
    frames = np.asarray(mono[: count * window], dtype=np.float64).reshape(count, window)
    rms = np.sqrt((frames**2).mean(1))
    level = 20 * np.log10(np.maximum(rms, 1e-10))
    return float((level >= level_db).mean())
