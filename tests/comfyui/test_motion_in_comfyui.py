"""Motion intensity in a real ComfyUI: the motion file (alone, chained), the time-embedding tap on the real WanModel,
which passes get the motion embedding, composition (lowvram, context windows, identity), the motion nodes, and the
errors users meet."""

import numpy as np
import pytest
import torch
from taps import CallRecorder
from test_composition import forced_lowvram
from test_identity_in_comfyui import context_windowed, face_embedding, load, talking_inputs
from test_nodes import conditioning, denoise_once, run

from fantasy_core.motion.intensity import MotionIntensity


@pytest.fixture(scope="module")
def talk(comfy_nodes, model_files):
    inputs = talking_inputs(comfy_nodes, model_files)
    return {
        **inputs,
        "with_motion": load(comfy_nodes, "motion_tiny.safetensors", chained=inputs["adapter"]),
        "untrained": load(comfy_nodes, "motion_untrained.safetensors", chained=inputs["adapter"]),
    }


def apply(comfy_nodes, talk, modules, motion=None, guidance=False, **extra):
    return run(
        comfy_nodes,
        "FantasyTalkingApply",
        model=talk["wan"],
        fantasytalking_model=modules,
        audio_embeds=talk["embeds"],
        audio_scale=1.0,
        positive=conditioning(31),
        negative=conditioning(32),
        motion=motion,
        motion_guidance=guidance,
        **extra,
    )


def sample(comfy_nodes, talk, modules, cfg=3.0, **options):
    model, positive, negative = apply(comfy_nodes, talk, modules, **options)
    return denoise_once(model, positive, negative, cfg=cfg)


def by_audio(recorder, talk, *candidates):
    """Every row of every recorded call as (audio scale, the ω of its motion embedding), sorted."""
    omegas = recorder.omegas(talk["with_motion"].motion.model, *candidates)
    return sorted(pair for call, names in zip(recorder.calls, omegas) for pair in zip(call.audio, names))


def test_loader_reads_the_motion_network_and_its_calibration(comfy_nodes, model_files, talk):
    from fantasy_core.motion.intensity import MotionCalibration

    alone = load(comfy_nodes, "motion_tiny.safetensors")
    assert alone.audio is None and alone.identity is None and alone.motion is not None
    state = alone.motion.model.state_dict()
    assert all(torch.equal(state[key], value) for key, value in model_files["motion_state"].items())
    assert alone.motion.model.calibration.to_json() == MotionCalibration().to_json()  # the pack's own class: compare values
    assert type(alone.motion.model.out).__module__ == "comfy.ops"
    fp8 = load(comfy_nodes, "motion_tiny.safetensors", weight_dtype="fp8_e4m3fn")
    assert fp8.motion.model.out.weight.dtype == torch.float32  # tiny: kept precise
    assert talk["with_motion"].audio is talk["adapter"].audio


def test_untrained_motion_network_is_exactly_the_audio_only_model(comfy_nodes, talk):
    audio_only = sample(comfy_nodes, talk, talk["adapter"])
    for level in (MotionIntensity(1.0, 1.0), MotionIntensity(0.1, 0.9), None):
        assert torch.equal(sample(comfy_nodes, talk, talk["untrained"], motion=level), audio_only)


def test_trained_motion_changes_the_video_and_each_level_differently(comfy_nodes, talk):
    audio_only = sample(comfy_nodes, talk, talk["adapter"])
    subtle = sample(comfy_nodes, talk, talk["with_motion"], motion=MotionIntensity(0.1, 0.1))
    intense = sample(comfy_nodes, talk, talk["with_motion"], motion=MotionIntensity(1.0, 1.0))
    assert torch.isfinite(subtle).all() and torch.isfinite(intense).all()
    assert (subtle - audio_only).abs().max() > 1e-4 and (intense - subtle).abs().max() > 1e-4
    # without a motion input the module runs at neutral, which is what (0.5, 0.5) gives
    assert torch.equal(
        sample(comfy_nodes, talk, talk["with_motion"]), sample(comfy_nodes, talk, talk["with_motion"], motion=MotionIntensity())
    )


@pytest.mark.parametrize("guidance, negative_omega", [(False, (0.8, 0.3)), (True, (0.5, 0.5))])
def test_which_passes_get_the_motion_embedding(comfy_nodes, talk, guidance, negative_omega):
    model, positive, negative = apply(comfy_nodes, talk, talk["with_motion"], motion=MotionIntensity(0.8, 0.3), guidance=guidance)
    recorder = CallRecorder()
    denoise_once(recorder.attach(model), positive, negative, cfg=3.0)
    assert by_audio(recorder, talk, (0.8, 0.3), (0.5, 0.5)) == [(0.0, negative_omega), (1.0, (0.8, 0.3))]


def test_motion_guidance_changes_the_guided_result(comfy_nodes, talk):
    plain = sample(comfy_nodes, talk, talk["with_motion"], motion=MotionIntensity(0.9, 0.9))
    guided = sample(comfy_nodes, talk, talk["with_motion"], motion=MotionIntensity(0.9, 0.9), guidance=True)
    assert (guided - plain).abs().max() > 1e-4


def test_conditioning_settings_give_a_pass_its_own_motion_or_apply_s(comfy_nodes, talk):
    model, positive, _ = apply(comfy_nodes, talk, talk["with_motion"], motion=MotionIntensity(0.8, 0.3))
    negative = run(
        comfy_nodes,
        "FantasyTalkingConditioningSettings",
        conditioning=conditioning(40),
        audio_scale=0.0,
        identity_scale=0.5,
        motion=MotionIntensity(0.2, 0.6),
    )[0]
    fresh = run(comfy_nodes, "FantasyTalkingConditioningSettings", conditioning=conditioning(41), audio_scale=0.0, identity_scale=0.5)[0]
    recorder = CallRecorder()
    denoise_once(recorder.attach(model), positive, negative, cfg=3.0)
    assert by_audio(recorder, talk, (0.2, 0.6), (0.8, 0.3)) == [(0.0, (0.2, 0.6)), (1.0, (0.8, 0.3))]
    recorder.calls.clear()
    denoise_once(recorder.attach(model), positive, fresh, cfg=3.0)  # a conditioning that names no motion gets Apply's
    assert recorder.omegas(talk["with_motion"].motion.model, (0.8, 0.3), (0.5, 0.5)) == [[(0.8, 0.3)] * 2]


def test_identical_with_lowvram_streaming_forced(comfy_nodes, talk):
    model, positive, negative = apply(comfy_nodes, talk, talk["with_motion"], motion=MotionIntensity(0.9, 0.1))
    full = denoise_once(model, positive, negative, cfg=3.0)
    with forced_lowvram():
        assert torch.equal(denoise_once(model, positive, negative, cfg=3.0), full)


def test_motion_and_identity_together(comfy_nodes, talk):
    both = load(comfy_nodes, "identity_tiny.safetensors", chained=talk["with_motion"])
    face = face_embedding()
    identity_only = sample(comfy_nodes, talk, load(comfy_nodes, "identity_tiny.safetensors", chained=talk["adapter"]), identity=face)
    moving = sample(comfy_nodes, talk, both, identity=face, motion=MotionIntensity(0.9, 0.9))
    assert torch.isfinite(moving).all() and (moving - identity_only).abs().max() > 1e-4
    untrained_motion = load(comfy_nodes, "identity_tiny.safetensors", chained=talk["untrained"])
    assert torch.equal(sample(comfy_nodes, talk, untrained_motion, identity=face, motion=MotionIntensity(0.9, 0.9)), identity_only)


def test_context_windows_carry_the_motion(comfy_nodes, talk):
    recorder = CallRecorder()
    sample_windows = context_windowed(comfy_nodes, recorder.attach(talk["wan"]))

    def windowed(modules, motion):
        return sample_windows(modules, motion=motion)

    try:
        audio_only = windowed(talk["adapter"], None)
    except RuntimeError as error:  # ComfyUI v0.3.64 does not cut Wan I2V's concat image per window
        pytest.skip(f"this ComfyUI's context windows cannot run Wan2.1 I2V: {error}")
    recorder.calls.clear()
    moving = windowed(talk["with_motion"], MotionIntensity(0.7, 0.2))
    omegas = recorder.omegas(talk["with_motion"].motion.model, (0.7, 0.2), (0.5, 0.5))
    assert len(omegas) >= 2 and {omega for rows in omegas for omega in rows} == {(0.7, 0.2)}  # every window, every row
    assert (moving - audio_only).abs().max() > 1e-4
    assert torch.equal(windowed(talk["untrained"], MotionIntensity(0.7, 0.2)), audio_only)


def test_motion_without_a_motion_module_is_an_error(comfy_nodes, talk):
    with pytest.raises(
        ValueError, match=r"motion intensity \(ω_l 0.80, ω_b 0.30\) is connected but the fantasytalking_model has no motion module"
    ):
        apply(comfy_nodes, talk, talk["adapter"], motion=MotionIntensity(0.8, 0.3))
    with pytest.raises(ValueError, match="motion_guidance is on but the fantasytalking_model has no motion module"):
        apply(comfy_nodes, talk, talk["adapter"], guidance=True)
    model, positive, _ = apply(comfy_nodes, talk, talk["adapter"])
    negative = run(
        comfy_nodes,
        "FantasyTalkingConditioningSettings",
        conditioning=conditioning(40),
        audio_scale=0.0,
        identity_scale=0.5,
        motion=MotionIntensity(0.2, 0.6),
    )[0]
    with pytest.raises(ValueError, match="asks for a motion intensity.*no motion module"):
        denoise_once(model, positive, negative, cfg=3.0)


def test_motion_module_of_another_width_is_rejected(comfy_nodes, talk, model_files):
    from tiny_models import random_motion_state

    from fantasy_core.module_file import save_fantasytalking_file
    from fantasy_core.motion.intensity import MotionCalibration
    from fantasy_core.motion.model import MotionConfig

    config = MotionConfig(hidden_dim=16, model_dim=5120)
    save_fantasytalking_file(
        str(model_files["root"] / "fantasytalking" / "motion_14b.safetensors"),
        motion=(random_motion_state(config), config, MotionCalibration()),
    )
    modules = load(comfy_nodes, "motion_14b.safetensors", chained=talk["adapter"])
    with pytest.raises(
        ValueError,
        match=r"motion module \('motion_14b.safetensors'\) makes 5120-wide embeddings, but this model's time embedding is 256 wide",
    ):
        apply(comfy_nodes, talk, modules, motion=MotionIntensity())


# --- the motion nodes ---


def test_motion_intensity_node_presets_and_sliders(comfy_nodes):
    def intensity(preset, lip=0.5, body=0.5):
        level = run(comfy_nodes, "FantasyTalkingMotionIntensity", preset=preset, omega_lip=lip, omega_body=body)[0]
        return level.lip, level.body

    assert intensity("subtle") == (0.1, 0.1)
    assert intensity("natural") == (0.5, 0.5)
    assert intensity("intense") == (1.0, 1.0)
    assert intensity("custom", 0.2, 0.7) == (0.2, 0.7)
    with pytest.raises(ValueError, match="preset 'subtle' sets ω_l = 0.1 and ω_b = 0.1, but the sliders say 0.2 and 0.7"):
        intensity("subtle", 0.2, 0.7)
    with pytest.raises(ValueError, match="omega_lip must be a number from 0 to 1"):
        intensity("custom", 1.5, 0.5)  # what a linked value out of range meets (widgets are range-checked by ComfyUI)


def synthetic_clip(**motion):
    from motion_clips import clip

    return torch.from_numpy(np.stack(clip(**motion))).float() / 255.0


@pytest.mark.face
def test_measure_motion_node_from_images_and_from_a_video(comfy_nodes):
    from comfy_api.latest import InputImpl, Types
    from motion_clips import FPS

    images = synthetic_clip(expression=8, body=8)
    motion, lip, body, plot = run(comfy_nodes, "FantasyTalkingMeasureMotion", images=images, fps=FPS, body_model="mediapipe pose")
    assert (motion.lip, motion.body) == (lip, body) and 0.3 < lip < 0.8 and body > 0
    assert plot.shape == (1, 320, 768, 3) and plot.dtype == torch.float32
    video = InputImpl.VideoFromComponents(Types.VideoComponents(images=images, audio=None, frame_rate=FPS))
    again = run(comfy_nodes, "FantasyTalkingMeasureMotion", video=video, fps=25.0, body_model="mediapipe pose")[0]
    assert (again.lip, again.body) == (lip, body)  # the video's own 10 fps, not the fps widget, was used
    rgba = torch.cat([images, torch.ones_like(images[..., :1])], dim=-1)  # an IMAGE with alpha: the colour is measured
    with_alpha = run(comfy_nodes, "FantasyTalkingMeasureMotion", images=rgba, fps=FPS, body_model="mediapipe pose")[0]
    assert (with_alpha.lip, with_alpha.body) == (lip, body)
    still = run(comfy_nodes, "FantasyTalkingMeasureMotion", images=synthetic_clip(), fps=FPS, body_model="mediapipe pose")[0]
    assert (still.lip, still.body) == (0.0, 0.0)


@pytest.mark.face
def test_measure_motion_uses_the_motion_files_calibration(comfy_nodes, talk, model_files):
    from motion_clips import FPS
    from tiny_models import TINY_MOTION

    from fantasy_core.module_file import save_fantasytalking_file
    from fantasy_core.motion.intensity import MotionCalibration

    wide = MotionCalibration(lip=((0, 0.0), (100, 1.0)), body=((0, 0.0), (100, 1.0)))
    save_fantasytalking_file(
        str(model_files["root"] / "fantasytalking" / "motion_wide.safetensors"), motion=(model_files["motion_state"], TINY_MOTION, wide)
    )
    images = synthetic_clip(expression=8)
    default = run(comfy_nodes, "FantasyTalkingMeasureMotion", images=images, fps=FPS, body_model="mediapipe pose")[0]
    calibrated = run(
        comfy_nodes,
        "FantasyTalkingMeasureMotion",
        images=images,
        fps=FPS,
        body_model="mediapipe pose",
        fantasytalking_model=load(comfy_nodes, "motion_wide.safetensors"),
    )[0]
    assert calibrated.lip < 0.01 < default.lip  # the same raw value read against another table
    with pytest.raises(ValueError, match="has no motion module.*disconnect the input"):
        run(
            comfy_nodes,
            "FantasyTalkingMeasureMotion",
            images=images,
            fps=FPS,
            body_model="mediapipe pose",
            fantasytalking_model=talk["adapter"],
        )


def test_measure_motion_input_errors(comfy_nodes):
    with pytest.raises(ValueError, match="connect exactly one of 'images'.*or 'video'"):
        run(comfy_nodes, "FantasyTalkingMeasureMotion", fps=25.0, body_model="mediapipe pose")
    with pytest.raises(FileNotFoundError, match="'dwpose/dw-ll_ucoco_384.onnx' was not found.*models/dwpose"):
        run(
            comfy_nodes, "FantasyTalkingMeasureMotion", images=torch.rand(30, 64, 64, 3), fps=25.0, body_model="dwpose/dw-ll_ucoco_384.onnx"
        )


@pytest.mark.face
def test_measure_motion_reports_a_clip_that_is_too_short(comfy_nodes):
    with pytest.raises(ValueError, match=r"The reference clip has 8 frames \(0.32 s at 25 fps\).*at least 50 frames"):
        run(comfy_nodes, "FantasyTalkingMeasureMotion", images=synthetic_clip(frames=8), fps=25.0, body_model="mediapipe pose")


@pytest.mark.face
def test_measure_motion_decodes_a_video_file_at_its_own_frame_rate(comfy_nodes, tmp_path):
    import av
    from comfy_api.latest import InputImpl
    from motion_clips import FPS, clip

    frames = clip(expression=8, body=8)
    path = str(tmp_path / "reference.mp4")
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=int(FPS), options={"crf": "8"})
        stream.width, stream.height, stream.pix_fmt = 512, 512, "yuv420p"
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    images = torch.from_numpy(np.stack(frames)).float() / 255.0
    from_images = run(comfy_nodes, "FantasyTalkingMeasureMotion", images=images, fps=FPS, body_model="mediapipe pose")[0]
    from_file = run(comfy_nodes, "FantasyTalkingMeasureMotion", video=InputImpl.VideoFromFile(path), fps=25.0, body_model="mediapipe pose")[
        0
    ]
    # the same clip through a lossy codec: ω close, not equal (a wrong frame rate would change the windows and ω)
    assert from_file.lip == pytest.approx(from_images.lip, abs=0.1) and from_file.body == pytest.approx(from_images.body, abs=0.15)


def test_three_pass_guider_keeps_the_positives_motion_in_its_audio_free_pass(comfy_nodes, talk):
    model, positive, negative = apply(comfy_nodes, talk, talk["with_motion"], motion=MotionIntensity(0.8, 0.3), guidance=True)
    recorder = CallRecorder()
    guider = run(
        comfy_nodes,
        "FantasyTalkingCFGGuider",
        model=recorder.attach(model),
        positive=positive,
        negative=negative,
        cfg=5.0,
        audio_cfg=4.5,
        audio_cfg_start=0.0,
        audio_cfg_end=1.0,
    )[0]
    denoise_once(None, positive, negative, guider=guider)
    # negative: neutral (motion guidance); the audio-free pass: the positive's ω; the positive: its ω
    assert by_audio(recorder, talk, (0.5, 0.5), (0.8, 0.3)) == [(0.0, (0.5, 0.5)), (0.0, (0.8, 0.3)), (1.0, (0.8, 0.3))]
