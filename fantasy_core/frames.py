"""Frame arithmetic, in one place: Wan's VAE keeps the first video frame and compresses every further 4 into one
latent frame, so a video has 4k+1 frames and (frames - 1) / 4 + 1 latent frames."""

from __future__ import annotations

TEMPORAL_STRIDE = 4  # video frames per latent frame after the first


def is_video_length(num_frames: int, minimum: int = 5) -> bool:
    return num_frames >= minimum and (num_frames - 1) % TEMPORAL_STRIDE == 0


def check_video_length(name: str, num_frames: int, minimum: int = 5) -> None:
    if not is_video_length(num_frames, minimum):
        raise ValueError(
            f"{name} must be of the form 4k+1 and at least {minimum} (Wan's temporal compression), got {num_frames}. "
            "Use e.g. 81 (the official length), 77 or 85."
        )


def latent_frames(num_frames: int) -> int:
    """Latent frames of a 4k+1-frame video."""
    return (num_frames - 1) // TEMPORAL_STRIDE + 1


def video_frames(num_latent_frames: int) -> int:
    """Video frames of a video with this many latent frames."""
    return TEMPORAL_STRIDE * (num_latent_frames - 1) + 1


def official_num_frames(duration_seconds: float, fps: float, max_frames: int | None = 81) -> int:
    """``min(int(fps * duration // 4) * 4 + 5, max_frames)`` (official ``infer.py``): always 4k+1, slightly past the
    audio's end."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}.")
    if max_frames is not None:
        check_video_length("max_frames", max_frames)
    frames = int(fps * duration_seconds // TEMPORAL_STRIDE) * TEMPORAL_STRIDE + 5
    return frames if max_frames is None else min(frames, max_frames)


def samples_for_frames(num_frames: int, fps: float, sample_rate: int) -> int:
    """Audio samples that span ``num_frames`` video frames (the official trim, ``int(frames / fps * rate)``)."""
    return int(num_frames / fps * sample_rate)


def clip_seconds(num_frames: int, fps: float) -> float:
    """How long a clip of ``num_frames`` frames at ``fps`` lasts (its frames start at 0, 1/fps, ...)."""
    return num_frames / fps


def clip_starts(duration_seconds: float, num_frames: int, fps: float, stride_seconds: float | None = None) -> list[float]:
    """Start times of the whole clips a video of this duration holds, one every ``stride_seconds`` (default: back to
    back, no overlap)."""
    length = clip_seconds(num_frames, fps)
    stride = length if stride_seconds is None else stride_seconds
    if stride <= 0:
        raise ValueError(f"stride_seconds must be positive, got {stride}.")
    count = int((duration_seconds - length) // stride + 1 + 1e-9) if duration_seconds >= length else 0
    return [round(i * stride, 6) for i in range(count)]
