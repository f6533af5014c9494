"""How SyncNet scores a face track against its sound, as syncnet_python does: face crops around the (median-smoothed)
face box, padded with grey 110, resized to 224 x 224, BGR 0-255; MFCCs of the 16 kHz sound at int16 scale
(python_speech_features defaults); an embedding per 5-frame window and per 0.2 s of sound; the mean distance per
offset of ±``max_shift`` frames; offset = the best shift, confidence = median distance - best distance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SYNCNET_FPS = 25
SYNCNET_SAMPLE_RATE = 16000
CROP_SCALE = 0.4
CROP_SIDE = 224
PAD_VALUE = 110
SMOOTHING_FRAMES = 13
MFCC_PER_FRAME = 4  # 100 Hz MFCCs at 25 fps
WINDOW_FRAMES = 5


@dataclass(frozen=True)
class SyncScore:
    offset: int  # frames at 25 fps, as syncnet_python reports it; negative when the sound comes after the lips
    confidence: float  # median distance - minimum distance (LSE-C)
    min_distance: float  # the best offset's mean distance (LSE-D)
    # for plots: the mean distance per audio shift -max_shift .. +max_shift (syncnet_python's mdist, so the offset of
    # index i is max_shift - i), and each 5-frame window's distance at the best shift (their mean is min_distance)
    mean_distances: tuple[float, ...] = ()
    window_distances: tuple[float, ...] = ()


def _median_filter(values: np.ndarray, kernel: int) -> np.ndarray:
    """scipy.signal.medfilt: zero-padded running median of odd length."""
    half = kernel // 2
    padded = np.concatenate([np.zeros(half), values, np.zeros(half)])
    return np.array([np.median(padded[i : i + kernel]) for i in range(len(values))])


def face_crops(frames: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
    """RGB uint8 frames [T, H, W, 3] and face boxes [T, 4] (x0, y0, x1, y1) -> [3, T, 224, 224] BGR float 0-255."""
    half = _median_filter(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, SMOOTHING_FRAMES)
    centre_y = _median_filter((boxes[:, 1] + boxes[:, 3]) / 2, SMOOTHING_FRAMES)
    centre_x = _median_filter((boxes[:, 0] + boxes[:, 2]) / 2, SMOOTHING_FRAMES)
    crops = []
    for frame, size, y, x in zip(frames, half, centre_y, centre_x):
        pad = int(size * (1 + 2 * CROP_SCALE))
        padded = np.pad(frame[..., ::-1], ((pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
        y, x = y + pad, x + pad
        face = padded[
            int(y - size) : int(y + size * (1 + 2 * CROP_SCALE)), int(x - size * (1 + CROP_SCALE)) : int(x + size * (1 + CROP_SCALE))
        ]
        pixels = torch.from_numpy(np.ascontiguousarray(face)).permute(2, 0, 1)[None].float()
        crops.append(F.interpolate(pixels, size=(CROP_SIDE, CROP_SIDE), mode="bilinear", align_corners=False)[0])
    return torch.stack(crops, 1)


def mfcc(waveform_16k: np.ndarray) -> torch.Tensor:
    """[1, 1, 13, frames at 100 Hz] of a float waveform in -1..1 (scaled to int16 as syncnet_python reads its WAV)."""
    try:
        import python_speech_features
    except ImportError as error:
        raise ImportError("The SyncNet lip-sync filter needs python_speech_features: pip install python_speech_features") from error
    samples = np.round(np.clip(waveform_16k, -1, 1) * 32767).astype(np.int16)
    return torch.from_numpy(python_speech_features.mfcc(samples, SYNCNET_SAMPLE_RATE).T.astype(np.float32))[None, None]


def offsets_and_confidence(lip_features: torch.Tensor, audio_features: torch.Tensor, max_shift: int) -> SyncScore:
    """Mean distance between each window's lips and the sound ``shift`` windows away (zero-padded), per shift."""
    padded = F.pad(audio_features, (0, 0, max_shift, max_shift))
    width = 2 * max_shift + 1
    distances = torch.stack(
        [F.pairwise_distance(lip_features[[i]].expand(width, -1), padded[i : i + width]) for i in range(len(lip_features))], 1
    )
    mean = distances.mean(1)
    best, index = torch.min(mean, 0)
    return SyncScore(
        max_shift - int(index), float(torch.median(mean) - best), float(best), tuple(mean.tolist()), tuple(distances[index].tolist())
    )


@torch.no_grad()
def sync_score(
    model, frames: np.ndarray, boxes: np.ndarray, waveform_16k: np.ndarray, max_shift: int = 15, batch: int = 20, progress=None
) -> SyncScore:
    """Frames at 25 fps with their face boxes, and the sound of the same span at 16 kHz. ``progress(done, total)``,
    when given, hears how many 5-frame windows are embedded."""
    if len(frames) < SMOOTHING_FRAMES:
        raise ValueError(f"SyncNet scores at least {SMOOTHING_FRAMES} frames at 25 fps (its box smoothing); this clip has {len(frames)}.")
    crops = face_crops(frames, boxes)
    coefficients = mfcc(waveform_16k)
    usable = min(crops.shape[1], len(waveform_16k) // (SYNCNET_SAMPLE_RATE // SYNCNET_FPS))
    windows = usable - WINDOW_FRAMES
    if windows < 1:
        raise ValueError(f"SyncNet needs more than {WINDOW_FRAMES} frames of picture and sound; this clip has {usable}.")
    device = next(model.parameters()).device
    lips, sound = [], []
    for start in range(0, windows, batch):
        starts = range(start, min(windows, start + batch))
        lips.append(model.embed_lips(torch.stack([crops[:, v : v + WINDOW_FRAMES] for v in starts]).to(device)).cpu())
        sound.append(
            model.embed_audio(
                torch.stack([coefficients[0, :, :, v * MFCC_PER_FRAME : v * MFCC_PER_FRAME + 20] for v in starts]).to(device)
            ).cpu()
        )
        if progress is not None:
            progress(starts.stop, windows)
    return offsets_and_confidence(torch.cat(lips), torch.cat(sound), max_shift)
