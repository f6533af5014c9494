"""A picture of what was measured: per-frame expression and body displacement, skipped frames marked, ω in the title."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .measure import MotionMeasurement

EXPRESSION_COLOUR = (230, 90, 60)
BODY_COLOUR = (60, 140, 230)
SKIPPED_COLOUR = (90, 90, 90)


def _polyline(draw: ImageDraw.ImageDraw, curve: np.ndarray, box, top: float, colour) -> None:
    x0, y0, x1, y1 = box
    frames = len(curve)
    segment = []
    for t, value in enumerate(curve):
        if not np.isfinite(value):
            if len(segment) > 1:
                draw.line(segment, fill=colour, width=2)
            segment = []
            continue
        x = x0 + (x1 - x0) * (t / max(frames - 1, 1))
        y = y1 - (y1 - y0) * min(value / top, 1.0)
        segment.append((x, y))
    if len(segment) > 1:
        draw.line(segment, fill=colour, width=2)
    elif len(segment) == 1:
        draw.ellipse([segment[0][0] - 2, segment[0][1] - 2, segment[0][0] + 2, segment[0][1] + 2], fill=colour)


def motion_plot(measurement: MotionMeasurement, width: int = 768, height: int = 320) -> np.ndarray:
    """RGB uint8 [height, width, 3]: expression (top) and body (bottom) displacement per frame, each scaled to its own
    maximum; grey ticks mark frames skipped because the tracker found nobody."""
    image = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    m = measurement
    draw.text(
        (10, 6),
        f"omega_lip {m.intensity.lip:.2f} (raw {m.lip_raw:.2e})   omega_body {m.intensity.body:.2f} "
        f"(raw {m.body_raw:.2e})   {m.frames} frames, {m.fps:g} fps",
        fill=(235, 235, 235),
        font=font,
    )
    panels = (
        ("expression (face sizes)", m.lip_curve, EXPRESSION_COLOUR, m.face_missing),
        ("body (shoulder widths)", m.body_curve, BODY_COLOUR, m.body_missing),
    )
    top, bottom, left, right = 28, height - 22, 50, width - 12
    panel_height = (bottom - top) // 2
    for index, (label, curve, colour, missing) in enumerate(panels):
        y0 = top + index * panel_height + 4
        box = (left, y0 + 14, right, y0 + panel_height - 6)
        draw.rectangle(box, outline=(70, 70, 70))
        finite = curve[np.isfinite(curve)]
        peak = float(finite.max()) if len(finite) and finite.max() > 0 else 1.0
        draw.text((left, y0), f"{label}, peak {peak:.3g}" + (f", {missing} frames skipped" if missing else ""), fill=colour, font=font)
        for t in np.flatnonzero(~np.isfinite(curve)):
            x = box[0] + (box[2] - box[0]) * (t / max(len(curve) - 1, 1))
            draw.line([(x, box[1]), (x, box[3])], fill=SKIPPED_COLOUR, width=1)
        _polyline(draw, curve, box, peak, colour)
    draw.text((left, height - 16), f"frame 0 .. {m.frames - 1} ({m.frames / m.fps:.1f} s)", fill=(160, 160, 160), font=font)
    return np.asarray(image, dtype=np.uint8)
