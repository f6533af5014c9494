"""Reading a clip out of a video file with PyAV: its frames resampled to the training frame rate (the source frame
nearest each training frame's time) and its sound at the file's own rate. Seeks to each clip, so a long video is
never held in memory."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .settings import VIDEO_EXTENSIONS


class UnreadableVideoError(ValueError):
    """The file cannot be opened or decoded as a video."""


@dataclass(frozen=True)
class VideoInfo:
    duration: float  # seconds of video
    fps: float
    width: int
    height: int
    has_audio: bool
    audio_duration: float  # seconds of sound (0 without an audio track)


def _import_av():
    try:
        import av
    except ImportError as error:
        raise ImportError("Reading videos needs PyAV: pip install av (ComfyUI installs it).") from error
    return av


def _open(path: str):
    av = _import_av()
    try:
        return av.open(path)
    except Exception as error:
        raise UnreadableVideoError(f"{path} could not be opened as a video ({type(error).__name__}: {error}).") from error


def _stream_seconds(stream, container) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return 0.0


def probe(path: str) -> VideoInfo:
    with _open(path) as container:
        if not container.streams.video:
            raise UnreadableVideoError(f"{path} has no video stream.")
        video = container.streams.video[0]
        fps = float(video.average_rate or video.guessed_rate or 0)
        if not fps > 0 or not video.width or not video.height:
            raise UnreadableVideoError(f"{path}: the video stream reports no frame rate or size.")
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            _stream_seconds(video, container),
            fps,
            video.width,
            video.height,
            audio is not None,
            _stream_seconds(audio, container) if audio is not None else 0.0,
        )


def audio_seconds(path: str) -> float:
    """How long the sound of a file (audio or video) lasts."""
    with _open(path) as container:
        if not container.streams.audio:
            raise UnreadableVideoError(f"{path} has no audio track.")
        return _stream_seconds(container.streams.audio[0], container)


def read_frames(path: str, start: float, count: int, fps: float) -> np.ndarray:
    """uint8 RGB [count, H, W, 3]: for each time start + i / fps (seconds from the video's start), the decoded frame
    nearest to it."""
    targets = start + np.arange(count) / fps
    picked: list[np.ndarray] = []
    with _open(path) as container:
        stream = container.streams.video[0]
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        step = 1 / float(stream.average_rate or fps)
        try:
            container.seek(int((origin + start) / stream.time_base), stream=stream, backward=True)
            previous, previous_time = None, -math.inf
            for frame in container.decode(stream):
                time = float(frame.pts * stream.time_base) - origin if frame.pts is not None else previous_time + step
                while len(picked) < count and time >= targets[len(picked)]:
                    target = targets[len(picked)]
                    nearer = frame if previous is None or time - target <= target - previous_time else previous
                    picked.append(nearer.to_ndarray(format="rgb24"))
                if len(picked) == count:
                    break
                previous, previous_time = frame, time
        except Exception as error:
            raise UnreadableVideoError(f"{path}: decoding failed at {start:.2f} s ({type(error).__name__}: {error}).") from error
        if len(picked) < count and previous is not None and targets[len(picked)] - previous_time < 1.5 / fps:
            picked.append(previous.to_ndarray(format="rgb24"))  # the last training frame falls just past the last frame
    if len(picked) < count:
        raise UnreadableVideoError(f"{path}: the video ends before {start + count / fps:.2f} s ({len(picked)} of {count} frames).")
    return np.stack(picked)


def read_audio(path: str, start: float, seconds: float) -> tuple[np.ndarray, int]:
    """float32 [channels, samples] of the sound from ``start`` for ``seconds`` (seconds from the start of the video
    stream, so a track that starts later or has gaps keeps its place; silence is filled in), cut where the track ends,
    and its sample rate."""
    with _open(path) as container:
        if not container.streams.audio:
            raise UnreadableVideoError(f"{path} has no audio track.")
        stream = container.streams.audio[0]
        rate = stream.rate or stream.codec_context.sample_rate
        video = container.streams.video[0] if container.streams.video else stream
        origin = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
        first, wanted = int(round(start * rate)), int(round(seconds * rate))
        buffer, covered, position = None, 0, None
        try:
            container.seek(max(int((origin + start) / stream.time_base), 0), stream=stream, backward=True)
            for frame in container.decode(stream):
                samples = frame.to_ndarray()
                if not frame.format.is_planar:  # interleaved [1, samples * channels]
                    samples = samples.reshape(-1, len(frame.layout.channels)).T
                samples = _to_float(samples, frame.format.name)
                frame_start = int(round((float(frame.pts * stream.time_base) - origin) * rate)) if frame.pts is not None else position
                position = frame_start + samples.shape[1]
                if buffer is None:
                    buffer = np.zeros((samples.shape[0], wanted), dtype=np.float32)
                begin, finish = max(frame_start - first, 0), min(position - first, wanted)
                if finish > begin:
                    buffer[:, begin:finish] = samples[:, begin - (frame_start - first) : finish - (frame_start - first)]
                    covered = max(covered, finish)
                if position - first >= wanted:
                    break
        except Exception as error:  # noqa: BLE001
            raise UnreadableVideoError(f"{path}: decoding its sound failed at {start:.2f} s ({type(error).__name__}: {error}).") from error
    if buffer is None:
        return np.zeros((1, 0), dtype=np.float32), rate
    return buffer[:, :covered], rate


def _to_float(samples: np.ndarray, sample_format: str) -> np.ndarray:
    """PCM of any sample format to float32 in [-1, 1]."""
    base = sample_format.rstrip("p")
    if base == "u8":
        return (samples.astype(np.float32) - 128) / 128
    scale = {"s16": 1 / 32768, "s32": 1 / 2147483648}.get(base, 1.0)
    return samples.astype(np.float32) * scale


def find_videos(folder: str) -> list[tuple[str, str]]:
    """(path, path relative to the folder) of every video under it, sorted so runs are repeatable."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"The videos folder {folder} does not exist.")
    found = []
    for directory, _, names in os.walk(folder):
        for name in names:
            if name.lower().endswith(VIDEO_EXTENSIONS):
                path = os.path.join(directory, name)
                found.append((path, os.path.relpath(path, folder).replace(os.sep, "/")))
    if not found:
        raise FileNotFoundError(f"No videos ({', '.join(VIDEO_EXTENSIONS)}) were found under {folder}.")
    return sorted(found, key=lambda item: item[1])
