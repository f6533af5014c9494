"""Everything about one clip that runs on the CPU, in a worker process: decoding, the filters, the face and body
trackers (lip polygons, raw ω_l and ω_b, the reference face's ArcFace embedding) and the lip mask. The GPU encoders
(VAE, UMT5, CLIP vision, wav2vec2) run in the main process on what this returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..audio.track import AudioInputError, prepare_audio
from ..frames import samples_for_frames
from ..identity.face import FaceNotFoundError, SeveralFacesError, pick_main_face
from ..motion.intensity import MotionCalibration
from ..motion.measure import MotionMeasurementError, fit_for_measuring, measure_motion
from .checks import largest_scene_change, speech_fraction
from .lip_mask import OUTER_LIP, latent_lip_mask, pixel_lip_masks
from .settings import DatasetSettings
from .video import UnreadableVideoError, read_audio, read_frames

# Why a clip or a whole video was left out: code -> what it means (the summary lists them).
DROP_REASONS = {
    "unreadable": "the file could not be opened or decoded",
    "no_audio": "the video has no audio track",
    "low_resolution": "the video's shorter side is below the minimum resolution",
    "too_short": "the video is shorter than one clip",
    "scene_cut": "the clip spans a scene cut",
    "audio_unusable": "the clip's sound is missing, too short or not finite",
    "no_speech": "too little of the clip is louder than the speech level",
    "no_face": "no face was found in the first, middle or last frame",
    "several_faces": "several faces of about the same size: whose identity is unclear",
    "face_confidence": "the face detector's confidence is below the minimum",
    "motion_unmeasurable": "the face or body could not be followed through the clip",
    "lip_sync": "SyncNet finds the sound off the lips, or not confidently on them",
}
# Not a drop: a clip whose analysis failed unexpectedly is reported (summary "errors") and retried by the next run.
ERROR = "error"


@dataclass(frozen=True)
class ClipTask:
    source: str  # the video file
    relative: str  # its path relative to the videos folder (manifest and clip ids use it)
    clip_id: str
    start: float  # seconds
    caption: str


@dataclass
class AnalysedClip:
    task: ClipTask
    frames: np.ndarray  # uint8 [frames, height, width, 3] at the dataset's size
    waveform: torch.Tensor  # 16 kHz mono, trimmed as inference trims it (not normalised)
    lip_mask: torch.Tensor  # float32 [latent frames, height / 8, width / 8]
    face_embedding: np.ndarray | None  # float32 [512], unit length; None without an ArcFace model
    omega_lip_raw: float
    omega_body_raw: float
    checks: dict = field(default_factory=dict)


@dataclass
class DroppedClip:
    task: ClipTask
    reason: str
    detail: str
    checks: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AnalysisModels:
    """What a worker builds its trackers from (plain paths, so it crosses process boundaries)."""

    settings: DatasetSettings
    detector_path: str | None = None  # None: MediaPipe's face detector; else an SCRFD ONNX file
    body_model_path: str | None = None  # None: MediaPipe Pose; else a DWPose / RTMPose ONNX file
    arcface_path: str | None = None  # None: no face embeddings
    syncnet_path: str | None = None  # None: no lip-sync filter


class _RecordingFaceTracker:
    """Passes frames to the face mesh and keeps what it saw, so the lip polygons reuse the motion measurement's mesh."""

    def __init__(self, tracker):
        self.tracker = tracker
        self.seen = []

    def track(self, frame):
        landmarks = self.tracker.track(frame)
        self.seen.append(landmarks)
        return landmarks


class ClipAnalyser:
    def __init__(self, models: AnalysisModels):
        from ..identity.face import MediaPipeFaceDetector, ScrfdFaceDetector
        from ..motion.landmarks import (
            DWPoseTracker,
            FaceMeshTracker,
            MediaPipePoseTracker,
        )

        self.settings = models.settings
        self.detector = MediaPipeFaceDetector() if models.detector_path is None else ScrfdFaceDetector(models.detector_path)
        self.face_tracker = FaceMeshTracker()
        self.body_tracker = MediaPipePoseTracker() if models.body_model_path is None else DWPoseTracker(models.body_model_path)
        self.calibration = dataclasses.replace(MotionCalibration(), body_landmarks=self.body_tracker.layout.name)
        self.arcface = None
        if models.arcface_path is not None:
            from ..identity.arcface import ArcFaceEncoder

            self.arcface = ArcFaceEncoder(models.arcface_path, device="cpu")
        self.syncnet = None
        if models.syncnet_path is not None:
            from ..lipsync.syncnet import load_syncnet

            self.syncnet = load_syncnet(models.syncnet_path)

    def close(self) -> None:
        for model in (self.detector, self.face_tracker, self.body_tracker):
            model.close()

    def analyse(self, task: ClipTask) -> AnalysedClip | DroppedClip:
        settings, checks = self.settings, {}

        def drop(reason: str, detail: str) -> DroppedClip:
            return DroppedClip(task, reason, detail, checks)

        try:
            source_frames = read_frames(task.source, task.start, settings.frames, settings.fps)
        except UnreadableVideoError as error:
            return drop("unreadable", str(error))
        checks["scene_change"] = round(largest_scene_change(source_frames), 4)
        if checks["scene_change"] > settings.scene_cut_threshold:
            return drop(
                "scene_cut",
                f"the picture changes by {checks['scene_change']:.3f} between two frames "
                f"(scene_cut_threshold {settings.scene_cut_threshold:g})",
            )
        try:
            samples, rate = read_audio(task.source, task.start, settings.clip_seconds + 0.05)
            audio = prepare_audio(torch.from_numpy(samples), rate, settings.fps, max_frames=settings.frames)
        except (UnreadableVideoError, AudioInputError) as error:
            return drop("audio_unusable", str(error))
        needed = samples_for_frames(settings.frames, settings.fps, 16000)
        if audio.num_frames != settings.frames or len(audio.waveform) < needed:
            return drop("audio_unusable", f"the sound covers {len(audio.waveform) / 16000:.2f} s of the {settings.clip_seconds:.2f} s clip")
        checks["speech_fraction"] = round(speech_fraction(audio.waveform.numpy(), 16000, settings.speech_level_db), 4)
        if checks["speech_fraction"] < settings.min_speech_fraction:
            return drop(
                "no_speech",
                f"{100 * checks['speech_fraction']:.0f}% of the clip is above {settings.speech_level_db:g} dBFS "
                f"(min_speech_fraction {settings.min_speech_fraction:g})",
            )

        cropped = center_crop(source_frames, settings.height, settings.width)
        measured = [fit_for_measuring(frame) for frame in cropped]
        reference = None
        for index in sorted({0, len(measured) // 2, len(measured) - 1}):
            try:
                face = pick_main_face(self.detector.detect(measured[index]), f"frame {index}", min_face_size=0)
            except FaceNotFoundError:
                return drop("no_face", f"no face in frame {index}")
            except SeveralFacesError as error:
                return drop("several_faces", str(error))
            checks["face_confidence"] = round(min(checks.get("face_confidence", 1.0), face.score), 4)
            reference = reference or face
        if checks["face_confidence"] < settings.face_confidence_threshold:
            return drop(
                "face_confidence",
                f"face confidence {checks['face_confidence']:.3f} (min_face_confidence {settings.face_confidence_threshold:g})",
            )

        recorder = _RecordingFaceTracker(self.face_tracker)
        try:
            motion = measure_motion(measured, settings.fps, recorder, self.body_tracker, self.calibration, task.clip_id)
        except MotionMeasurementError as error:
            return drop("motion_unmeasurable", str(error))
        checks["face_frames_missing"], checks["body_frames_missing"] = motion.face_missing, motion.body_missing

        if self.syncnet is not None:
            try:
                score = self._sync_score(task, recorder.seen, audio.waveform.numpy(), measured[0].shape)
            except UnreadableVideoError as error:
                return drop("unreadable", str(error))
            checks.update(sync_offset=score.offset, sync_confidence=round(score.confidence, 4), sync_distance=round(score.min_distance, 4))
            if abs(score.offset) > settings.sync_max_offset or score.confidence < settings.sync_min_confidence:
                return drop(
                    "lip_sync",
                    f"SyncNet offset {score.offset} frames, confidence {score.confidence:.2f} (sync_max_offset "
                    f"{settings.sync_max_offset}, sync_min_confidence {settings.sync_min_confidence:g})",
                )

        height, width = measured[0].shape[:2]
        scale = np.array([settings.width / width, settings.height / height])
        polygons = [None if seen is None else seen.points[list(OUTER_LIP), :2] * scale for seen in recorder.seen]
        embedding = None
        if self.arcface is not None:
            from ..identity.align import align_face

            embedding = self.arcface.embed(align_face(measured[0], reference.keypoints, self.arcface.input_size))[0]
        return AnalysedClip(
            task,
            resize_frames(cropped, settings.height, settings.width),
            audio.waveform,
            latent_lip_mask(pixel_lip_masks(polygons, settings.height, settings.width)),
            embedding,
            motion.lip_raw,
            motion.body_raw,
            checks,
        )

    def _sync_score(self, task: ClipTask, meshes, waveform: np.ndarray, measured_shape):
        """SyncNet on the clip's span re-read at its 25 fps, face boxes from the face mesh of the nearest clip frame."""
        from ..lipsync.score import SYNCNET_FPS, sync_score

        settings = self.settings
        count = int(settings.clip_seconds * SYNCNET_FPS)
        frames = [
            fit_for_measuring(frame)
            for frame in center_crop(read_frames(task.source, task.start, count, SYNCNET_FPS), settings.height, settings.width)
        ]
        if frames[0].shape != measured_shape:
            raise UnreadableVideoError(
                f"{task.source}: frames re-read at 25 fps for SyncNet are {frames[0].shape[:2]}, the clip's "
                f"were {measured_shape[:2]}; the video changes size mid-stream. Re-encode it at one size."
            )
        boxes = [None if mesh is None else np.concatenate([mesh.points[:, :2].min(0), mesh.points[:, :2].max(0)]) for mesh in meshes]
        known = [i for i, box in enumerate(boxes) if box is not None]
        nearest = [boxes[min(known, key=lambda k: abs(k - j * settings.fps / SYNCNET_FPS))] for j in range(count)]
        return sync_score(self.syncnet, np.stack(frames), np.stack(nearest), waveform)


def center_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """The largest centred window of the target's aspect ratio."""
    source_height, source_width = frames.shape[1:3]
    scale = min(source_width / width, source_height / height)
    crop_width, crop_height = round(width * scale), round(height * scale)
    x0, y0 = (source_width - crop_width) // 2, (source_height - crop_height) // 2
    return np.ascontiguousarray(frames[:, y0 : y0 + crop_height, x0 : x0 + crop_width])


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased bilinear resize of uint8 frames [N, h, w, 3] to [N, height, width, 3]."""
    if frames.shape[1:3] == (height, width):
        return frames
    pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    resized = F.interpolate(pixels, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


# One analyser per worker process, built by start_worker (the process pool's initializer).
_WORKER: dict = {}


def start_worker(models: AnalysisModels) -> None:
    torch.set_num_threads(1)  # the workers share the CPU; one thread each avoids oversubscription
    _exit_with_parent()
    _WORKER["analyser"] = ClipAnalyser(models)


def _exit_with_parent(poll_seconds: float = 1.0) -> None:
    """A killed preparation (SIGKILL, out of memory) cannot stop its workers; they notice and leave within a second
    instead of holding their trackers' memory."""
    import os
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def analyse_in_worker(task: ClipTask) -> AnalysedClip | DroppedClip:
    return _WORKER["analyser"].analyse(task)
