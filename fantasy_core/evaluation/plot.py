"""Pictures of a lip-sync score and of an identity-consistency score (drawn with PIL, as the motion plot is).

Lip sync: the mean SyncNet distance per audio-video offset with the best offset marked (Sync-D is its value, Sync-C its
depth below the median), and the distance of each 5-frame window at the best offset over the clip's time. IDC: each
frame's similarity to the reference and to the previous frame over the clip. A clip that could not be scored gets a
picture saying why."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .dino import IdcProtocol, IdentityTrace
from .sync import SyncProtocol, SyncResult

BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
FAINT = (160, 160, 160)
FRAME = (70, 70, 70)
DISTANCE_COLOUR = (60, 140, 230)
BEST_COLOUR = (230, 60, 60)  # the best offset, and Sync-D
MEDIAN_COLOUR = (150, 150, 150)
WINDOW_COLOUR = (230, 150, 60)
WARNING_COLOUR = (240, 170, 60)
REFERENCE_COLOUR = (60, 140, 230)  # IDC: similarity to the reference
PREVIOUS_COLOUR = (230, 150, 60)  # IDC: similarity to the previous frame


def _scale(values: np.ndarray) -> tuple[float, float]:
    low, high = float(values.min()), float(values.max())
    pad = 0.08 * (high - low) if high > low else max(abs(high), 1.0) * 0.05
    return low - pad, high + pad


def _x(value: float, box, x_range) -> float:
    return box[0] + (box[2] - box[0]) * (value - x_range[0]) / max(x_range[1] - x_range[0], 1e-9)


def _y(value: float, box, y_range) -> float:
    return box[3] - (box[3] - box[1]) * (value - y_range[0]) / max(y_range[1] - y_range[0], 1e-9)


def _dashed(draw, box, y: float, colour) -> None:
    for x in range(int(box[0]), int(box[2]), 8):
        draw.line([(x, y), (min(x + 4, box[2]), y)], fill=colour, width=1)


def _panel(draw, font, box, title: str, y_range) -> None:
    draw.rectangle(box, outline=FRAME)
    draw.text((box[0], box[1] - 14), title, fill=TEXT, font=font)
    draw.text((6, box[1]), f"{y_range[1]:.2f}", fill=FAINT, font=font)
    draw.text((6, box[3] - 10), f"{y_range[0]:.2f}", fill=FAINT, font=font)


def _offsets_panel(draw, font, box, result: SyncResult, max_shift: int) -> None:
    """Mean distance against offset (max_shift - shift index), ascending left to right; the grey bar from the median
    down to the red best point is Sync-C."""
    mean = np.asarray(result.mean_distances, dtype=np.float64)
    offsets = max_shift - np.arange(len(mean))
    y_range, x_range = _scale(mean), (float(offsets.min()), float(offsets.max()))
    _panel(draw, font, box, "mean distance per audio-video offset (frames at 25 fps); red: the best (Sync-D), grey: the median", y_range)
    median_y = _y(float(np.median(mean)), box, y_range)
    _dashed(draw, box, median_y, MEDIAN_COLOUR)
    points = sorted((_x(offset, box, x_range), _y(value, box, y_range)) for offset, value in zip(offsets, mean))
    draw.line(points, fill=DISTANCE_COLOUR, width=2)
    for x, y in points:
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=DISTANCE_COLOUR)
    best_x, best_y = _x(result.offset, box, x_range), _y(result.sync_d, box, y_range)
    draw.line([(best_x, box[1]), (best_x, box[3])], fill=BEST_COLOUR, width=1)
    draw.line([(best_x, median_y), (best_x, best_y)], fill=MEDIAN_COLOUR, width=3)
    draw.ellipse([best_x - 5, best_y - 5, best_x + 5, best_y + 5], outline=BEST_COLOUR, width=2)
    for offset in (x_range[0], 0.0, x_range[1]):
        draw.text((_x(offset, box, x_range) - 8, box[3] + 3), f"{offset:+.0f}", fill=FAINT, font=font)


def _windows_panel(draw, font, box, result: SyncResult, fps: int) -> None:
    """Each window's distance at the best offset, placed at its first frame's time; the dashed line is their mean."""
    distances = np.asarray(result.window_distances, dtype=np.float64)
    seconds = (result.track_start + np.arange(len(distances))) / fps
    y_range = _scale(distances)
    x_range = (float(seconds[0]), float(seconds[-1]) if len(seconds) > 1 else float(seconds[0]) + 1.0)
    _panel(draw, font, box, f"distance per 5-frame window at offset {result.offset:+d}, over time; red dashes: the mean (Sync-D)", y_range)
    _dashed(draw, box, _y(result.sync_d, box, y_range), BEST_COLOUR)
    draw.line([(_x(t, box, x_range), _y(d, box, y_range)) for t, d in zip(seconds, distances)], fill=WINDOW_COLOUR, width=2)
    draw.text((box[0], box[3] + 3), f"{x_range[0]:.2f} s", fill=FAINT, font=font)
    draw.text((box[2] - 40, box[3] + 3), f"{x_range[1]:.2f} s", fill=FAINT, font=font)


def sync_plot(result: SyncResult, protocol: SyncProtocol | None = None, width: int = 768, height: int = 400) -> np.ndarray:
    """RGB uint8 [height, width, 3]: the two curves of a scored clip, or the reason a clip was not scored."""
    protocol = protocol or SyncProtocol()
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    if result.status != "scored":
        draw.text((12, 10), f"Lip sync not scored: {result.status}", fill=WARNING_COLOUR, font=font)
        draw.text((12, 30), result.detail, fill=TEXT, font=font)
        facts = f"{result.frames} frames at {protocol.fps} fps"
        if result.track_frames:
            facts += f"; longest face track {result.track_frames} frames, median face {result.face_size:.0f} px"
        draw.text((12, 50), facts, fill=FAINT, font=font)
        draw.text((12, 70), "Sync-C and Sync-D: NaN, offset: 0", fill=FAINT, font=font)
        return np.asarray(image, dtype=np.uint8)
    draw.text(
        (12, 6),
        f"Sync-C {result.sync_c:.3f}   Sync-D {result.sync_d:.3f}   offset {result.offset:+d} frames   "
        f"track {result.track_frames} of {result.frames} frames at {protocol.fps} fps, face {result.face_size:.0f} px",
        fill=TEXT,
        font=font,
    )
    left, right, top, bottom = 56, width - 14, 44, height - 20
    half = (bottom - top) // 2
    _offsets_panel(draw, font, (left, top, right, top + half - 34), result, protocol.max_shift)
    _windows_panel(draw, font, (left, top + half + 8, right, bottom - 6), result, protocol.fps)
    return np.asarray(image, dtype=np.uint8)


def identity_plot(trace: IdentityTrace, protocol: IdcProtocol | None = None, width: int = 768, height: int = 320) -> np.ndarray:
    """RGB uint8 [height, width, 3]: each face frame's similarity to the reference (blue) and to the previous face frame
    (orange) against its frame number, the IDC (their mean average) dashed in red, and a grey tick under each frame
    without a face; or the reason the clip was not scored."""
    protocol = protocol or IdcProtocol()
    row = trace.row
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    faces = f"a face in {row['idc_face_frames']} of {row['idc_frames']} frames (at least {protocol.min_face_size} px)"
    if row["idc_status"] != "scored":
        draw.text((12, 10), f"Identity consistency not scored: {row['idc_status']}", fill=WARNING_COLOUR, font=font)
        draw.text((12, 30), row["idc_detail"], fill=TEXT, font=font)
        draw.text((12, 50), faces, fill=FAINT, font=font)
        draw.text((12, 70), "IDC: NaN", fill=FAINT, font=font)
        return np.asarray(image, dtype=np.uint8)
    reference = "the portrait" if row["idc_reference"] == "portrait" else "the first frame with a face"
    draw.text((12, 6), f"IDC {row['idc']:.4f}   reference: {reference}   {faces}", fill=TEXT, font=font)
    legend = "similarity per frame; blue: to the reference, orange: to the previous frame, red dashes: IDC, grey ticks: no face"
    box = (56, 44, width - 14, height - 34)
    compared = np.isfinite(trace.to_reference)
    frames = trace.frame_indices[compared]
    values = np.concatenate([trace.to_reference[compared], trace.to_previous[compared], [row["idc"]]])
    y_range = _scale(values)
    x_range = (0.0, float(max(row["idc_frames"] - 1, 1)))
    _panel(draw, font, box, legend, y_range)
    _dashed(draw, box, _y(row["idc"], box, y_range), BEST_COLOUR)
    for series, colour in ((trace.to_reference[compared], REFERENCE_COLOUR), (trace.to_previous[compared], PREVIOUS_COLOUR)):
        points = [(_x(frame, box, x_range), _y(value, box, y_range)) for frame, value in zip(frames, series)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    for frame in sorted(set(range(row["idc_frames"])) - set(trace.frame_indices.tolist())):
        x = _x(frame, box, x_range)
        draw.line([(x, box[3] - 12), (x, box[3])], fill=FAINT, width=3)
    draw.text((box[0], box[3] + 3), "frame 0", fill=FAINT, font=font)
    draw.text((box[2] - 60, box[3] + 3), f"frame {x_range[1]:.0f}", fill=FAINT, font=font)
    return np.asarray(image, dtype=np.uint8)
