"""Sync-C, Sync-D and the audio-video offset of a generated clip, by syncnet_python's protocol (``lipsync.score``
scores; this module prepares the clip the way its pipeline does): the picture resampled to 25 fps and the sound to
16 kHz mono, the main face found in every frame, the longest unbroken face track scored. Every clip gets a result:
one that cannot be scored says why (no sound, no face, a track too short), so a summary counts it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..lipsync.score import SMOOTHING_FRAMES, SYNCNET_FPS, SYNCNET_SAMPLE_RATE, WINDOW_FRAMES, sync_score

SILENCE = 1e-4  # peak amplitude (of 1) below which a track counts as having no sound
SHORTEST_TRACK = max(SMOOTHING_FRAMES, WINDOW_FRAMES + 1)  # what SyncNet's scoring needs whatever min_track says
CURVES = ("track_start", "mean_distances", "window_distances")  # for plots; not columns of a results row


@dataclass(frozen=True)
class SyncProtocol:
    """What the numbers depend on; written beside every result."""

    fps: int = SYNCNET_FPS
    max_shift: int = 15  # ± frames searched for the offset (syncnet_python's vshift)
    min_track: int = 50  # frames at 25 fps (LatentSync's eval; syncnet_python's 100 scores no 81-frame clip: 88 frames)
    min_face_size: int = 50  # pixels (syncnet_python's 100 drops many half-body 512 px videos)


@dataclass(frozen=True)
class SyncResult:
    status: str  # "scored", "no_sound", "no_face", "short_track"
    detail: str
    sync_c: float | None = None  # median - minimum of the mean distances per offset (confidence, LSE-C)
    sync_d: float | None = None  # the minimum (at the best offset, not at 0; LSE-D)
    offset: int | None = None  # frames at 25 fps; negative when the sound comes after the lips
    frames: int = 0  # frames at 25 fps
    track_frames: int = 0  # frames of the scored face track
    face_size: float | None = None  # median face side in the track, pixels
    track_start: int = 0  # the scored track's first frame at 25 fps
    mean_distances: tuple[float, ...] = ()  # per audio shift -max_shift .. +max_shift (offset = max_shift - index)
    window_distances: tuple[float, ...] = ()  # per 5-frame window of the track, at the best offset

    def row(self) -> dict:
        """The diagnostics a results row holds (the curves are for plots)."""
        return {key: value for key, value in asdict(self).items() if key not in CURVES}


def frame_indices(count: int, fps: float, target_fps: float = SYNCNET_FPS) -> np.ndarray:
    """Which source frame shows at each tick of ``target_fps`` (the nearest one, as ffmpeg's fps filter rounds)."""
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"the clip's frame rate must be a positive number; got {fps!r}.")
    ticks = math.floor(count * target_fps / fps + 1e-9)
    return np.minimum(np.round(np.arange(ticks) * fps / target_fps).astype(int), count - 1)


def longest_run(present: list[bool]) -> tuple[int, int]:
    """[start, stop) of the longest run of True (the first one on ties); (0, 0) when there is none."""
    best, start = (0, 0), None
    for index, flag in enumerate([*present, False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            if index - start > best[1] - best[0]:
                best = (start, index)
            start = None
    return best


def evaluate_sync(
    model,
    frames: np.ndarray,
    fps: float,
    waveform_16k: np.ndarray,
    detector,
    protocol: SyncProtocol = SyncProtocol(),
    progress=None,
) -> SyncResult:
    """``frames`` [T, H, W, 3] uint8 RGB at ``fps``; ``waveform_16k`` the clip's sound, mono 16 kHz in -1..1;
    ``detector.detect(frame)`` gives the faces of a frame (``identity.face``); ``model`` a SyncNet.
    ``progress(done, total)``, when given, hears the frames searched for a face, then the windows scored."""
    picture = frames[frame_indices(len(frames), fps, protocol.fps)]
    if waveform_16k.size == 0 or float(np.abs(waveform_16k).max()) < SILENCE:
        return SyncResult("no_sound", "the clip has no sound (or only silence) to compare the lips with", frames=len(picture))
    boxes = []
    planned = len(picture) + max(len(picture) - WINDOW_FRAMES, 0)  # detection, then at most this many windows
    for index, frame in enumerate(picture):
        faces = [face for face in detector.detect(frame) if face.size >= protocol.min_face_size]
        boxes.append(max(faces, key=lambda face: face.area).box if faces else None)
        if progress is not None:
            progress(index + 1, planned)
    start, stop = longest_run([box is not None for box in boxes])
    if stop == start:
        return SyncResult("no_face", f"no face of at least {protocol.min_face_size} px in any frame", frames=len(picture))
    track = np.asarray(boxes[start:stop], dtype=np.float64)
    sizes = np.maximum(track[:, 2] - track[:, 0], track[:, 3] - track[:, 1])
    samples_per_frame = SYNCNET_SAMPLE_RATE // protocol.fps
    sound = waveform_16k[start * samples_per_frame : stop * samples_per_frame]
    scored = min(stop - start, len(sound) // samples_per_frame)
    common = {"frames": len(picture), "track_frames": scored, "face_size": float(np.median(sizes)), "track_start": start}
    shortest = max(protocol.min_track, SHORTEST_TRACK)
    if scored < shortest:
        return SyncResult(
            "short_track",
            f"the longest face track with sound is {scored} frames at {protocol.fps} fps; at least {shortest} are scored",
            **common,
        )
    windows = (lambda done, total: progress(len(picture) + done, len(picture) + total)) if progress is not None else None
    score = sync_score(
        model, picture[start : start + scored], track[:scored], sound[: scored * samples_per_frame], protocol.max_shift, progress=windows
    )
    return SyncResult(
        "scored",
        "",
        score.confidence,
        score.min_distance,
        score.offset,
        **common,
        mean_distances=score.mean_distances,
        window_distances=score.window_distances,
    )


def to_16k_mono(waveform: torch.Tensor, sample_rate: int) -> np.ndarray:
    """A clip's sound [C, T] or [T] at any rate -> mono 16 kHz float (the pack's resampler, soxr HQ)."""
    from ..audio.track import resample, to_mono

    return resample(to_mono(waveform), sample_rate, SYNCNET_SAMPLE_RATE).numpy()
