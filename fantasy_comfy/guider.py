"""FantasyTalking's guidance as a core GUIDER, built from core's own pieces so every CFG patch composes.

Per step with audio guidance (``fantasy_core.guidance``), the passes ``[cond, noaudio, uncond]`` are batched by
ComfyUI, and::

    out = cfg_function(noaudio, uncond, cfg) + audio_cfg * (cond - noaudio)

``comfy.samplers.cfg_function`` is the prompt term ``uncond + cfg * (noaudio - uncond)`` of the audio-free model with
every ``sampler_cfg_function`` (RescaleCFG, ...) and ``sampler_post_cfg_function`` (CFGZeroStar, ...) applied, and
``sampler_pre_cfg_function``s (APG, ...) first see the prompt pair ``[noaudio, uncond]``, exactly as in a plain CFG;
the audio term is added afterwards from the raw predictions, as core ``DualCFGGuider`` adds its second term. At cfg 1
the uncond pass is skipped (unless a patch disables that), as core does.

A ``sampler_calc_cond_batch_function`` (SkipLayerGuidanceDiTSimple) computes the prompt pair ``[noaudio, uncond]`` as it
would a plain CFG's ``[cond, uncond]``; the audio pass then runs in its own batch.

Steps outside ``[audio_cfg_start, audio_cfg_end)`` run core's own ``sampling_function`` on two passes that both hear
the audio: ``negative + cfg * (positive - negative)``, the official pipeline without audio guidance. The negative then
hears it at the positive's scale (the largest, if the positive's entries differ).

What each pass hears comes from its conditioning (``pass_settings.py``): ``cond`` is the positive as given, ``noaudio`` the
positive with its audio off (identity and motion kept), ``uncond`` the negative as given.
"""

from __future__ import annotations

import math

import comfy.patcher_extension
import comfy.samplers
import node_helpers
import torch

from fantasy_core.guidance import audio_guidance_active, check_audio_guidance_range, step_of_sigma

from .pass_settings import require_settings, set_pass
from .patch import has_fantasytalking


class FantasyTalkingGuider(comfy.samplers.CFGGuider):
    def __init__(self, model_patcher, cfg: float, audio_cfg: float, audio_cfg_start: float = 0.0, audio_cfg_end: float = 1.0):
        super().__init__(model_patcher)
        self.set_cfg(cfg)
        check_audio_guidance_range(audio_cfg_start, audio_cfg_end)
        self.audio_cfg, self.audio_cfg_start, self.audio_cfg_end = audio_cfg, audio_cfg_start, audio_cfg_end

    @property
    def always_guided(self) -> bool:
        return self.audio_cfg_start == 0.0 and self.audio_cfg_end == 1.0

    def set_conds(self, positive, negative):
        if not has_fantasytalking(self.model_patcher):
            raise ValueError(
                "FantasyTalking guidance: the model does not have FantasyTalking applied, so no pass would hear the audio. "
                "Connect the model output of 'FantasyTalking Apply' (not the loader's model)."
            )
        heard = require_settings(positive, "positive")
        require_settings(negative, "negative")
        conds = {
            "positive": positive,
            "noaudio": node_helpers.conditioning_set_values(set_pass(positive, audio_scale=0.0), {"prompt_type": "positive"}),
            "negative": negative,
        }
        if not self.always_guided:
            scale = max(settings.audio_scale for settings in heard)
            conds["negative_heard"] = node_helpers.conditioning_set_values(
                set_pass(negative, audio_scale=scale), {"prompt_type": "negative"}
            )
        self.inner_set_conds(conds)

    def audio_guided_at(self, timestep: torch.Tensor, model_options: dict) -> bool:
        if self.always_guided:
            return True
        sigmas = model_options["transformer_options"]["sample_sigmas"]
        step = step_of_sigma(sigmas, float(timestep.flatten()[0]))
        return audio_guidance_active(step, len(sigmas) - 1, self.audio_cfg_start, self.audio_cfg_end)

    def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006 (CFGGuider's signature)
        model, conds = self.inner_model, self.conds
        if not self.audio_guided_at(timestep, model_options):
            return comfy.samplers.sampling_function(
                model, x, timestep, conds["negative_heard"], conds["positive"], self.cfg, model_options=model_options, seed=seed
            )
        skip_uncond = math.isclose(self.cfg, 1.0) and not model_options.get("disable_cfg1_optimization", False)
        noaudio, uncond = conds["noaudio"], None if skip_uncond else conds["negative"]
        calc_prompt_pair = model_options.get("sampler_calc_cond_batch_function")
        if calc_prompt_pair is None:
            cond_out, noaudio_out, uncond_out = comfy.samplers.calc_cond_batch(
                model, [conds["positive"], noaudio, uncond], x, timestep, model_options
            )
        else:
            noaudio_out, uncond_out = calc_prompt_pair(
                {"conds": [noaudio, uncond], "input": x, "sigma": timestep, "model": model, "model_options": model_options}
            )
            (cond_out,) = comfy.samplers.calc_cond_batch(model, [conds["positive"]], x, timestep, model_options)
        prompt_pair = [noaudio_out, uncond_out]
        for fn in model_options.get("sampler_pre_cfg_function", []):
            prompt_pair = fn(
                {
                    "conds": [noaudio, uncond],
                    "conds_out": prompt_pair,
                    "cond_scale": self.cfg,
                    "timestep": timestep,
                    "input": x,
                    "sigma": timestep,
                    "model": model,
                    "model_options": model_options,
                }
            )
        prompt = comfy.samplers.cfg_function(
            model, prompt_pair[0], prompt_pair[1], self.cfg, x, timestep, model_options=model_options, cond=noaudio, uncond=uncond
        )
        return prompt + self.audio_cfg * (cond_out - noaudio_out)
