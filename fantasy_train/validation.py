"""Validation renders during training, through the code the nodes run (``fantasy_comfy``): the portrait and voice are
conditioned once as the shipped workflow does it (CLIPTextEncode, CLIPVisionEncode, the image-to-video reference,
Audio Embeds, Face Crop and Face Embedding, Motion Intensity), and every render writes the modules to a file in the
nodes' format, loads it as the Model Loader does and runs FantasyTalking Apply's patch, the Sampler's sampling and
VAEDecode on the frozen base the run trains. What a render shows is what the checkpoint gives in ComfyUI.

The render runs on the main process (the others wait). Afterwards ComfyUI unloads what sampling loaded and the base
is loaded again exactly as for training, so sampling's patches (the flow shift, the modules' wrapper) leave no trace."""

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
from fantasy_core.identity.face import FaceSelectionError
from fantasy_core.motion.intensity import MotionIntensity
from fantasy_core.training.config import TrainConfig, ValidationConfig
from fantasy_core.training.trainable import TrainableModules
from fantasy_core.video_writer import StreamingMp4
from fantasy_core.weights import all_finite

from .encoders import DatasetEncoders, MissingModelError, load_encoders
from .wan import FrozenWan

FOLDER = "validation"
MIN_FACE_SIZE = 16  # a render is a check, not a dataset: small faces are accepted


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
    def __init__(self, config: TrainConfig, wan: FrozenWan, vae, conditioned: _Conditioned):
        self.config = config
        self.wan = wan
        self.vae = vae
        self.inputs = conditioned

    @classmethod
    def prepare(
        cls, config: TrainConfig, dataset: CachedClips, wan: FrozenWan, encoders: DatasetEncoders | None = None
    ) -> ValidationRenderer:
        """Loads the encoders (unless given), conditions the portrait and the voice once, and keeps only the VAE."""
        comfy_core = comfyui_nodes()
        valid, data = config.validation, config.data
        image = _read_image(valid.image)
        voice = _read_voice(valid.audio)
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
        return cls(config, wan, encoders.vae, _Conditioned(positive, negative, latent, embeds, trimmed, identity, motion))

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
