"""The evaluation nodes' work, with `fantasytalking evaluate`'s protocols. Lip Sync Score: a clip (a VIDEO, or IMAGE
frames with their AUDIO and frame rate) scored by SyncNet (``fantasy_core.evaluation.sync``), a plot of the distances
and a report in words. Identity Consistency: a clip's frames (a VIDEO or IMAGE frames) against the source portrait by
DINO face features (``fantasy_core.evaluation.dino``), a plot of each frame's similarities, the face crops scored and a
report. Each network is loaded once per weights file or folder and kept on the offload device between runs."""

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

from fantasy_core.evaluation.dino import IdcProtocol, IdentityTrace, identity_trace, load_dino
from fantasy_core.evaluation.media import read_video
from fantasy_core.evaluation.plot import identity_plot, sync_plot
from fantasy_core.evaluation.sync import SyncProtocol, SyncResult, evaluate_sync, to_16k_mono
from fantasy_core.lipsync.syncnet import load_syncnet

from .faces import open_detector, to_uint8
from .model_folders import dino_path, syncnet_path

NODE = "FantasyTalking Lip Sync Score"
IDC_NODE = "FantasyTalking Identity Consistency"
ON_UNSCORABLE = ("error", "report")  # raise with the reason, or NaN scores with the reason in the report
ADVICE = {
    "no_sound": "Give the clip its voice: a VIDEO with a sound track, or connect 'audio'.",
    "no_face": "The frames must show a face; for a small face in a large frame lower min_face_size.",
    "short_track": "The face must be seen in enough consecutive frames; for a short clip lower min_track "
    "(syncnet_python uses 100 frames, LatentSync's evaluation 50).",
}
IDC_ADVICE = {
    "no_face": "The frames must show a face in at least 2 frames; for a small face in a large frame lower min_face_size.",
    "no_portrait_face": "The portrait must show a face; for a small face lower min_face_size, or set reference to "
    "first_frame to compare the frames with the first one instead.",
}
# bytes: 20 windows of five 224 px crops through SyncNet's lip tower, or 16 crops through DINO ViT-B/16, in fp32, to spare
WORKING_MEMORY = 1 << 30
_LOADED: dict[str, tuple[tuple, torch.nn.Module]] = {}  # path -> (what it was on disk, the network off the device)


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


def _on_disk(path: str) -> tuple:
    """A file's size and time, or a folder's files' names, sizes and times: what a replaced file changes."""
    if os.path.isdir(path):
        return tuple(sorted((entry.name, entry.stat().st_size, entry.stat().st_mtime_ns) for entry in os.scandir(path) if entry.is_file()))
    stat = os.stat(path)
    return (stat.st_size, stat.st_mtime_ns)


def _loaded_once(path: str, load) -> torch.nn.Module:
    """``load(path, "cpu")``, once per path; loaded again when the file (or folder) on disk changed."""
    stamp = _on_disk(path)
    held = _LOADED.get(path)
    if held is None or held[0] != stamp:
        _LOADED[path] = (stamp, load(path, "cpu"))
    return _LOADED[path][1]


def cached_syncnet(path: str) -> torch.nn.Module:
    """SyncNet from ``path``, loaded once; a file replaced on disk (another size or time) is loaded again."""
    return _loaded_once(path, load_syncnet)


def cached_dino(folder: str) -> torch.nn.Module:
    """DINO from its Hugging Face ``folder``, loaded once; a folder whose files change (names, sizes or times) is loaded again."""
    return _loaded_once(folder, load_dino)


def _sound(audio: dict, what: str) -> np.ndarray:
    waveform = audio["waveform"]
    if waveform.dim() == 3:
        if waveform.shape[0] != 1:
            raise ValueError(f"{NODE}: {what} holds {waveform.shape[0]} tracks; connect one voice track.")
        waveform = waveform[0]
    if not torch.is_floating_point(waveform):
        raise ValueError(f"{NODE}: {what} is {waveform.dtype} samples; a ComfyUI AUDIO holds float samples in -1..1.")
    return to_16k_mono(waveform.float(), int(audio["sample_rate"])) if waveform.shape[-1] else np.zeros(0, np.float32)


def _frames(images: torch.Tensor, what: str, node: str = NODE) -> np.ndarray:
    if images.dim() != 4 or images.shape[-1] < 3 or images.shape[0] == 0:
        raise ValueError(f"{node}: {what} must be an IMAGE batch [frames, height, width, 3]; got shape {list(images.shape)}.")
    return to_uint8(images)


def _video_clip(video, node: str, need_sound: bool) -> Clip:
    """A VIDEO's frames at its own rate (a file decoded as uint8 as `fantasytalking evaluate` reads it, not as a float
    IMAGE batch), with its sound track when ``need_sound``."""
    source = video.get_stream_source() if isinstance(video, InputImpl.VideoFromFile) else None
    if isinstance(source, str):
        try:
            read = read_video(source, os.path.basename(source), None, None, need_sound=need_sound)
        except ValueError as error:
            raise ValueError(f"{node}: the 'video' input: {error}") from error
        return Clip(read.frames, read.fps, read.sound_16k, f"{os.path.basename(source)}, {len(read.frames)} frames at {read.fps:g} fps")
    components = video.get_components()
    rate = float(Fraction(components.frame_rate))
    track = components.audio if need_sound else None
    sound = _sound(track, "the video's sound") if track is not None else np.zeros(0, np.float32)
    frames = _frames(components.images, "the video's frames", node)
    return Clip(frames, rate, sound, f"a video of {len(components.images)} frames at {rate:g} fps")


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
    clip = _video_clip(video, NODE, need_sound=audio is None)
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


@dataclass(frozen=True)
class IdentityScore:
    trace: IdentityTrace
    plot: torch.Tensor  # IMAGE [1, H, W, 3] in 0..1
    crops: torch.Tensor  # IMAGE [N, S, S, 3]: the portrait's face (when it was the reference) then each frame's face
    report: str

    @property
    def idc(self) -> float:
        return self.trace.row["idc"] if self.trace.row["idc_status"] == "scored" else math.nan


def frames_of(video=None, images=None) -> tuple[np.ndarray, str]:
    """The frames whose identity is scored, uint8 [T, H, W, 3], and where they came from in words: a VIDEO's (a file
    read as `fantasytalking evaluate` reads it) or an IMAGE batch."""
    if (video is None) == (images is None):
        raise ValueError(f"{IDC_NODE}: connect exactly one of 'video' (a VIDEO, e.g. from Load Video) or 'images' (an IMAGE batch).")
    if images is not None:
        return _frames(images, "'images'", IDC_NODE), f"{images.shape[0]} frames"
    clip = _video_clip(video, IDC_NODE, need_sound=False)
    return clip.frames, clip.source


def portrait_of(portrait: torch.Tensor) -> tuple[np.ndarray, str]:
    """The first image of the 'portrait' batch as uint8, and what was taken in words."""
    if portrait.dim() != 4 or portrait.shape[0] == 0 or portrait.shape[-1] < 3:
        raise ValueError(f"{IDC_NODE}: 'portrait' must be an IMAGE [1, height, width, 3]; got shape {list(portrait.shape)}.")
    taken = "'portrait'" if portrait.shape[0] == 1 else f"the first of the {portrait.shape[0]} images in 'portrait'"
    return to_uint8(portrait[0]), taken


class _CountingDetector:
    """A face detector that moves ComfyUI's progress bar one step per image searched."""

    def __init__(self, detector, progress):
        self.detector, self.progress = detector, progress

    def detect(self, image: np.ndarray) -> list:
        faces = self.detector.detect(image)
        self.progress.update(1)
        return faces


def identity_report(trace: IdentityTrace, protocol: IdcProtocol, source: str, portrait: str, dino_name: str) -> str:
    row = trace.row
    reference = f"the face of {portrait}" if protocol.reference == "portrait" else "the first frame with a face"
    lines = [f"{IDC_NODE}: {row['idc_status']}"]
    if row["idc_status"] == "scored":
        compared = np.flatnonzero(np.isfinite(trace.to_reference))
        lowest = compared[np.argmin(trace.to_reference[compared])]
        lines += [
            f"IDC {row['idc']:.4f} (VBench's subject consistency of DINO face features: the mean over frames of the "
            "similarity to the reference and to the previous frame; 1 for identical faces, higher is better)",
            f"reference: {reference}",
            f"scored: a face in {row['idc_face_frames']} of {row['idc_frames']} frames; lowest similarity to the reference "
            f"{trace.to_reference[lowest]:.4f} at frame {trace.frame_indices[lowest]}",
        ]
    else:
        lines += [f"not scored: {row['idc_detail']}", "IDC: NaN", IDC_ADVICE.get(row["idc_status"], "")]
    face_crops = "the portrait's face, then " if trace.reference_crop is not None else ""
    lines += [
        f"clip: {source}",
        f"protocol: the largest face per frame (MediaPipe) of at least {protocol.min_face_size} px, a square of its side "
        f"x (1 + 2 x {protocol.crop_margin:g}) at {protocol.crop_size} px, frames without one left out; reference "
        f"{protocol.reference}; DINO {dino_name}, CLS features",
        f"face_crops: {face_crops}the face of each frame that has one",
    ]
    return "\n".join(line for line in lines if line)


def _crops_image(trace: IdentityTrace, side: int) -> torch.Tensor:
    crops = list(trace.crops) if trace.reference_crop is None else [trace.reference_crop, *trace.crops]
    if not crops:  # nothing found: one black square, since an IMAGE batch cannot be empty
        crops = [np.zeros((side, side, 3), np.uint8)]
    return torch.from_numpy(np.stack(crops)).float() / 255.0


def score_identity(
    frames: np.ndarray, source: str, portrait: torch.Tensor, dino_name: str, protocol: IdcProtocol, on_unscorable: str = "error"
) -> IdentityScore:
    """IDC of ``frames`` (uint8 [T, H, W, 3]) against the first image of ``portrait`` (reference "portrait") or against
    their first frame with a face; a clip that cannot be scored raises (``error``) or gives NaN with the reason in the
    report and the plot (``report``)."""
    if on_unscorable not in ON_UNSCORABLE:
        raise ValueError(f"{IDC_NODE}: on_unscorable must be one of {list(ON_UNSCORABLE)}; got {on_unscorable!r}.")
    pixels, taken = portrait_of(portrait)
    against = pixels if protocol.reference == "portrait" else None
    model = cached_dino(dino_path(dino_name))
    progress = comfy.utils.ProgressBar(len(frames) + (against is not None))
    try:
        _to_device(model)
        with open_detector("mediapipe") as detector:
            trace = identity_trace(model, frames, _CountingDetector(detector, progress), protocol, against)
    finally:
        model.to(comfy.model_management.unet_offload_device())
    report = identity_report(trace, protocol, source, taken, dino_name)
    status = trace.row["idc_status"]
    if status != "scored" and on_unscorable == "error":
        raise ValueError(
            f"{IDC_NODE}: the clip cannot be scored ({status}): {trace.row['idc_detail']}. {IDC_ADVICE.get(status, '')} "
            "Or set on_unscorable to 'report' to get NaN with the reason in the report."
        )
    plot = torch.from_numpy(identity_plot(trace, protocol)[None].astype(np.float32) / 255.0)
    return IdentityScore(trace, plot, _crops_image(trace, protocol.crop_size), report)
