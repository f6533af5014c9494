"""Validation renders during training, through the code the nodes run (``fantasy_comfy``): the portrait and voice are
conditioned once as the shipped workflow does it (CLIPTextEncode, CLIPVisionEncode, the image-to-video reference,
Audio Embeds, Face Crop and Face Embedding, Motion Intensity), and every render writes the modules to a file in the
nodes' format, loads it as the Model Loader does and runs FantasyTalking Apply's patch, the Sampler's sampling and
VAEDecode on the frozen base the run trains. What a render shows is what the checkpoint gives in ComfyUI.

The render runs on the main process (the others wait). Afterwards ComfyUI unloads what sampling loaded and the base
is loaded again exactly as for training, so sampling's patches (the flow shift, the modules' wrapper) leave no trace.

Each render is scored by the evaluation's own code (Sync-C, Sync-D and the offset against the validation voice; IDC
against the portrait with DINO), the networks loaded once per run; a render that cannot be scored says why in words
and logs no number."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from fantasy_comfy.audio import voice_embeds
from fantasy_comfy.faces import embed_faces, find_faces
from fantasy_comfy.host import comfyui_nodes
from fantasy_comfy.i2v import i2v_conditioning
from fantasy_comfy.loaded_modules import load_modules
from fantasy_comfy.model_folders import arcface_path
from fantasy_comfy.patch import Controls, apply_fantasytalking
from fantasy_comfy.sampler import SamplingSettings, sample_talking
from fantasy_core.dataset.reader import CachedClips
from fantasy_core.dataset.video import UnreadableVideoError, audio_seconds, read_audio
from fantasy_core.evaluation import catalog
from fantasy_core.evaluation.sync import SyncProtocol, SyncResult, evaluate_sync, to_16k_mono
from fantasy_core.identity.face import FaceSelectionError, OncePerPicture
from fantasy_core.motion.intensity import MotionIntensity
from fantasy_core.training.config import TrainConfig, ValidationConfig
from fantasy_core.training.trainable import TrainableModules
from fantasy_core.video_writer import StreamingMp4
from fantasy_core.weights import all_finite

from .encoders import DatasetEncoders, MissingModelError, load_encoders
from .wan import FrozenWan

FOLDER = "validation"
MIN_FACE_SIZE = 16  # a render is a check, not a dataset: small faces are accepted
NO_SCORES = "none"  # validation.syncnet: no scores even when syncnet_v2.model is in models/evaluation


class ValidationInputError(ValueError):
    pass


def render_file(output_dir: str, step: int) -> str:
    return os.path.join(output_dir, FOLDER, f"step-{step:07d}.mp4")


def _read_image(path: str) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise ValidationInputError(f"validation.image: the file {path} does not exist. Give the portrait to render (PNG or JPEG).")
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise ValidationInputError(f"validation.image: {path} is not an image PIL can read ({error}). Use a PNG or JPEG.") from error
    return torch.from_numpy(pixels.copy()).float()[None] / 255  # ComfyUI IMAGE [1, H, W, 3]


def _read_voice(path: str) -> dict:
    """The whole track, as LoadAudio gives it to the workflow (the audio node resamples and cuts it)."""
    if not os.path.isfile(path):
        raise ValidationInputError(
            f"validation.audio: the file {path} does not exist. Give a voice file (WAV, MP3, or a video with sound)."
        )
    try:
        samples, rate = read_audio(path, 0.0, audio_seconds(path))
    except UnreadableVideoError as error:
        raise ValidationInputError(f"validation.audio: {error}") from error
    if samples.shape[1] == 0:
        raise ValidationInputError(f"validation.audio: {path} holds no sound. Give a voice file.")
    return {"waveform": torch.from_numpy(samples)[None], "sample_rate": int(rate)}  # ComfyUI AUDIO


def _encoder_names(valid: ValidationConfig, dataset: CachedClips) -> dict:
    """Each encoder: the config's, else the file the dataset was made with."""
    names = {}
    for kind in ("vae", "text_encoder", "clip_vision", "wav2vec", "arcface", "face_detector"):
        names[kind] = (
            getattr(valid, kind) or (dataset.models.get(kind) if kind != "face_detector" else dataset.settings.face_detector) or ""
        )
    return names


def _arcface_file(name: str) -> str:
    if os.path.isfile(name):
        return name
    try:
        return arcface_path(name)
    except FileNotFoundError as error:
        raise MissingModelError(f"validation.arcface: {error}") from error


@dataclass(frozen=True)
class ScoreWeights:
    """The metric weights the renders are scored with (None: that score is off) and, when Sync is off, why."""

    syncnet: str | None
    dino: str | None
    note: str = ""


def _evaluation_dirs() -> list[str]:
    from fantasy_comfy.model_folders import folder_dirs

    return folder_dirs(catalog.FOLDER)


def _weights_file(name: str, key: str, dirs: list[str]) -> str:
    """A path, or a name in ComfyUI/models/evaluation; missing: an error naming the option and where to get it."""
    entry = catalog.BY_KEY[key]
    candidates = [name] if os.path.isabs(name) else [name, *(os.path.join(folder, name) for folder in dirs)]
    for path in candidates:
        if catalog.exists(path, entry):
            return path
    what = "folder (config.json and the weights)" if entry.is_folder else "file"
    url = f" ({entry.url})" if entry.url else ""
    off = f' validation.{key} = "{NO_SCORES}" turns the scores off.' if key == "syncnet" else ""
    raise MissingModelError(
        f"validation.{key}: the {what} '{name}' was not found (as a path, or in {', '.join(dirs)}). Download {entry.name} "
        f"from {entry.source}{url} into ComfyUI/models/{catalog.FOLDER}, or give its path.{off}"
    )


def score_weights(valid: ValidationConfig, dirs: list[str] | None = None) -> ScoreWeights:
    """Which weights score the renders; checked before the run loads anything, so a file asked for and missing stops
    it at once. ``dirs``: where ComfyUI keeps models/evaluation (default: ComfyUI's folders)."""
    dirs = _evaluation_dirs() if dirs is None else dirs
    dino = _weights_file(valid.dino, "dino", dirs) if valid.dino else None
    if valid.syncnet == NO_SCORES:
        return ScoreWeights(None, dino, 'Validation renders are not scored for lip sync (validation.syncnet = "none").')
    if valid.syncnet:
        return ScoreWeights(_weights_file(valid.syncnet, "syncnet", dirs), dino)
    entry = catalog.BY_KEY["syncnet"]
    present = next((os.path.join(folder, entry.name) for folder in dirs if catalog.is_present(folder, entry)), None)
    if present:
        return ScoreWeights(present, dino)
    return ScoreWeights(
        None,
        dino,
        f"Validation renders are not scored for lip sync: no {entry.name} in {', '.join(dirs)}. For Sync-C, Sync-D and the "
        f"offset of every render, download it from {entry.source} ({entry.url}) there, or set validation.syncnet to its path.",
    )


class RenderScorer:
    """Scores renders as `fantasytalking evaluate` scores videos: Sync-C, Sync-D and the offset of the longest face
    track against the voice (``evaluate_sync``: SyncNet and MediaPipe's face detector) and, with DINO, IDC against the
    portrait (``video_identity_consistency``, reference "portrait"). The networks load once, here."""

    def __init__(self, weights: ScoreWeights, protocol: SyncProtocol, device, portrait: np.ndarray | None = None):
        from fantasy_core.identity.face import MediaPipeFaceDetector
        from fantasy_core.lipsync.score import SYNCNET_SAMPLE_RATE, mfcc
        from fantasy_core.lipsync.syncnet import load_syncnet

        self.protocol, self.portrait = protocol, portrait
        self.syncnet = load_syncnet(weights.syncnet, str(device)).eval() if weights.syncnet else None
        if self.syncnet is not None:
            mfcc(np.zeros(SYNCNET_SAMPLE_RATE // 10, np.float32))  # its optional package: missing, now rather than at a render
        self.dino = None
        if weights.dino:
            from fantasy_core.evaluation.dino import load_dino

            if portrait is None:
                raise ValueError("IDC of the renders is measured against the portrait: give it.")
            self.dino = load_dino(weights.dino, device)
        self.detector = MediaPipeFaceDetector()

    def scores(self, frames: torch.Tensor, fps: float, audio: dict) -> dict[str, float | int | str]:
        """``frames`` [T, H, W, 3] in 0..1 at ``fps``, ``audio`` the voice as ComfyUI AUDIO -> the values to log: the
        outcome in words (``validation/sync``, ``validation/identity``) and, only what was scored, the numbers
        (``validation/sync_c``, ``validation/sync_d``, ``validation/offset``, ``validation/idc``)."""
        pixels = (frames[..., :3].float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()  # as the MP4 writer rounds
        detector, values = OncePerPicture(self.detector), {}  # Sync and IDC share the detections
        if self.syncnet is not None:
            sound = to_16k_mono(audio["waveform"].reshape(-1, audio["waveform"].shape[-1]), audio["sample_rate"])
            with torch.no_grad():
                result = evaluate_sync(self.syncnet, pixels, fps, sound, detector, self.protocol)
            values["validation/sync"] = sync_text(result)
            if result.status == "scored":
                values.update({"validation/sync_c": result.sync_c, "validation/sync_d": result.sync_d, "validation/offset": result.offset})
        if self.dino is not None:
            from fantasy_core.evaluation.dino import IdcProtocol, video_identity_consistency

            protocol = IdcProtocol(min_face_size=self.protocol.min_face_size, reference="portrait")
            row = video_identity_consistency(self.dino, pixels, detector, protocol, portrait=self.portrait)
            if row["idc_status"] == "scored":
                values["validation/identity"] = (
                    f"IDC {row['idc']:.4f} against the portrait over {row['idc_face_frames']} frames with a face"
                )
                values["validation/idc"] = float(row["idc"])
            else:
                values["validation/identity"] = f"IDC not scored ({row['idc_status']}): {row['idc_detail']} ({HINTS['no_face']})"
        return values

    def close(self) -> None:
        self.detector.close()


HINTS = {
    "short_track": "validation.sync_min_track sets the shortest track scored",
    "no_face": "validation.score_min_face_size sets the smallest face",
}


def sync_text(result: SyncResult) -> str:
    if result.status == "scored":
        return (
            f"lip sync: Sync-C {result.sync_c:.3f}, Sync-D {result.sync_d:.3f}, offset {result.offset} over a {result.track_frames}-frame "
            f"face track ({result.face_size:.0f} px)"
        )
    hint = f" ({HINTS[result.status]})" if result.status in HINTS else ""
    return f"lip sync not scored ({result.status}): {result.detail}{hint}"


@dataclass
class _Conditioned:
    positive: list
    negative: list
    latent: torch.Tensor  # the empty latent of the video
    audio_embeds: object
    audio: dict  # the voice cut to the video, for the MP4
    identity: object | None
    motion: MotionIntensity | None


class ValidationRenderer:
    def __init__(self, config: TrainConfig, wan: FrozenWan, vae, conditioned: _Conditioned, scorer: RenderScorer | None = None):
        self.config = config
        self.wan = wan
        self.vae = vae
        self.inputs = conditioned
        self.scorer = scorer

    @classmethod
    def prepare(
        cls,
        config: TrainConfig,
        dataset: CachedClips,
        wan: FrozenWan,
        encoders: DatasetEncoders | None = None,
        weights: ScoreWeights | None = None,
    ) -> ValidationRenderer:
        """Loads the encoders (unless given), conditions the portrait and the voice once, and keeps only the VAE; loads
        the scoring networks of ``weights`` (default: as [validation] names them)."""
        comfy_core = comfyui_nodes()
        valid, data = config.validation, config.data
        image = _read_image(valid.image)
        voice = _read_voice(valid.audio)
        weights = score_weights(valid) if weights is None else weights
        names = _encoder_names(valid, dataset)
        if encoders is None:
            encoders = load_encoders(
                names["vae"], names["text_encoder"], names["clip_vision"], names["wav2vec"], option=lambda kind: f"validation.{kind}"
            )
        embeds, num_frames, trimmed = voice_embeds(voice, encoders.wav2vec, data.fps, data.frames)
        positive = comfy_core.CLIPTextEncode().encode(encoders.text_encoder, valid.prompt)[0]
        negative = comfy_core.CLIPTextEncode().encode(encoders.text_encoder, valid.negative_prompt)[0]
        vision = comfy_core.CLIPVisionEncode().encode(encoders.clip_vision, image, "none")[0]
        positive, negative, latent = i2v_conditioning(positive, negative, encoders.vae, data.width, data.height, num_frames, image, vision)
        identity = None
        if config.modules.identity:
            try:
                faces, _ = find_faces(image, names["face_detector"], 0.3, MIN_FACE_SIZE, 112)
            except FaceSelectionError as error:
                raise ValidationInputError(f"validation.image: {error}") from error
            identity, _ = embed_faces(faces, _arcface_file(names["arcface"]), names["arcface"], "auto")
        motion = MotionIntensity(valid.omega_lip, valid.omega_body) if config.modules.motion else None
        scorer = None
        if weights.syncnet or weights.dino:
            protocol = SyncProtocol(min_track=valid.sync_min_track, min_face_size=valid.score_min_face_size)
            portrait = (image[0] * 255).round().to(torch.uint8).numpy()
            scorer = RenderScorer(weights, protocol, wan.device, portrait)
        conditioned = _Conditioned(positive, negative, latent, embeds, trimmed, identity, motion)
        return cls(config, wan, encoders.vae, conditioned, scorer)

    def score(self, frames: torch.Tensor) -> dict[str, float | int | str]:
        """The render's scores to log (none when scoring is off); see ``RenderScorer.scores``."""
        return {} if self.scorer is None else self.scorer.scores(frames, self.config.data.fps, self.inputs.audio)

    def close(self) -> None:
        if self.scorer is not None:
            self.scorer.close()

    def render(self, modules: TrainableModules, step: int, metadata: dict[str, str]) -> torch.Tensor:
        """Frames [T, H, W, 3] in 0..1 of the modules as the nodes run them; written to validation/step-N.mp4."""
        import comfy.model_management

        comfy_core = comfyui_nodes()
        valid, inputs = self.config.validation, self.inputs
        path = render_file(self.config.output_dir, step)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        broken = next((name for name, value in modules.state_dict().items() if not all_finite(value)), None)
        if broken is not None:
            raise FloatingPointError(
                f"The validation render at step {step} cannot run: the modules' weight '{broken}' holds NaN "
                "or infinite values (the training diverged)."
            )
        weights = path.replace(".mp4", ".safetensors")
        modules.save(weights, metadata)
        try:
            loaded = load_modules(weights)
        finally:
            os.remove(weights)
        controls = Controls(identity=inputs.identity, identity_scale=self.config.modules.identity_scale, motion=inputs.motion)
        sampling = SamplingSettings(seed=valid.seed, steps=valid.steps, cfg=valid.cfg, audio_cfg=valid.audio_cfg, shift=valid.shift)
        try:
            with torch.no_grad():
                model, positive, negative = apply_fantasytalking(
                    self.wan.patcher, loaded, inputs.audio_embeds, 1.0, inputs.positive, inputs.negative, controls
                )
                samples = sample_talking(model, positive, negative, inputs.latent, sampling)
                frames = comfy_core.VAEDecode().decode(self.vae, {"samples": samples})[0]
        finally:
            comfy.model_management.unload_all_models()  # undoes sampling's patches on the shared base
            self.wan.reload()
        frames = frames.reshape(-1, *frames.shape[-3:]).float().cpu()
        if not torch.isfinite(frames).all():
            raise FloatingPointError(f"The validation render at step {step} is not finite: the modules' weights have diverged.")
        writer = StreamingMp4(path, self.config.data.fps, inputs.audio)
        writer.write(frames)
        writer.close()
        return frames
