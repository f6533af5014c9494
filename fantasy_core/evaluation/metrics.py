"""The metrics the folder evaluation runs, each with the weights it needs, the row columns it fills and how they are
summarised. Per-video metrics score a video; set metrics (FID, FVD) give features whose statistics are compared
with the reference set's. The networks load once per run, here."""

from __future__ import annotations

from dataclasses import asdict

import torch

from . import catalog
from .sync import SyncProtocol, evaluate_sync

PER_VIDEO = ("sync", "idc", "sd", "bd", "aesthetic")
SETS = ("fid", "fvd")
OPTIONAL = ("es",)  # defined in docs/evaluation.md; its network is not here yet
ALL = (*PER_VIDEO, *SETS)
DEFAULT = PER_VIDEO  # FID and FVD join when reference videos are given


class Shared:
    """What several metrics use: the face detector (opened on first use, closed at the end)."""

    def __init__(self):
        self._detector = None

    @property
    def detector(self):
        if self._detector is None:
            from ..identity.face import MediaPipeFaceDetector

            self._detector = MediaPipeFaceDetector()
        return self._detector

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()


class SyncMetric:
    name = "sync"
    weights = ("syncnet",)
    needs_sound = True
    summarised = {"sync_c": "mean over scored videos", "sync_d": "mean over scored videos", "offset": "mean over scored videos"}

    def __init__(self, paths: dict[str, str], device: str, shared: Shared, protocol: SyncProtocol):
        from ..lipsync.syncnet import load_syncnet

        self.model, self.shared, self.protocol = load_syncnet(paths["syncnet"], device), shared, protocol

    def score(self, video) -> dict:
        result = evaluate_sync(self.model, video.frames, video.fps, video.sound_16k, self.shared.detector, self.protocol)
        return {
            "sync_status": result.status,
            "sync_detail": result.detail,
            "sync_c": result.sync_c,
            "sync_d": result.sync_d,
            "offset": result.offset,
            "sync_frames": result.frames,
            "track_frames": result.track_frames,
            "face_size": result.face_size,
        }

    def described(self) -> dict:
        return {
            **asdict(self.protocol),
            "picture": "nearest frame per 25 fps tick",
            "sound": "mono, 16 kHz (soxr HQ)",
            "track": "the longest unbroken run of frames with a face",
            "face": "the largest per frame",
        }


def metric_classes() -> dict[str, type]:
    """Per metric selector, the class that runs it (SD and BD share one)."""
    return {"sync": SyncMetric}


def available() -> tuple[str, ...]:
    return tuple(name for name in ALL if name in metric_classes())


def weights_of(selectors) -> list[catalog.MetricWeights]:
    classes = metric_classes()
    keys = dict.fromkeys(key for name in selectors for key in classes[name].weights)
    return [catalog.BY_KEY[key] for key in keys]


def build(selectors, paths: dict[str, str], device: str, shared: Shared, sync_protocol: SyncProtocol) -> list:
    """One instance per class (SD and BD are one), in the order asked."""
    built: dict[type, object] = {}
    for name in selectors:
        cls = metric_classes()[name]
        if cls not in built:
            built[cls] = cls(paths, device, shared, sync_protocol) if cls is SyncMetric else cls(paths, device, shared)
    return list(built.values())


def free(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
