"""What a finished run reports: clips kept and dropped by reason, the dataset's ω calibration (percentiles of the raw
measurements, what the trainer stores with the motion weights) and histograms of the raw ω values as a PNG."""

from __future__ import annotations

import collections
import os

import numpy as np
from PIL import Image, ImageDraw

from ..motion.intensity import CalibrationError, MotionCalibration
from .analyse import DROP_REASONS
from .store import write_json

CALIBRATION = "calibration.json"
SUMMARY = "summary.json"
HISTOGRAMS = "omega_histograms.png"


def dataset_calibration(kept: list[dict], body_landmarks: str, window_seconds: float) -> MotionCalibration | None:
    """None while the kept clips' raw values do not span a range (fewer than two different clips)."""
    lip = [row["omega_lip_raw"] for row in kept]
    body = [row["omega_body_raw"] for row in kept]
    try:
        return MotionCalibration.from_dataset(lip, body, window_seconds, body_landmarks)
    except (CalibrationError, ValueError, IndexError):
        return None


def write_summary(
    root: str, kept: list[dict], dropped: list[dict], calibration: MotionCalibration | None, clip_seconds: float, errors: list[dict] = ()
) -> dict:
    reasons = collections.Counter(row["reason"] for row in dropped)
    summary = {
        "clips_kept": len(kept),
        "hours_kept": round(len(kept) * clip_seconds / 3600, 4),
        "dropped": {reason: {"count": reasons[reason], "meaning": DROP_REASONS.get(reason, "")} for reason in sorted(reasons)},
        "sources": len({row["source"] for row in kept} | {row["source"] for row in dropped}),
        "calibration": CALIBRATION if calibration is not None else None,
        "errors": [{"clip": row["clip"], "detail": row["detail"]} for row in errors],  # retried by the next run
    }
    if calibration is not None:
        write_json(os.path.join(root, CALIBRATION), calibration.to_json())
    write_json(os.path.join(root, SUMMARY), summary)
    if kept:
        omega_histograms([row["omega_lip_raw"] for row in kept], [row["omega_body_raw"] for row in kept]).save(
            os.path.join(root, HISTOGRAMS)
        )
    return summary


def omega_histograms(lip_raw, body_raw, bins: int = 30) -> Image.Image:
    """Two histograms of log10(raw ω) with the median marked: expression (ω_l) above, body (ω_b) below."""
    image = Image.new("RGB", (640, 400), "white")
    draw = ImageDraw.Draw(image)
    for row, (name, values, colour) in enumerate(
        (("ω_l raw (expression)", lip_raw, (230, 90, 60)), ("ω_b raw (body)", body_raw, (60, 140, 230)))
    ):
        top = 10 + row * 195
        logs = np.log10(np.maximum(np.asarray(values, dtype=np.float64), 1e-12))
        low, high = float(logs.min()), float(logs.max())
        high = high if high > low else low + 1
        counts, _ = np.histogram(logs, bins=bins, range=(low, high))
        draw.text((10, top), f"{name}: {len(values)} clips, median {np.median(values):.3g}", fill="black")
        x0, y0, x1, y1 = 40, top + 20, 620, top + 165
        draw.rectangle((x0, y0, x1, y1), outline=(180, 180, 180))
        width = (x1 - x0) / bins
        for i, count in enumerate(counts):
            if count:
                height = (y1 - y0 - 4) * count / counts.max()
                draw.rectangle((x0 + i * width + 1, y1 - height, x0 + (i + 1) * width - 1, y1), fill=colour)
        median_x = x0 + (np.log10(max(np.median(values), 1e-12)) - low) / (high - low) * (x1 - x0)
        draw.line((median_x, y0, median_x, y1), fill="black", width=1)
        draw.text((x0, y1 + 4), f"1e{low:.1f}", fill="black")
        draw.text((x1 - 40, y1 + 4), f"1e{high:.1f}", fill="black")
    return image
