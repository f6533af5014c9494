"""Lip Sync Score's work: a clip (a VIDEO, or IMAGE frames with their AUDIO and frame rate) scored by SyncNet with
`fantasytalking evaluate`'s protocol (``fantasy_core.evaluation.sync``), a plot of the distances and a report in words.
SyncNet is loaded once per weights file and kept on the offload device between runs."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from fractions import Fraction

import comfy.model_management
import comfy.utils
import numpy as np
import torch
from comfy_api.latest import InputImpl

from fantasy_core.evaluation.media import read_video
from fantasy_core.evaluation.plot import sync_plot
from fantasy_core.evaluation.sync import SyncProtocol, SyncResult, evaluate_sync, to_16k_mono
from fantasy_core.lipsync.syncnet import load_syncnet

from .faces import open_detector, to_uint8
from .model_folders import syncnet_path

NODE = "FantasyTalking Lip Sync Score"
ON_UNSCORABLE = ("error", "report")  # raise with the reason, or NaN scores with the reason in the report
ADVICE = {
    "no_sound": "Give the clip its voice: a VIDEO with a sound track, or connect 'audio'.",
    "no_face": "The frames must show a face; for a small face in a large frame lower min_face_size.",
    "short_track": "The face must be seen in enough consecutive frames; for a short clip lower min_track "
    "(syncnet_python uses 100 frames, LatentSync's evaluation 50).",
}
WORKING_MEMORY = 1 << 30  # bytes: 20 windows of five 224 px crops through the lip tower in fp32, with room to spare
_SYNCNETS: dict[str, tuple[tuple[int, int], torch.nn.Module]] = {}  # path -> ((size, mtime), SyncNet off the device)


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # uint8 RGB [T, H, W, 3] at ``fps``
    fps: float
    sound_16k: np.ndarray  # mono 16 kHz; empty without sound
    source: str  # in words, for the report


@dataclass(frozen=True)
class LipSyncScore:
    result: SyncResult
    plot: torch.Tensor  # IMAGE [1, H, W, 3] in 0..1
    report: str

    @property
    def sync_c(self) -> float:
        return self.result.sync_c if self.result.status == "scored" else math.nan

    @property
    def sync_d(self) -> float:
        return self.result.sync_d if self.result.status == "scored" else math.nan

    @property
    def offset(self) -> int:
        return self.result.offset if self.result.status == "scored" else 0


def cached_syncnet(path: str) -> torch.nn.Module:
    """SyncNet from ``path``, loaded once; a file replaced on disk (another size or time) is loaded again."""
    stat = os.stat(path)
    stamp = (stat.st_size, stat.st_mtime_ns)
    held = _SYNCNETS.get(path)
    if held is None or held[0] != stamp:
        _SYNCNETS[path] = (stamp, load_syncnet(path, "cpu"))
    return _SYNCNETS[path][1]


def _sound(audio: dict, what: str) -> np.ndarray:
    waveform = audio["waveform"]
    if waveform.dim() == 3:
        if waveform.shape[0] != 1:
            raise ValueError(f"{NODE}: {what} holds {waveform.shape[0]} tracks; connect one voice track.")
        waveform = waveform[0]
    if not torch.is_floating_point(waveform):
        raise ValueError(f"{NODE}: {what} is {waveform.dtype} samples; a ComfyUI AUDIO holds float samples in -1..1.")
    return to_16k_mono(waveform.float(), int(audio["sample_rate"])) if waveform.shape[-1] else np.zeros(0, np.float32)


def _frames(images: torch.Tensor, what: str) -> np.ndarray:
    if images.dim() != 4 or images.shape[-1] < 3 or images.shape[0] == 0:
        raise ValueError(f"{NODE}: {what} must be an IMAGE batch [frames, height, width, 3]; got shape {list(images.shape)}.")
    return to_uint8(images)


def clip_of(video=None, images=None, audio=None, fps: float = 25.0) -> Clip:
    """The frames and sound to score: a VIDEO (its own frame rate and sound track; ``audio`` replaces the track when
    given), or ``images`` at ``fps`` with ``audio``. A video file is read as `fantasytalking evaluate` reads it."""
    if (video is None) == (images is None):
        raise ValueError(
            f"{NODE}: connect exactly one of 'video' (a VIDEO, which carries its frame rate and sound) or 'images' (an "
            "IMAGE batch, with its voice in 'audio' and its frame rate in 'fps')."
        )
    if images is not None:
        if audio is None:
            raise ValueError(f"{NODE}: 'images' needs its voice in 'audio' (the sound the lips should follow).")
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"{NODE}: 'fps' must be the frame rate of 'images', a positive number; got {fps}.")
        return Clip(_frames(images, "'images'"), float(fps), _sound(audio, "'audio'"), f"{images.shape[0]} frames at {fps:g} fps")
    source = video.get_stream_source() if isinstance(video, InputImpl.VideoFromFile) else None
    if isinstance(source, str):  # decoded as uint8 at its own rate, not as a float IMAGE batch
        try:
            read = read_video(source, os.path.basename(source), None, None, need_sound=audio is None)
        except ValueError as error:
            raise ValueError(f"{NODE}: the 'video' input: {error}") from error
        clip = Clip(read.frames, read.fps, read.sound_16k, f"{os.path.basename(source)}, {len(read.frames)} frames at {read.fps:g} fps")
    else:
        components = video.get_components()
        rate = float(Fraction(components.frame_rate))
        track = components.audio if audio is None else None
        sound = _sound(track, "the video's sound") if track is not None else np.zeros(0, np.float32)
        clip = Clip(
            _frames(components.images, "the video's frames"), rate, sound, f"a video of {len(components.images)} frames at {rate:g} fps"
        )
    if audio is not None:
        clip = replace(clip, sound_16k=_sound(audio, "'audio'"), source=clip.source + ", sound from 'audio'")
    return clip


def _to_device(model: torch.nn.Module) -> None:
    """As core's upscale node does: room made on ComfyUI's device, then the (small) network moved there."""
    device = comfy.model_management.get_torch_device()
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    comfy.model_management.free_memory(size + WORKING_MEMORY, device)
    model.to(device)


def report_text(result: SyncResult, protocol: SyncProtocol, clip: Clip, syncnet_name: str) -> str:
    lines = [f"{NODE}: {result.status}"]
    if result.status == "scored":
        when = (
            "the sound comes before the lips" if result.offset > 0 else "the sound comes after the lips" if result.offset < 0 else "in sync"
        )
        lines += [
            f"Sync-C {result.sync_c:.4f} (confidence: median - minimum of the mean distances per offset; higher is better)",
            f"Sync-D {result.sync_d:.4f} (the minimum mean distance, at the best offset; lower is better)",
            f"offset {result.offset:+d} frames at {protocol.fps} fps ({when})",
            f"scored: face track of {result.track_frames} frames from frame {result.track_start}, "
            f"{len(result.window_distances)} windows of 5 frames, median face {result.face_size:.0f} px",
        ]
    else:
        lines += [
            f"not scored: {result.detail}",
            "Sync-C and Sync-D: NaN, offset: 0",
            ADVICE.get(result.status, ""),
        ]
        if result.track_frames:
            lines.append(f"longest face track: {result.track_frames} frames, median face {result.face_size:.0f} px")
    lines += [
        f"clip: {clip.source} -> {result.frames} frames at {protocol.fps} fps (nearest frame), sound mono 16 kHz",
        f"protocol: syncnet_python's distances, offsets within +-{protocol.max_shift} frames, the longest unbroken face "
        f"track (the largest face per frame, MediaPipe), min_track {protocol.min_track} frames, min_face_size "
        f"{protocol.min_face_size} px; SyncNet {syncnet_name}",
    ]
    return "\n".join(line for line in lines if line)


def score_lip_sync(clip: Clip, syncnet_name: str, protocol: SyncProtocol, on_unscorable: str = "error") -> LipSyncScore:
    """Sync-C, Sync-D and the offset of the clip; a clip that cannot be scored raises (``error``) or gives NaN scores
    with the reason in the report and the plot (``report``)."""
    if on_unscorable not in ON_UNSCORABLE:
        raise ValueError(f"{NODE}: on_unscorable must be one of {list(ON_UNSCORABLE)}; got {on_unscorable!r}.")
    model = cached_syncnet(syncnet_path(syncnet_name))
    progress = comfy.utils.ProgressBar(max(len(clip.frames), 1))
    try:
        _to_device(model)
        with open_detector("mediapipe") as detector:
            result = evaluate_sync(
                model,
                clip.frames,
                clip.fps,
                clip.sound_16k,
                detector,
                protocol,
                progress=lambda done, total: progress.update_absolute(done, total),
            )
    finally:
        model.to(comfy.model_management.unet_offload_device())
    report = report_text(result, protocol, clip, syncnet_name)
    if result.status != "scored" and on_unscorable == "error":
        raise ValueError(
            f"{NODE}: the clip cannot be scored ({result.status}): {result.detail}. {ADVICE.get(result.status, '')} "
            "Or set on_unscorable to 'report' to get NaN scores with the reason in the report."
        )
    plot = torch.from_numpy(sync_plot(result, protocol)[None].astype(np.float32) / 255.0)
    return LipSyncScore(result, plot, report)
