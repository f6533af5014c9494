"""FantasyTalking composes with ComfyUI's own model machinery: lowvram streaming, LoRA, ModelSamplingSD3,
EasyCache, TorchCompileModel."""

import contextlib

import pytest
import torch
from taps import CallRecorder
from test_nodes import conditioning, denoise_once, hear, run


@pytest.fixture(scope="module")
def setup(comfy_nodes, model_files):
    import comfy.sd

    (adapter,) = run(comfy_nodes, "FantasyTalkingModelLoader", model_name="fantasytalking_tiny.ckpt", weight_dtype="default")
    (encoder,) = run(comfy_nodes, "FantasyTalkingWav2VecLoader", model_name="wav2vec2-tiny-960h")
    from tiny_models import voice_like

    audio = {"waveform": voice_like(1.0, 16000)[None, None], "sample_rate": 16000}
    embeds = run(comfy_nodes, "FantasyTalkingAudioEmbeds", audio=audio, audio_encoder=encoder, fps=23, max_frames=9)[0]
    wan = comfy.sd.load_diffusion_model(model_files["wan"])
    positive, negative = conditioning(11), conditioning(12)
    return {
        "adapter": adapter,
        "embeds": embeds,
        "wan": wan,
        "positive": hear(comfy_nodes, positive, 1.0),
        "negative": hear(comfy_nodes, negative, 0.0),
        "silent_positive": hear(comfy_nodes, positive, 0.0),
    }


def apply(comfy_nodes, setup, model):
    """The patched model; the setup's positive hears the audio, its negative (and silent_positive) do not."""
    return run(
        comfy_nodes,
        "FantasyTalkingApply",
        model=model,
        fantasytalking_model=setup["adapter"],
        audio_embeds=setup["embeds"],
        audio_scale=1.0,
        positive=setup["positive"],
        negative=setup["negative"],
    )[0]


@contextlib.contextmanager
def forced_lowvram():
    """Make ComfyUI treat the CPU as a device with no VRAM, so weights stay offloaded and are cast per layer."""
    import comfy.model_management as mm

    saved = mm.vram_state, mm.is_device_cpu
    mm.unload_all_models()
    mm.vram_state, mm.is_device_cpu = mm.VRAMState.NO_VRAM, (lambda device: False)
    try:
        yield
    finally:
        mm.vram_state, mm.is_device_cpu = saved
        mm.unload_all_models()


def test_identical_with_lowvram_streaming_forced(comfy_nodes, setup):
    import comfy.model_management as mm

    patched = apply(comfy_nodes, setup, setup["wan"])
    full = denoise_once(patched, setup["positive"], setup["negative"], cfg=3.0)
    streamed_flags = {}
    with forced_lowvram():
        streamed = denoise_once(patched, setup["positive"], setup["negative"], cfg=3.0)
        for loaded in mm.current_loaded_models:
            if loaded.model is setup["adapter"].audio:
                streamed_flags["adapter"] = loaded.model.model.model_lowvram
            if loaded.model.model is setup["wan"].model:
                streamed_flags["wan"] = loaded.model.model.model_lowvram
    # the Wan streams; the adapter is never loaded: the run's keys and values stand in for its weights
    assert streamed_flags == {"wan": True}
    assert torch.equal(streamed, full)


@pytest.fixture(scope="module")
def lora_name(comfy, model_files):
    from tiny_models import save_tiny_wan_lora

    save_tiny_wan_lora(str(model_files["root"] / "loras" / "tiny_lora.safetensors"))
    return "tiny_lora.safetensors"


def test_lora_before_or_after_apply_gives_the_same_result(comfy_nodes, setup, lora_name):
    lora_loader = comfy_nodes["LoraLoaderModelOnly"]()
    with_lora = lora_loader.load_lora_model_only(setup["wan"], lora_name, 1.0)[0]
    lora_then_audio = apply(comfy_nodes, setup, with_lora)
    audio_then_lora = lora_loader.load_lora_model_only(apply(comfy_nodes, setup, setup["wan"]), lora_name, 1.0)[0]
    positive, negative = setup["positive"], setup["negative"]
    a = denoise_once(lora_then_audio, positive, negative)
    b = denoise_once(audio_then_lora, positive, negative)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    lora_only = denoise_once(with_lora, positive, negative)
    audio_only = denoise_once(apply(comfy_nodes, setup, setup["wan"]), positive, negative)
    assert (a - lora_only).abs().max() > 1e-3 and (a - audio_only).abs().max() > 1e-3
    assert torch.equal(denoise_once(apply(comfy_nodes, setup, with_lora), setup["silent_positive"], negative), lora_only)


def test_model_sampling_shift_before_or_after_apply(comfy_nodes, setup):
    shift = comfy_nodes["ModelSamplingSD3"]()
    a = denoise_once(shift.patch(apply(comfy_nodes, setup, setup["wan"]), 5.0)[0], setup["positive"], setup["negative"])
    b = denoise_once(apply(comfy_nodes, setup, shift.patch(setup["wan"], 5.0)[0]), setup["positive"], setup["negative"])
    assert torch.equal(a, b)
    assert (a - denoise_once(shift.patch(setup["wan"], 5.0)[0], setup["positive"], setup["negative"])).abs().max() > 1e-3


def sample_steps(model, positive, negative, steps=6, cfg=3.0):
    import comfy.sample
    import comfy.samplers

    latent = torch.zeros(1, 16, 3, 8, 8)
    sigmas = torch.linspace(1.0, 0.0, steps + 1)
    return comfy.sample.sample_custom(
        model,
        comfy.sample.prepare_noise(latent, 0),
        cfg,
        comfy.samplers.sampler_object("euler"),
        sigmas,
        positive,
        negative,
        latent,
        disable_pbar=True,
        seed=0,
    )


def test_easycache_runs_with_the_audio_patch(comfy_nodes, setup):
    patched = apply(comfy_nodes, setup, setup["wan"])
    (cached,) = run(comfy_nodes, "EasyCache", model=patched, reuse_threshold=0.2, start_percent=0.15, end_percent=0.95, verbose=False)
    with_cache = sample_steps(cached, setup["positive"], setup["negative"])
    without_audio = sample_steps(
        run(comfy_nodes, "EasyCache", model=setup["wan"], reuse_threshold=0.2, start_percent=0.15, end_percent=0.95, verbose=False)[0],
        setup["positive"],
        setup["negative"],
    )
    assert torch.isfinite(with_cache).all()
    assert (with_cache - without_audio).abs().max() > 1e-3


def test_torch_compile_model_matches_eager(comfy_nodes, setup):
    patched = apply(comfy_nodes, setup, setup["wan"])
    eager = denoise_once(patched, setup["positive"], setup["negative"])
    (compiled,) = run(comfy_nodes, "TorchCompileModel", model=patched, backend="inductor")
    result = denoise_once(compiled, setup["positive"], setup["negative"])
    torch.testing.assert_close(result, eager, rtol=1e-4, atol=1e-4)


def test_an_attention_override_changes_wans_attention_only(comfy_nodes, setup):
    """What SageAttention switches do (KJNodes' Patch Sage Attention sets ComfyUI's optimized_attention_override; the
    --use-sage-attention flag swaps the function it wraps): Wan's own attention goes through it, the pack's branch
    attention (torch SDPA) never does, and a faithful override leaves the result as it was."""
    patched = apply(comfy_nodes, setup, setup["wan"])
    reference = denoise_once(patched, setup["positive"], setup["negative"])
    shapes = []

    def override(func, *args, **kwargs):
        shapes.append(tuple(args[0].shape))
        return func(*args, **kwargs)

    overridden = patched.clone()
    overridden.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = override
    assert torch.equal(denoise_once(overridden, setup["positive"], setup["negative"]), reference)
    blocks = len(setup["wan"].model.diffusion_model.blocks)
    assert len(shapes) == 3 * blocks  # one call at cfg 1: self-attention, text and image cross-attention per block


@pytest.mark.parametrize("frames, kept_for_the_run", [(21, True), (129, False)])
def test_context_windows_get_their_own_slice_of_the_whole_track_windows(comfy_nodes, setup, frames, kept_for_the_run):
    """A short track's keys and values are made once for the run; a track whose cache would outgrow the adapter's k/v
    weights (33 latent frames x 17 slots > the tiny adapter's 512-wide context) has each call's made for its frames,
    and ComfyUI keeps the adapter loaded for that. Either way each window hears exactly its own frames."""
    from tiny_models import voice_like

    encoder = run(comfy_nodes, "FantasyTalkingWav2VecLoader", model_name="wav2vec2-tiny-960h")[0]
    audio = {"waveform": voice_like(frames / 23 + 0.2, 16000, seed=7)[None, None], "sample_rate": 16000}
    embeds = run(comfy_nodes, "FantasyTalkingAudioEmbeds", audio=audio, audio_encoder=encoder, fps=23, max_frames=frames)[0]
    whole = embeds.windows
    latent = (frames - 1) // 4 + 1
    assert whole.latent_frames == latent
    patched, positive, negative = run(
        comfy_nodes,
        "FantasyTalkingApply",
        model=setup["wan"],
        fantasytalking_model=setup["adapter"],
        audio_embeds=embeds,
        audio_scale=1.0,
        positive=conditioning(21, frames=latent),
        negative=conditioning(22, frames=latent),
    )
    loaded_with_the_model = patched.get_additional_models_with_key("fantasytalking")
    assert loaded_with_the_model == ([] if kept_for_the_run else [setup["adapter"].audio])
    settings = dict(
        context_length=9,
        context_overlap=4,
        context_schedule="standard_static",
        context_stride=1,
        closed_loop=False,
        fuse_method="pyramid",
        freenoise=False,
    )
    accepted = {item.id for item in comfy_nodes["WanContextWindowsManual"].GET_SCHEMA().inputs}  # v0.3.64 has no freenoise
    windowed = run(comfy_nodes, "WanContextWindowsManual", model=patched, **{k: v for k, v in settings.items() if k in accepted})[0]
    unpatched = run(comfy_nodes, "WanContextWindowsManual", model=setup["wan"], **{k: v for k, v in settings.items() if k in accepted})[0]
    try:
        denoise_once(unpatched, conditioning(21, frames=latent), conditioning(22, frames=latent), frames=latent)
    except RuntimeError as error:  # ComfyUI v0.3.64 does not cut Wan I2V's concat image per window
        pytest.skip(f"this ComfyUI's context windows cannot run Wan2.1 I2V even without FantasyTalking: {error}")
    recorder = CallRecorder()
    out = denoise_once(recorder.attach(windowed), positive, negative, frames=latent)
    assert torch.isfinite(out).all()
    adapter = setup["adapter"].audio.model
    with torch.no_grad():  # block 0's keys for every latent frame of the whole track, computed apart
        whole_keys = adapter.keys_values(adapter.frame_context(embeds.features, whole), torch.float32)[0][0]
    covered = set()
    for call in recorder.calls:
        frames = call.frames
        assert len(frames) == 3 and frames == list(range(frames[0], frames[0] + 3))
        torch.testing.assert_close(call.audio_keys, whole_keys[:, frames], rtol=1e-6, atol=1e-6)
        covered.update(frames)
    assert covered == set(range(latent)) and len(recorder.calls) >= 2


def test_fp8_weights_give_keys_in_the_compute_dtype(comfy_nodes, setup, model_files):
    """fp8 Wan weights (manual casting) and fp8 module weights: the run's keys and values are made once in the dtype
    Wan computes in, never in fp8, and the audio still changes the result."""
    import comfy.sd

    wan8 = comfy.sd.load_diffusion_model(model_files["wan"], model_options={"dtype": torch.float8_e4m3fn})
    compute = wan8.model.manual_cast_dtype or wan8.model.get_dtype()
    assert wan8.model.diffusion_model.blocks[0].cross_attn.q.weight.dtype == torch.float8_e4m3fn and compute != torch.float8_e4m3fn
    (adapter8,) = run(comfy_nodes, "FantasyTalkingModelLoader", model_name="fantasytalking_tiny.ckpt", weight_dtype="fp8_e4m3fn")
    patched = run(
        comfy_nodes,
        "FantasyTalkingApply",
        model=wan8,
        fantasytalking_model=adapter8,
        audio_embeds=setup["embeds"],
        audio_scale=1.0,
        positive=setup["positive"],
        negative=setup["negative"],
    )[0]
    recorder = CallRecorder()
    voiced = denoise_once(recorder.attach(patched), setup["positive"], setup["negative"], cfg=3.0)
    assert torch.isfinite(voiced).all() and recorder.calls[0].audio_keys.dtype == compute
    assert (voiced - denoise_once(wan8, setup["positive"], setup["negative"], cfg=3.0)).abs().max() > 1e-3


def test_another_nodes_cross_attention_patch_composes_in_either_order(comfy_nodes, setup):
    """Nodes such as KJNodes' WanVideoNAG replace every block's cross-attention forward with an object patch whose code
    still calls norm_q and o. FantasyTalking's terms reach o in either order, and nothing stays on the base model."""
    import types

    import comfy.ldm.wan.model

    ran = []

    def other_node(model):
        patched = model.clone()
        for index in range(len(model.get_model_object("diffusion_model.blocks"))):
            attn = model.get_model_object(f"diffusion_model.blocks.{index}.cross_attn")

            def forward(self, *args, **kwargs):
                ran.append(1)
                return comfy.ldm.wan.model.WanI2VCrossAttention.forward(self, *args, **kwargs)

            patched.add_object_patch(f"diffusion_model.blocks.{index}.cross_attn.forward", types.MethodType(forward, attn))
        return patched

    positive, negative = setup["positive"], setup["negative"]
    plain = denoise_once(setup["wan"], positive, negative)
    expected = denoise_once(apply(comfy_nodes, setup, setup["wan"]), positive, negative)
    assert (expected - plain).abs().max() > 1e-3
    for model in (apply(comfy_nodes, setup, other_node(setup["wan"])), other_node(apply(comfy_nodes, setup, setup["wan"]))):
        ran.clear()
        assert torch.equal(denoise_once(model, positive, negative), expected)
        assert ran  # the other node's forward ran too
        ran.clear()
        assert torch.equal(denoise_once(model, positive, negative), expected)  # and again, in a second run
    assert torch.equal(denoise_once(setup["wan"], positive, negative), plain)
    # ComfyUI restores a patched forward as the bound original; what stands there now is Wan's own
    assert all(
        block.cross_attn.forward.__func__ is comfy.ldm.wan.model.WanI2VCrossAttention.forward
        for block in setup["wan"].model.diffusion_model.blocks
    )


def test_the_runs_keys_exist_before_comfyui_loads_the_model_for_sampling(comfy_nodes, setup, monkeypatch):
    """So ComfyUI's memory accounting, which reads the device's free memory when it loads, sees them."""
    import comfy.model_management
    import comfy.patcher_extension

    patched = apply(comfy_nodes, setup, setup["wan"])
    (wrapper,) = patched.get_wrappers(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "fantasytalking")
    patch, seen = wrapper.__self__, []
    load = comfy.model_management.load_models_gpu

    def spy(models, *args, **kwargs):
        seen.append(patch._run is not None and patch._run.cached_bytes() > 0)
        return load(models, *args, **kwargs)

    monkeypatch.setattr(comfy.model_management, "load_models_gpu", spy)
    denoise_once(patched, setup["positive"], setup["negative"])
    assert seen and all(seen)
    assert patch._run is None  # dropped when the run ended
