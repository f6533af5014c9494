"""Everything the pack does to a native Wan2.1 model, in one place.

``FantasyTalkingPatch.apply`` clones the ModelPatcher and adds, all owned by the clone:

* **object patches**: the injection layer's twins (``fantasy_core.dit.injection``) at every block's
  ``cross_attn.norm_q`` and ``cross_attn.o`` and at the time embedding's last layer. Wan's own code runs; the twins
  are new module objects sharing the real layers' state, so torch.compile (the whole model, as core TorchCompileModel
  does, or block by block) traces them and never reuses a graph traced without them;
* an **APPLY_MODEL wrapper** (per model call, outside any compiled region): reads every batch row's ``PassSettings``
  (carried by the row's conditioning, see ``pass_settings.py``) and the call's latent frames (a core context window's own
  frames, ``transformer_options["context_window"]``), then tells the twins what this call adds;
* an **OUTER_SAMPLE wrapper** (per sampling run): makes the run's constants (``fantasy_core.sampling_run``): the audio
  and identity keys and values of every block (and, on first use, each motion embedding), before ComfyUI loads the
  models for sampling, and drops them when the run ends. The modules' weights are only read then, so they need not be
  on the GPU while sampling.

Nothing is stored in ``model_options``, so later ``clone()`` calls never copy the modules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import comfy.ldm.wan.model
import comfy.model_base
from comfy.patcher_extension import WrappersMP

from fantasy_core.audio.adapter import AudioAdapter
from fantasy_core.audio.embeds import AudioEmbeds
from fantasy_core.dit.injection import Injection, ModelMismatchError, check_blocks_fit
from fantasy_core.frames import video_frames
from fantasy_core.identity.embeds import FaceEmbedding
from fantasy_core.identity.model import IdentityModule
from fantasy_core.motion.intensity import NEUTRAL, MotionIntensity
from fantasy_core.passes import IDENTITY_SCALE
from fantasy_core.sampling_run import RunInputs, SamplingRun, audio_cache_fits

from .loaded_modules import FantasyTalkingModules
from .pass_settings import PASS_KEY, set_pass

WRAPPER_KEY = "fantasytalking"
WAN_I2V_14B = "Load wan2.1_i2v_720p_14B (Wan2.1-I2V-14B) with the core 'Load Diffusion Model' node."


def wan_i2v_model(model) -> comfy.ldm.wan.model.WanModel:
    """The WanModel inside a MODEL, or a clear error naming what the MODEL is instead."""
    base = getattr(model, "model", None)
    diffusion_model = getattr(base, "diffusion_model", None)
    if not isinstance(base, comfy.model_base.WAN21) or not isinstance(diffusion_model, comfy.ldm.wan.model.WanModel):
        raise ValueError(f"FantasyTalking needs a Wan2.1 image-to-video model, but the MODEL input is {type(base).__name__}. {WAN_I2V_14B}")
    if isinstance(base, comfy.model_base.WAN22):
        raise ValueError(
            f"FantasyTalking was trained on Wan2.1-I2V-14B, but this is a Wan2.2 TI2V model (48-channel latents). {WAN_I2V_14B}"
        )
    if not hasattr(diffusion_model.blocks[0].cross_attn, "k_img"):
        if diffusion_model.patch_embedding.in_channels == 36:
            raise ValueError(
                "FantasyTalking was trained on Wan2.1-I2V-14B, but this is a Wan2.2 image-to-video model (it takes the "
                f"start image as latents but has no CLIP image cross-attention, which FantasyTalking builds on). {WAN_I2V_14B}"
            )
        raise ValueError(
            "FantasyTalking was trained on Wan2.1-I2V-14B, but this Wan model is text-to-video (its cross-attention "
            f"has no image branch). {WAN_I2V_14B}"
        )
    return diffusion_model


def has_fantasytalking(model) -> bool:
    """Whether FantasyTalking Apply patched this MODEL (or a clone of what it returned)."""
    return bool(model.get_wrappers(WrappersMP.APPLY_MODEL, WRAPPER_KEY))


@dataclass(frozen=True)
class Controls:
    """What FantasyTalking Apply (and Long Video) take beyond the audio: the identity and the motion intensity."""

    identity: FaceEmbedding | None = None
    identity_scale: float = IDENTITY_SCALE
    identity_guidance: bool = False  # the negative does not see the identity
    motion: MotionIntensity | None = None  # None with a motion module loaded: neutral (0.5, 0.5)
    motion_guidance: bool = False  # the negative gets neutral motion


class FantasyTalkingPatch:
    """Each batch row gets the modalities its pass settings ask for. ``motion`` is the ω of rows whose settings name
    none (a guider's extra conditioning)."""

    def __init__(
        self,
        modules: FantasyTalkingModules,
        audio: AudioEmbeds,
        identity: FaceEmbedding | None = None,
        motion: MotionIntensity | None = None,
    ):
        self.modules = modules
        self.audio = audio
        self.identity = identity
        self.motion = motion if motion is not None or modules.motion is None else MotionIntensity()
        self.injection: Injection | None = None  # made by apply(), for the model it patches
        self._in_run, self._run = False, None

    @property
    def adapter(self) -> AudioAdapter:
        return self.modules.audio.model

    @property
    def identity_module(self) -> IdentityModule | None:
        return None if self.identity is None else self.modules.identity.model

    def _check_motion(self, diffusion_model) -> None:
        if self.modules.motion is None:
            return
        config = self.modules.motion.model.config
        width = diffusion_model.time_embedding[-1].out_features
        if config.model_dim != width:
            raise ModelMismatchError(
                f"The FantasyTalking motion module ('{self.modules.file_of('motion')}') makes {config.model_dim}-wide "
                f"embeddings, but this model's time embedding is {width} wide"
                f"{' (Wan2.1-1.3B)' if width == 1536 else ''}. Load the Wan2.1 I2V model it was trained for (Wan2.1-I2V-14B)."
            )

    def _check_modules(self, blocks) -> None:
        if self.modules.audio is None:
            raise ValueError(
                "FantasyTalking: the fantasytalking_model input holds no audio adapter "
                f"(only {', '.join(n for n, _ in self.modules.files)} "
                f"from {', '.join(sorted({f for _, f in self.modules.files}))}). Load fantasytalking_model.ckpt with a "
                "'FantasyTalking Model Loader' and connect it to this loader's fantasytalking_model input."
            )
        config = self.adapter.config
        check_blocks_fit("FantasyTalking audio adapter", config.num_blocks, config.model_dim, blocks)
        if self.audio.features.shape[-1] != config.audio_dim:
            raise ModelMismatchError(
                f"The audio embeds are {self.audio.features.shape[-1]} wide but the FantasyTalking adapter expects "
                f"{config.audio_dim}-wide wav2vec2 features. Encode the audio with wav2vec2-base-960h."
            )
        if self.identity is not None:
            if self.modules.identity is None:
                raise ValueError(
                    "FantasyTalking: a face embedding is connected but the fantasytalking_model has no identity module. "
                    "Load an identity file (trained with the FantasyTalking trainer) with a 'FantasyTalking Model "
                    "Loader' chained to the audio adapter's loader, or disconnect the face embedding."
                )
            identity = self.modules.identity.model.config
            check_blocks_fit(
                f"FantasyTalking identity module ('{self.modules.file_of('identity')}')", identity.num_blocks, identity.model_dim, blocks
            )
            if self.identity.vectors.shape[-1] != identity.face_dim:
                raise ModelMismatchError(
                    f"The face embedding is {self.identity.vectors.shape[-1]} wide ({self.identity.arcface_model}) but the "
                    f"identity module expects {identity.face_dim}-wide ArcFace embeddings. Use the ArcFace model it was "
                    "trained with."
                )

    def run_inputs(self) -> RunInputs:
        modules = self.modules
        return RunInputs(
            self.adapter,
            self.audio,
            self.identity_module,
            self.identity,
            None if modules.motion is None else modules.motion.model,
            self.motion or MotionIntensity(),
        )

    def apply(self, model):
        """The patched clone. A patch object is applied once (it owns the taps of that clone)."""
        diffusion_model = wan_i2v_model(model)
        self._check_modules(diffusion_model.blocks)
        self._check_motion(diffusion_model)
        patched = model.clone()
        for kind in (WrappersMP.DIFFUSION_MODEL, WrappersMP.APPLY_MODEL, WrappersMP.OUTER_SAMPLE):
            patched.remove_wrappers_with_key(kind, WRAPPER_KEY)  # FantasyTalking applied again replaces the earlier one
        self.injection = Injection(len(diffusion_model.blocks), diffusion_model.blocks[0].cross_attn.num_heads)
        for path, twin in self.injection.twins(lambda path: patched.get_model_object(f"diffusion_model.{path}")).items():
            patched.add_object_patch(f"diffusion_model.{path}", twin)
        patched.add_wrapper_with_key(WrappersMP.APPLY_MODEL, WRAPPER_KEY, self.per_call)
        patched.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, self.per_run)
        # The run's constants stand in for the modules; only an audio cache too large to keep (a long track) leaves the
        # audio keys and values to each call, and then ComfyUI keeps the adapter loaded while sampling.
        patched.set_additional_models(WRAPPER_KEY, [] if audio_cache_fits(self.run_inputs()) else [self.modules.audio])
        return patched

    def _frames_for(self, latent_frames: int, transformer_options: dict) -> tuple[int, ...]:
        """The track's latent frames this call samples: all of them, or a context window's own frames."""
        windows = self.audio.windows
        context_window = transformer_options.get("context_window")
        if context_window is None:
            frames, total = list(range(latent_frames)), latent_frames
        else:  # ComfyUI before v0.4 does not record the full length; then the window must at least fit the audio
            frames = list(context_window.index_list)
            total = getattr(context_window, "total_frames", 0) or windows.latent_frames
        if total != windows.latent_frames or max(frames) >= windows.latent_frames:
            shown = max(total, max(frames) + 1)
            raise ValueError(
                f"FantasyTalking: the audio embeds were made for {windows.num_frames} frames "
                f"({windows.latent_frames} latent frames), but the latent being sampled has {shown} latent "
                f"frames ({video_frames(shown)} frames). Connect the audio embeds node's num_frames output "
                "to WanImageToVideo's length."
            )
        return tuple(frames)

    def _rows(self, kwargs: dict, batch: int):
        rows = kwargs.pop(PASS_KEY, None)
        if rows is None:
            raise ValueError(
                "FantasyTalking: this model has FantasyTalking applied, but a conditioning reached it without saying "
                "whether it hears the audio. Take positive and negative from 'FantasyTalking Apply' (positive hears "
                "the audio, negative does not); give any other conditioning (e.g. a guider's extra one) the "
                "'FantasyTalking Conditioning Settings' node."
            )
        if len(rows) != batch:
            raise RuntimeError(f"FantasyTalking: {len(rows)} pass settings for a batch of {batch}.")
        if self.modules.motion is None and any(row.motion is not None for row in rows):
            raise ValueError(
                "FantasyTalking: a conditioning asks for a motion intensity (from 'FantasyTalking Conditioning "
                "Settings'), but the fantasytalking_model has no motion module. Load a motion file with a chained "
                "'FantasyTalking Model Loader', or disconnect that motion input."
            )
        return rows

    def per_call(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):  # noqa: B006 (apply_model's)
        """APPLY_MODEL wrapper: decides on the host what this call adds, then runs the (possibly compiled) model."""
        rows = self._rows(kwargs, x.shape[0])
        base = executor.class_obj
        dtype = base.manual_cast_dtype or base.get_dtype()  # what BaseModel._apply_model casts the inputs to
        run = self._run
        if run is None or not run.matches(x.device, dtype):
            run = SamplingRun(self.run_inputs(), x.device, dtype)
            if self._in_run:
                self._run = run
        call = run.call(rows, self._frames_for(x.shape[2], transformer_options))
        undo = self.injection.set_call(call.branches, call.time_addition)
        try:
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        finally:
            undo()

    def per_run(self, executor, *args, **kwargs):
        """OUTER_SAMPLE wrapper: the run's constants are made before ComfyUI loads the models for sampling (so its
        memory accounting sees them) and dropped when the run ends."""
        patcher = executor.class_obj.model_patcher
        base = patcher.model
        run = SamplingRun(self.run_inputs(), patcher.load_device, base.manual_cast_dtype or base.get_dtype())
        run.prepare()
        scope = self._in_run, self._run
        self._in_run, self._run = True, run
        try:
            return executor(*args, **kwargs)
        finally:
            self._in_run, self._run = scope


def apply_fantasytalking(
    model, modules: FantasyTalkingModules, audio: AudioEmbeds, audio_scale: float, positive, negative, controls: Controls = Controls()
):
    """The model with the modules; the positive conditioning hears the audio at ``audio_scale``, the negative is silent
    (the official negative pass). With an identity, both see it at ``identity_scale`` (λ2), unless
    ``identity_guidance``: then the negative does not, and CFG also pushes towards the identity. With a motion module,
    both get the motion embedding of ``motion`` (neutral when none is given), unless ``motion_guidance``: then the
    negative gets neutral motion, and CFG pushes from neutral towards ``motion``."""
    identity, identity_scale = controls.identity, controls.identity_scale
    if controls.motion is not None and modules.motion is None:
        raise ValueError(
            f"FantasyTalking: a motion intensity ({controls.motion.describe()}) is connected but the fantasytalking_model "
            "has no motion module. Load a motion file (trained with the FantasyTalking trainer) with a 'FantasyTalking "
            "Model Loader' chained to the audio adapter's loader, or disconnect the motion input."
        )
    if controls.motion_guidance and modules.motion is None:
        raise ValueError(
            "FantasyTalking: motion_guidance is on but the fantasytalking_model has no motion module. "
            "Turn motion_guidance off, or load a motion file."
        )
    if identity is None and modules.identity is not None and identity_scale != 0:
        raise ValueError(
            f"FantasyTalking: the fantasytalking_model holds an identity module ('{modules.file_of('identity')}') but no "
            "face embedding is connected. Connect 'FantasyTalking Face Embedding' to the identity input, or set "
            "identity_scale to 0 to run without identity."
        )
    patch = FantasyTalkingPatch(modules, audio, identity, controls.motion)
    if modules.motion is not None and controls.motion is None:
        logging.info("FantasyTalking: the motion module runs at neutral intensity (ω_l 0.5, ω_b 0.5): no motion input is connected.")
    if controls.motion_guidance and (patch.motion.lip, patch.motion.body) == (NEUTRAL, NEUTRAL):
        logging.warning(
            "FantasyTalking: motion_guidance is on but the motion is neutral (0.5, 0.5), the same as the "
            "negative's, so it changes nothing. Connect a motion intensity other than 0.5, or turn it off."
        )
    motion = negative_motion = patch.motion
    if controls.motion_guidance:
        negative_motion = MotionIntensity()
    negative_identity = 0.0 if controls.identity_guidance else identity_scale
    return (
        patch.apply(model),
        set_pass(positive, audio_scale=audio_scale, identity_scale=identity_scale, motion=motion),
        set_pass(negative, audio_scale=0.0, identity_scale=negative_identity, motion=negative_motion),
    )
