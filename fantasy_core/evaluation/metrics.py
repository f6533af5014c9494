"""The metrics the folder evaluation runs, each with the weights it needs, the row columns it fills and how they are
summarised. Per-video metrics score a video; set metrics (FID, FVD) give features whose statistics are compared
with the reference set's. The networks load once per run, here."""

from __future__ import annotations

from dataclasses import asdict

import torch

from . import catalog
from .sync import evaluate_sync

PER_VIDEO = ("sync", "idc", "sd", "bd", "aesthetic")
SETS = ("fid", "fvd")
OPTIONAL = ("es",)  # only when asked for (its weights are not public in a direct download)
ALL = (*PER_VIDEO, *SETS, *OPTIONAL)
DEFAULT = PER_VIDEO  # FID and FVD join when reference videos are given


class Shared:
    """What several metrics use: the face detector (opened on first use, closed at the end), remembering each
    picture's faces until the next video, so Sync, IDC and ES detect every frame once."""

    def __init__(self):
        self._faces = None
        self.closing = []  # what metrics opened that holds native resources (MediaPipe graphs)

    @property
    def detector(self):
        if self._faces is None:
            from ..identity.face import MediaPipeFaceDetector, OncePerPicture

            self._faces = OncePerPicture(MediaPipeFaceDetector())
        return self._faces

    def next_video(self) -> None:
        if self._faces is not None:
            self._faces.forget()

    def close(self) -> None:
        for resource in [self._faces.detector if self._faces else None, *self.closing]:
            if resource is not None:
                resource.close()


class SyncMetric:
    name = "sync"
    weights = ("syncnet",)
    needs_sound = True
    summarised = {"sync_c": "mean over scored videos", "sync_d": "mean over scored videos", "offset": "mean over scored videos"}

    def __init__(self, paths: dict[str, str], device: str, shared: Shared, request):
        from ..lipsync.syncnet import load_syncnet

        self.model, self.shared, self.protocol = load_syncnet(paths["syncnet"], device), shared, request.sync_protocol

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


def prefixed(name: str, row: dict) -> dict:
    """A metric's own row with its status and detail named after it (every metric has both)."""
    return {(f"{name}_{key}" if key in ("status", "detail") else key): value for key, value in row.items()}


class DynamicsMetric:
    name = "dynamics"
    weights = ("raft",)
    summarised = {"sd": "mean over scored videos", "bd": "mean over scored videos with a background"}

    @classmethod
    def weights_for(cls, request) -> tuple[str, ...]:
        return (*cls.weights, "sam") if request.dynamics_protocol.mask_source == "sam" else cls.weights

    def __init__(self, paths: dict[str, str], device: str, shared: Shared, request):
        from .dynamics import SAM, load_raft
        from .person_mask import PersonSegmenter, SamPersonSegmenter

        self.protocol = request.dynamics_protocol
        self.model = load_raft(paths["raft"], device)
        if self.protocol.mask_source == SAM:
            self.segmenter = SamPersonSegmenter(paths["sam"], shared.detector, self.protocol, device)
        else:
            self.segmenter = PersonSegmenter(self.protocol)
        shared.closing.append(self.segmenter)

    def score(self, video) -> dict:
        from .dynamics import video_dynamics

        return prefixed(self.name, video_dynamics(self.model, self.segmenter, video.frames, self.protocol))

    def described(self) -> dict:
        return asdict(self.protocol)


class IdentityMetric:
    """IDC against each video's first frame, or against its source portrait when a portraits folder is given (a video
    without a matched portrait is then not scored, so one mean never mixes the two readings)."""

    name = "idc"
    weights = ("dino",)
    summarised = {"idc": "mean over scored videos"}

    def __init__(self, paths: dict[str, str], device: str, shared: Shared, request):
        from .dino import IdcProtocol, load_dino

        self.model, self.shared = load_dino(paths["dino"], device), shared
        self.against_portraits = request.portraits_dir is not None
        reference = "portrait" if self.against_portraits else "first_frame"
        self.protocol = IdcProtocol(reference=reference, min_face_size=request.sync_protocol.min_face_size)  # one face rule

    def score(self, video) -> dict:
        from .dino import video_identity_consistency

        if self.against_portraits and video.portrait is None:
            return {"idc_status": "no_portrait", "idc_detail": "no portrait of this name in the portraits folder", "idc": None}
        return video_identity_consistency(self.model, video.frames, self.shared.detector, self.protocol, portrait=video.portrait)

    def described(self) -> dict:
        return {**asdict(self.protocol), "features": "DINO ViT-B/16 CLS of per-frame face crops", "formula": "VBench subject consistency"}


class AestheticMetric:
    name = "aesthetic"
    weights = ("clip", "aesthetic_head")
    summarised = {"aesthetic": "mean over frames, then over videos"}

    def __init__(self, paths: dict[str, str], device: str, shared: Shared, request):
        from .aesthetic import AestheticProtocol, load_aesthetic

        self.scorer = load_aesthetic(paths["clip"], paths["aesthetic_head"], device)
        self.protocol = AestheticProtocol()

    def score(self, video) -> dict:
        from .aesthetic import video_aesthetic

        return {"aesthetic_status": "scored", **video_aesthetic(self.scorer, video.frames, self.protocol)}

    def described(self) -> dict:
        return {**asdict(self.protocol), "normalisation": self.scorer.normalisation, "head": "LAION v1 linear, / 10"}


class ExpressionMetric:
    """ES: expression coefficients against the reference video of the same name (frame by frame) when reference videos
    are given, else against the source portrait."""

    name = "es"
    weights = ("face_recon",)
    needs_reference_video = True
    summarised = {"es": "mean over scored videos"}

    def __init__(self, paths: dict[str, str], device: str, shared: Shared, request):
        from .expression import EsProtocol, load_face_recon

        self.model, self.shared = load_face_recon(paths["face_recon"], device), shared
        self.protocol = EsProtocol(min_face_size=request.sync_protocol.min_face_size)

    def score(self, video) -> dict:
        from .expression import video_expression_similarity

        if video.reference_frames is None and video.portrait is None:
            detail = "no reference video or portrait of this name (--reference-dir, --portraits-dir)"
            return {"es_status": "no_reference", "es_detail": detail, "es": None}
        return video_expression_similarity(
            self.model, video.frames, self.shared.detector, self.protocol, portrait=video.portrait, reference_frames=video.reference_frames
        )

    def described(self) -> dict:
        return {**asdict(self.protocol), "similarity": "mean cosine of the 64 expression coefficients per frame"}


class FidMetric:
    """FID's set: the Inception pool features of every frame of every video."""

    name, unit, width = "fid", "frames", 2048
    weights = ("inception",)

    def __init__(self, paths: dict[str, str], device: str, shared: Shared, request):
        from .inception import FidProtocol, load_inception

        self.model, self.protocol = load_inception(paths["inception"], device), FidProtocol()

    def features(self, video) -> tuple[torch.Tensor | None, str]:
        from .inception import frame_features

        return frame_features(self.model, video.frames), ""

    def described(self) -> dict:
        return asdict(self.protocol)


class FvdMetric:
    """FVD's set: the I3D features of each video's 16-frame clips."""

    name, unit, width = "fvd", "clips", 400
    weights = ("i3d",)

    def __init__(self, paths: dict[str, str], device: str, shared: Shared, request):
        from .i3d import FvdProtocol, load_i3d

        self.protocol = FvdProtocol()
        self.model = load_i3d(paths["i3d"], device, self.protocol)

    def features(self, video) -> tuple[torch.Tensor | None, str]:
        from .i3d import TooFewFramesError, video_features

        try:
            return video_features(self.model, video.frames, self.protocol), ""
        except TooFewFramesError as error:
            return None, str(error)

    def described(self) -> dict:
        return asdict(self.protocol)


def metric_classes() -> dict[str, type]:
    """Per metric selector, the class that runs it (SD and BD share one)."""
    return {
        "sync": SyncMetric,
        "idc": IdentityMetric,
        "sd": DynamicsMetric,
        "bd": DynamicsMetric,
        "aesthetic": AestheticMetric,
        "fid": FidMetric,
        "fvd": FvdMetric,
        "es": ExpressionMetric,
    }


def weights_of(selectors, request=None) -> list[catalog.MetricWeights]:
    """The catalog entries the chosen metrics need (with ``request``: as its protocols choose, e.g. SAM masks)."""
    classes = metric_classes()

    def needed(cls) -> tuple[str, ...]:
        return cls.weights_for(request) if request is not None and hasattr(cls, "weights_for") else cls.weights

    keys = dict.fromkeys(key for name in selectors for key in needed(classes[name]))
    return [catalog.BY_KEY[key] for key in keys]


def build(selectors, paths: dict[str, str], device: str, shared: Shared, request) -> list:
    """One instance per class (SD and BD are one), in the order asked; ``request`` carries the protocols."""
    built: dict[type, object] = {}
    for name in selectors:
        cls = metric_classes()[name]
        if cls not in built:
            built[cls] = cls(paths, device, shared, request)
    return list(built.values())
