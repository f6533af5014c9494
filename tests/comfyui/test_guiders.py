"""Every core guider and CFG patch with a FantasyTalking model: the passes that should hear the audio do, the others do
not, and each result equals its formula restated over separate single-pass evaluations (independent of the pack's
guidance code: heard passes on the patched model, silent ones on the model without the pack)."""

import pytest
import torch
from test_nodes import LATENT_HW, apply, conditioning, denoise_once, hear, loaded, run  # noqa: F401  (loaded: fixture)

TOL = {"rtol": 1e-4, "atol": 1e-4}
# Samples come out through Wan's latent format (an affine map per channel); the formulas below hold for the model's
# own x0 predictions, so every result is mapped back first (the plain CFG forms would hold either way).


@pytest.fixture(scope="module")
def talk(comfy_nodes, loaded):  # noqa: F811
    positive, negative, other = conditioning(31), conditioning(32), conditioning(33)
    patched, heard, silent = apply(comfy_nodes, loaded, positive, negative)
    return {
        "patched": patched,
        "heard": heard,
        "silent": silent,
        "plain": loaded["wan"],
        "positive": positive,
        "negative": negative,
        "other": other,
        "hear": lambda c, scale: hear(comfy_nodes, c, scale),
    }


def single(talk, conditioning, scale=0.0):
    """One pass of ``conditioning``: on the patched model hearing the audio at ``scale``, or on the plain model."""
    if scale == 0.0:
        return model_space(denoise_once(talk["plain"], conditioning, conditioning))
    return model_space(denoise_once(talk["patched"], talk["hear"](conditioning, scale), conditioning))


def model_space(sample):
    from comfy.latent_formats import Wan21

    return Wan21().process_in(sample)


class PassRecorder:
    """An APPLY_MODEL wrapper recording, per model call, the audio scale of every batch row. It runs outermost: the
    pack's own APPLY_MODEL wrapper takes the pass settings out of the call's arguments."""

    def __init__(self, model):
        import comfy.patcher_extension

        self.calls = []
        self.model = model.clone()
        self.model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "test_recorder", self)
        wrappers = self.model.wrappers[comfy.patcher_extension.WrappersMP.APPLY_MODEL]
        self.model.wrappers[comfy.patcher_extension.WrappersMP.APPLY_MODEL] = {"test_recorder": wrappers.pop("test_recorder"), **wrappers}

    def __call__(self, executor, x, t, *args, **kwargs):
        rows = kwargs.get("fantasytalking_pass")
        self.calls.append(None if rows is None else [row.audio_scale for row in rows])
        return executor(x, t, *args, **kwargs)

    @property
    def rows(self):
        return sorted(scale for call in self.calls for scale in call)


def _sample(guider):
    import comfy.sample
    import comfy.samplers

    latent = torch.zeros(1, 16, 3, LATENT_HW, LATENT_HW)
    noise = comfy.sample.prepare_noise(latent, 0)
    return model_space(
        guider.sample(noise, latent, comfy.samplers.sampler_object("euler"), torch.tensor([0.8, 0.0]), disable_pbar=True, seed=0)
    )


def test_ksampler_and_cfg_guider_positive_hears_negative_does_not(comfy_nodes, talk):
    import comfy.sample

    cond, uncond = single(talk, talk["positive"], 1.0), single(talk, talk["negative"])
    recorder = PassRecorder(talk["patched"])
    out = _sample(run(comfy_nodes, "CFGGuider", model=recorder.model, positive=talk["heard"], negative=talk["silent"], cfg=3.0)[0])
    torch.testing.assert_close(out, uncond + 3.0 * (cond - uncond), **TOL)
    assert recorder.rows == [0.0, 1.0]
    latent = torch.zeros(1, 16, 3, LATENT_HW, LATENT_HW)

    def ksampler(model, positive, negative, cfg):
        return comfy.sample.sample(
            model, comfy.sample.prepare_noise(latent, 0), 1, cfg, "euler", "simple", positive, negative, latent, disable_pbar=True, seed=0
        )

    expected = ksampler(talk["plain"], talk["negative"], talk["negative"], 1.0)
    expected = expected + 3.0 * (ksampler(talk["patched"], talk["heard"], talk["heard"], 1.0) - expected)  # affine: no mapping needed
    torch.testing.assert_close(ksampler(talk["patched"], talk["heard"], talk["silent"], 3.0), expected, **TOL)


@pytest.mark.parametrize("style", ["regular", "nested"])
def test_dual_cfg_guider_follows_each_conditioning(comfy_nodes, talk, style):
    """cond1 hears the audio; cond2 (another prompt) hears it at half strength; the negative is silent."""
    cond2 = hear(comfy_nodes, talk["other"], 0.5)
    recorder = PassRecorder(talk["patched"])
    out = _sample(
        run(
            comfy_nodes,
            "DualCFGGuider",
            model=recorder.model,
            cond1=talk["heard"],
            cond2=cond2,
            negative=talk["silent"],
            cfg_conds=2.5,
            cfg_cond2_negative=4.0,
            style=style,
        )[0]
    )
    pos, mid, neg = single(talk, talk["positive"], 1.0), single(talk, talk["other"], 0.5), single(talk, talk["negative"])
    if style == "regular":
        expected = neg + 4.0 * (mid - neg) + 2.5 * (pos - mid)
    else:
        expected = neg + 4.0 * (mid + 2.5 * (pos - mid) - neg)
    torch.testing.assert_close(out, expected, **TOL)
    assert recorder.rows == [0.0, 0.5, 1.0]


def test_dual_cfg_guider_at_one_one_is_the_positive_pass_hearing_the_audio(comfy_nodes, talk):
    recorder = PassRecorder(talk["patched"])
    out = _sample(
        run(
            comfy_nodes,
            "DualCFGGuider",
            model=recorder.model,
            cond1=talk["heard"],
            cond2=hear(comfy_nodes, talk["positive"], 0.0),
            negative=talk["silent"],
            cfg_conds=1.0,
            cfg_cond2_negative=1.0,
            style="regular",
        )[0]
    )
    cfg_one = _sample(run(comfy_nodes, "CFGGuider", model=talk["patched"], positive=talk["heard"], negative=talk["silent"], cfg=1.0)[0])
    assert torch.equal(out, cfg_one)
    assert recorder.rows == [1.0]
    assert (out - single(talk, talk["positive"])).abs().max() > 1e-3  # not the unpatched result


def test_dual_cfg_guider_as_the_three_pass_guidance(comfy_nodes, talk):
    """cond2 = the positive without audio: DualCFG regular (audio_cfg, cfg) is exactly FantasyTalking's guidance."""
    dual = _sample(
        run(
            comfy_nodes,
            "DualCFGGuider",
            model=talk["patched"],
            cond1=talk["heard"],
            cond2=hear(comfy_nodes, talk["positive"], 0.0),
            negative=talk["silent"],
            cfg_conds=4.5,
            cfg_cond2_negative=5.0,
            style="regular",
        )[0]
    )
    ours = _sample(
        run(
            comfy_nodes,
            "FantasyTalkingCFGGuider",
            model=talk["patched"],
            positive=talk["heard"],
            negative=talk["silent"],
            cfg=5.0,
            audio_cfg=4.5,
            audio_cfg_start=0.0,
            audio_cfg_end=1.0,
        )[0]
    )
    torch.testing.assert_close(dual, ours, **TOL)


def perp_neg_restated(pos, neg, empty, neg_scale, cfg):
    pos, neg = pos - empty, neg - empty
    perpendicular = neg - (neg * pos).sum() / pos.norm() ** 2 * pos
    return empty + cfg * (pos - neg_scale * perpendicular)


def test_perp_neg_guider(comfy_nodes, talk):
    empty = conditioning(34)
    recorder = PassRecorder(talk["patched"])
    out = _sample(
        run(
            comfy_nodes,
            "PerpNegGuider",
            model=recorder.model,
            positive=talk["heard"],
            negative=talk["silent"],
            empty_conditioning=hear(comfy_nodes, empty, 0.0),
            cfg=3.0,
            neg_scale=0.7,
        )[0]
    )
    expected = perp_neg_restated(single(talk, talk["positive"], 1.0), single(talk, talk["negative"]), single(talk, empty), 0.7, 3.0)
    torch.testing.assert_close(out, expected, **TOL)
    assert recorder.rows == [0.0, 0.0, 1.0]


def test_a_conditioning_that_does_not_say_what_it_hears_is_an_error(comfy_nodes, talk):
    with pytest.raises(ValueError, match="without saying whether it hears the audio.*FantasyTalking Conditioning Settings"):
        _sample(
            run(
                comfy_nodes,
                "PerpNegGuider",
                model=talk["patched"],
                positive=talk["heard"],
                negative=talk["silent"],
                empty_conditioning=conditioning(34),
                cfg=3.0,
                neg_scale=0.7,
            )[0]
        )
    with pytest.raises(ValueError, match="'negative' conditioning does not say whether it hears the audio"):
        run(
            comfy_nodes,
            "FantasyTalkingCFGGuider",
            model=talk["patched"],
            positive=talk["heard"],
            negative=talk["negative"],
            cfg=5.0,
            audio_cfg=4.5,
            audio_cfg_start=0.0,
            audio_cfg_end=1.0,
        )


@pytest.mark.parametrize("cfg", [3.0, 1.0])
def test_self_attention_guidance(comfy_nodes, talk, cfg):
    """SAG keeps the negative pass at cfg 1 too, and its own extra pass reuses the negative's conditioning (silent). (On
    Wan, core SAG changes nothing when a latent dimension is 4 or smaller, as here, and fails otherwise with or without
    this pack: it needs UNet attention maps.)"""
    (sag,) = run(comfy_nodes, "SelfAttentionGuidance", model=talk["patched"], scale=0.5, blur_sigma=2.0)
    recorder = PassRecorder(sag)
    out = _sample(run(comfy_nodes, "CFGGuider", model=recorder.model, positive=talk["heard"], negative=talk["silent"], cfg=cfg)[0])
    cond, uncond = single(talk, talk["positive"], 1.0), single(talk, talk["negative"])
    torch.testing.assert_close(out, uncond + cfg * (cond - uncond), **TOL)
    assert recorder.rows == [0.0, 1.0]


def our_guider(comfy_nodes, model, talk, cfg=5.0, audio_cfg=4.5, start=0.0, end=1.0):
    return run(
        comfy_nodes,
        "FantasyTalkingCFGGuider",
        model=model,
        positive=talk["heard"],
        negative=talk["silent"],
        cfg=cfg,
        audio_cfg=audio_cfg,
        audio_cfg_start=start,
        audio_cfg_end=end,
    )[0]


def three_passes(talk):
    return single(talk, talk["positive"], 1.0), single(talk, talk["positive"]), single(talk, talk["negative"])


def test_fantasytalking_guider_runs_three_passes_with_the_official_formula(comfy_nodes, talk):
    recorder = PassRecorder(talk["patched"])
    out = _sample(our_guider(comfy_nodes, recorder.model, talk))
    cond, noaudio, uncond = three_passes(talk)
    torch.testing.assert_close(out, uncond + 5.0 * (noaudio - uncond) + 4.5 * (cond - noaudio), **TOL)
    assert recorder.rows == [0.0, 0.0, 1.0]


def noisy_input():
    import comfy.sample

    return 0.8 * comfy.sample.prepare_noise(torch.zeros(1, 16, 3, LATENT_HW, LATENT_HW), 0)  # flow: sigma * noise at sigma 0.8


def rescale_cfg_restated(cond_pred, uncond_pred, scale, multiplier, x, sigma=0.8):
    """core RescaleCFG on x0 predictions, written out from its formula."""
    x_scaled = x / (sigma**2 + 1.0)
    v_cond = (x_scaled - (x - (x - cond_pred))) * (sigma**2 + 1.0) ** 0.5 / sigma
    v_uncond = (x_scaled - (x - (x - uncond_pred))) * (sigma**2 + 1.0) ** 0.5 / sigma
    v_cfg = v_uncond + scale * (v_cond - v_uncond)
    rescaled = v_cfg * (v_cond.std(dim=(1, 2, 3), keepdim=True) / v_cfg.std(dim=(1, 2, 3), keepdim=True))
    v_final = multiplier * rescaled + (1.0 - multiplier) * v_cfg
    return x - (x - (x_scaled - v_final * sigma / (sigma**2 + 1.0) ** 0.5))


def test_rescale_cfg_applies_to_the_prompt_term(comfy_nodes, talk):
    (rescaled,) = run(comfy_nodes, "RescaleCFG", model=talk["patched"], multiplier=0.7)
    out = _sample(our_guider(comfy_nodes, rescaled, talk))
    cond, noaudio, uncond = three_passes(talk)
    expected = rescale_cfg_restated(noaudio, uncond, 5.0, 0.7, noisy_input()) + 4.5 * (cond - noaudio)
    torch.testing.assert_close(out, expected, **TOL)
    assert (out - _sample(our_guider(comfy_nodes, talk["patched"], talk))).abs().max() > 1e-3


def test_cfg_zero_star_applies_to_the_prompt_term(comfy_nodes, talk):
    (patched,) = run(comfy_nodes, "CFGZeroStar", model=talk["patched"])
    out = _sample(our_guider(comfy_nodes, patched, talk))
    cond, noaudio, uncond = three_passes(talk)
    x = noisy_input()
    v_cond, v_uncond = (x - noaudio).flatten(1), (x - uncond).flatten(1)
    alpha = ((v_cond * v_uncond).sum(1) / ((v_uncond**2).sum(1) + 1e-8)).reshape(-1, 1, 1, 1, 1)
    prompt = uncond + 5.0 * (noaudio - uncond)
    expected = prompt + uncond * (alpha - 1.0) + 5.0 * uncond * (1.0 - alpha) + 4.5 * (cond - noaudio)
    torch.testing.assert_close(out, expected, **TOL)
    assert (out - _sample(our_guider(comfy_nodes, talk["patched"], talk))).abs().max() > 1e-3


def test_pre_cfg_functions_see_the_prompt_pair_and_the_audio_term_keeps_the_raw_predictions(comfy_nodes, talk):
    seen = []

    def drop_prompt_guidance(args):
        seen.append(len(args["conds_out"]))
        return [args["conds_out"][1], args["conds_out"][1]]  # prompt term becomes uncond

    patched = talk["patched"].clone()
    patched.set_model_sampler_pre_cfg_function(drop_prompt_guidance)
    out = _sample(our_guider(comfy_nodes, patched, talk))
    cond, noaudio, uncond = three_passes(talk)
    torch.testing.assert_close(out, uncond + 4.5 * (cond - noaudio), **TOL)
    assert seen == [2]


@pytest.mark.parametrize("cfg, rows", [(4.0, [1.0, 1.0]), (1.0, [1.0])])
def test_outside_the_audio_guidance_range_two_passes_both_hear_the_audio(comfy_nodes, talk, cfg, rows):
    """The official pipeline without audio guidance: negative + cfg * (positive - negative), audio heard in both."""
    recorder = PassRecorder(talk["patched"])
    out = _sample(our_guider(comfy_nodes, recorder.model, talk, cfg=cfg, start=0.5, end=1.0))  # the one step (progress 0) is outside
    assert recorder.rows == rows  # two passes (one at cfg 1) instead of three, all hearing the audio
    positive, negative = single(talk, talk["positive"], 1.0), single(talk, talk["negative"], 1.0)
    torch.testing.assert_close(out, negative + cfg * (positive - negative), **TOL)
    inside = PassRecorder(talk["patched"])
    _sample(our_guider(comfy_nodes, inside.model, talk, cfg=cfg, start=0.0, end=0.5))
    assert len(inside.rows) == len(rows) + 1


@pytest.mark.parametrize("guider", ["DualCFGGuider", "FantasyTalkingCFGGuider"])
def test_guiders_under_core_context_windows(comfy_nodes, loaded, guider):  # noqa: F811
    """Six latent frames in windows of three: every window's passes hear what their conditioning says, and the guided
    result equals the formula over separate single-pass runs under the same windows."""
    import comfy.sample
    import comfy.samplers
    from tiny_models import voice_like

    audio = {"waveform": voice_like(1.0, 16000, seed=9)[None, None], "sample_rate": 16000}
    embeds = run(comfy_nodes, "FantasyTalkingAudioEmbeds", audio=audio, audio_encoder=loaded["encoder"], fps=23, max_frames=21)[0]
    positive, negative = conditioning(41, frames=6), conditioning(42, frames=6)
    patched, heard, silent = apply(comfy_nodes, loaded, positive, negative, embeds=embeds)
    settings = dict(
        context_length=9,
        context_overlap=4,
        context_schedule="standard_static",
        context_stride=1,
        closed_loop=False,
        fuse_method="pyramid",
        freenoise=False,
    )
    accepted = {item.id for item in comfy_nodes["WanContextWindowsManual"].GET_SCHEMA().inputs}

    def windowed(model):
        return run(comfy_nodes, "WanContextWindowsManual", model=model, **{k: v for k, v in settings.items() if k in accepted})[0]

    def sample(guider_or_model, pos=None):
        latent = torch.zeros(1, 16, 6, LATENT_HW, LATENT_HW)
        noise, sampler, sigmas = comfy.sample.prepare_noise(latent, 0), comfy.samplers.sampler_object("euler"), torch.tensor([0.8, 0.0])
        if pos is None:
            return model_space(guider_or_model.sample(noise, latent, sampler, sigmas, disable_pbar=True, seed=0))
        return model_space(
            comfy.sample.sample_custom(guider_or_model, noise, 1.0, sampler, sigmas, pos, pos, latent, disable_pbar=True, seed=0)
        )

    try:
        plain_negative = sample(windowed(loaded["wan"]), negative)
    except RuntimeError as error:  # ComfyUI v0.3.64 does not cut Wan I2V's concat image per window
        pytest.skip(f"this ComfyUI's context windows cannot run Wan2.1 I2V even without FantasyTalking: {error}")
    recorder = PassRecorder(windowed(patched))
    cond = sample(windowed(patched), heard)
    noaudio = sample(windowed(loaded["wan"]), positive)
    if guider == "DualCFGGuider":
        node = run(
            comfy_nodes,
            "DualCFGGuider",
            model=recorder.model,
            cond1=heard,
            cond2=hear(comfy_nodes, positive, 0.0),
            negative=silent,
            cfg_conds=4.5,
            cfg_cond2_negative=5.0,
            style="regular",
        )[0]
    else:
        node = run(
            comfy_nodes,
            "FantasyTalkingCFGGuider",
            model=recorder.model,
            positive=heard,
            negative=silent,
            cfg=5.0,
            audio_cfg=4.5,
            audio_cfg_start=0.0,
            audio_cfg_end=1.0,
        )[0]
    out = sample(node)
    torch.testing.assert_close(out, plain_negative + 5.0 * (noaudio - plain_negative) + 4.5 * (cond - noaudio), **TOL)
    assert len(recorder.calls) >= 2 and all(sorted(call) == [0.0, 0.0, 1.0] for call in recorder.calls)


def test_skip_layer_guidance_computes_the_prompt_pair(comfy_nodes, talk):
    """SkipLayerGuidanceDiTSimple (a sampler_calc_cond_batch_function) skips block 1 in the uncond pass."""
    import comfy.model_patcher

    (slg,) = run(
        comfy_nodes,
        "SkipLayerGuidanceDiTSimple",
        model=talk["patched"],
        double_layers="1",
        single_layers="",
        start_percent=0.0,
        end_percent=1.0,
    )
    out = _sample(our_guider(comfy_nodes, slg, talk))
    skipping = talk["plain"].clone()
    skipping.model_options = comfy.model_patcher.set_model_options_patch_replace(
        skipping.model_options, lambda args, extra: args, "dit", "double_block", 1
    )
    uncond_skipped = model_space(denoise_once(skipping, talk["negative"], talk["negative"]))
    cond, noaudio, uncond = three_passes(talk)
    torch.testing.assert_close(out, uncond_skipped + 5.0 * (noaudio - uncond_skipped) + 4.5 * (cond - noaudio), **TOL)
    assert (uncond_skipped - uncond).abs().max() > 1e-3


def test_fantasytalking_guidance_on_a_model_without_fantasytalking_is_an_error(comfy_nodes, talk):
    with pytest.raises(ValueError, match="model does not have FantasyTalking applied.*model output of 'FantasyTalking Apply'"):
        our_guider(comfy_nodes, talk["plain"], talk)
