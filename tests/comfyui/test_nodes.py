"""The core nodes in a real ComfyUI, in-process, with tiny random weights in the real file formats."""

import pytest
import torch
import torch.nn.functional as F
from naive_reference import naive_attention, naive_frame_attention, naive_official_windows
from tiny_models import voice_like

NODE_IDS = [
    "FantasyTalkingModelLoader",
    "FantasyTalkingWav2VecLoader",
    "FantasyTalkingAudioEmbeds",
    "FantasyTalkingApply",
    "FantasyTalkingConditioningSettings",
    "FantasyTalkingCFGGuider",
    "FantasyTalkingSampler",
    "FantasyTalkingLongVideo",
]
LATENT_FRAMES, LATENT_HW = 3, 8  # 9 frames of 64x64


def run(comfy_nodes, node_id, **inputs):
    """A node's outputs, for V3 nodes and for the V1 nodes some ComfyUI versions still have (CFGGuider in v0.3.64)."""
    node = comfy_nodes[node_id]
    if hasattr(node, "GET_SCHEMA"):  # V3
        return node.execute(**inputs).result
    return getattr(node(), node.FUNCTION)(**inputs)


def apply(comfy_nodes, loaded, positive, negative, scale=1.0, model=None, embeds=None):
    """FantasyTalking Apply: (model, positive hearing the audio at ``scale``, negative silent)."""
    return run(
        comfy_nodes,
        "FantasyTalkingApply",
        model=loaded["wan"] if model is None else model,
        fantasytalking_model=loaded["adapter"],
        audio_embeds=loaded["embeds"] if embeds is None else embeds,
        audio_scale=scale,
        positive=positive,
        negative=negative,
    )


def hear(comfy_nodes, conditioning, scale):
    """The conditioning, its passes hearing the audio at ``scale`` (0: silent)."""
    return run(comfy_nodes, "FantasyTalkingConditioningSettings", conditioning=conditioning, audio_scale=scale)[0]


@pytest.fixture(scope="module")
def loaded(comfy_nodes, model_files):
    import comfy.sd

    (adapter,) = run(comfy_nodes, "FantasyTalkingModelLoader", model_name="fantasytalking_tiny.ckpt", weight_dtype="default")
    (encoder,) = run(comfy_nodes, "FantasyTalkingWav2VecLoader", model_name="wav2vec2-tiny-960h")
    wan = comfy.sd.load_diffusion_model(model_files["wan"])
    audio = {"waveform": torch.stack([voice_like(1.0, 22050), voice_like(1.0, 22050, seed=4)])[None], "sample_rate": 22050}
    embeds, num_frames, fps, trimmed = run(
        comfy_nodes, "FantasyTalkingAudioEmbeds", audio=audio, audio_encoder=encoder, fps=23, max_frames=9
    )
    return {
        "adapter": adapter,
        "encoder": encoder,
        "wan": wan,
        "embeds": embeds,
        "num_frames": num_frames,
        "fps": fps,
        "trimmed": trimmed,
        "audio": audio,
    }


def conditioning(seed, frames=LATENT_FRAMES):
    import comfy.clip_vision

    gen = torch.Generator().manual_seed(seed)
    clip = comfy.clip_vision.Output()
    clip.penultimate_hidden_states = torch.randn(1, 257, 1280, generator=gen) * 0.5
    extra = {
        "clip_vision_output": clip,
        "concat_latent_image": torch.randn(1, 16, frames, LATENT_HW, LATENT_HW, generator=gen) * 0.5,
        "concat_mask": torch.zeros(1, 1, frames, LATENT_HW, LATENT_HW),
    }
    return [[torch.randn(1, 512, 4096, generator=gen) * 0.5, extra]]


def denoise_once(model, positive, negative, cfg=1.0, guider=None, frames=LATENT_FRAMES, seed=0):
    """One Euler step from the first sigma to 0: the result is exactly the (guided) denoised prediction."""
    import comfy.sample
    import comfy.samplers

    latent = torch.zeros(1, 16, frames, LATENT_HW, LATENT_HW)
    noise = comfy.sample.prepare_noise(latent, seed)
    sigmas = torch.tensor([0.8, 0.0])
    sampler = comfy.samplers.sampler_object("euler")
    if guider is None:
        return comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent, disable_pbar=True, seed=seed)
    guider.set_conds(positive, negative)
    return guider.sample(noise, latent, sampler, sigmas, disable_pbar=True, seed=seed)


def test_all_nodes_registered_with_tooltips(comfy_nodes):
    for node_id in NODE_IDS:
        schema = comfy_nodes[node_id].GET_SCHEMA()
        assert schema.category == "FantasyTalking"
        for item in schema.inputs:
            assert item.tooltip, f"{node_id}.{item.id} has no tooltip"


def test_adapter_loader_keeps_the_file_weights_on_the_offload_device(loaded, model_files):
    import comfy.model_management

    patcher = loaded["adapter"].audio
    state = patcher.model.state_dict()
    for key, value in model_files["adapter_state"].items():
        assert torch.equal(state[key], value), key
    assert patcher.offload_device == comfy.model_management.unet_offload_device()
    assert type(patcher.model.blocks[0].k_proj).__module__ == "comfy.ops"


@pytest.mark.parametrize(
    "weight_dtype, blocks, projection", [("fp16", torch.float16, torch.float16), ("fp8_e4m3fn", torch.float8_e4m3fn, torch.float32)]
)
def test_adapter_weight_dtype_option(comfy_nodes, model_files, weight_dtype, blocks, projection):
    (modules,) = run(comfy_nodes, "FantasyTalkingModelLoader", model_name="fantasytalking_tiny.ckpt", weight_dtype=weight_dtype)
    assert modules.audio.model.blocks[1].v_proj.weight.dtype == blocks
    assert modules.audio.model.proj_model.proj.weight.dtype == projection


def test_adapter_loader_errors_name_the_file_and_folder(comfy_nodes, model_files):
    from safetensors.torch import save_file

    save_file({"patch_embedding.weight": torch.zeros(2)}, str(model_files["root"] / "fantasytalking" / "not_an_adapter.safetensors"))
    with pytest.raises(ValueError, match="'not_an_adapter.safetensors' is not a FantasyTalking adapter"):
        run(comfy_nodes, "FantasyTalkingModelLoader", model_name="not_an_adapter.safetensors", weight_dtype="default")
    with pytest.raises(FileNotFoundError, match="'missing.ckpt' was not found in .*fantasytalking"):
        run(comfy_nodes, "FantasyTalkingModelLoader", model_name="missing.ckpt", weight_dtype="default")


def test_wav2vec_loader_matches_transformers_on_the_official_input(loaded, model_files):
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = model_files["wav2vec"]
    prepared = loaded["embeds"].audio
    values = Wav2Vec2FeatureExtractor.from_pretrained(folder)(
        prepared.waveform.numpy(), sampling_rate=16000, return_tensors="pt"
    ).input_values
    with torch.no_grad():
        expected = Wav2Vec2Model.from_pretrained(folder).eval()(values).last_hidden_state[0]
    torch.testing.assert_close(loaded["embeds"].features, expected, rtol=1e-4, atol=1e-4)


def test_wav2vec_single_file_with_old_weight_norm_names(comfy_nodes, loaded, model_files, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(model_files["wav2vec"]) + "/model.safetensors")
    renamed = {
        k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v"): v
        for k, v in state.items()
    }
    assert any(k.endswith("weight_g") for k in renamed)
    path = model_files["root"] / "audio_encoders" / "wav2vec2_old_names.safetensors"
    save_file(renamed, str(path))
    (encoder,) = run(comfy_nodes, "FantasyTalkingWav2VecLoader", model_name="wav2vec2_old_names.safetensors")
    for key, value in loaded["encoder"].model.state_dict().items():
        assert torch.equal(encoder.model.state_dict()[key], value), key


def test_wav2vec_file_with_missing_weights_is_rejected(comfy_nodes, model_files):
    from safetensors.torch import load_file, save_file

    state = load_file(str(model_files["wav2vec"]) + "/model.safetensors")
    del state["wav2vec2.encoder.layers.0.attention.k_proj.weight"]
    save_file(state, str(model_files["root"] / "audio_encoders" / "wav2vec2_broken.safetensors"))
    with pytest.raises(ValueError, match="1 missing.*encoder.layers.0.attention.k_proj.weight"):
        run(comfy_nodes, "FantasyTalkingWav2VecLoader", model_name="wav2vec2_broken.safetensors")


def test_audio_embeds_outputs(loaded):
    embeds = loaded["embeds"]
    assert loaded["num_frames"] == 9 and loaded["fps"] == 23.0
    assert embeds.windows.latent_frames == LATENT_FRAMES
    expected_tokens = (int(9 / 23 * 16000) - 400) // 320 + 1
    assert embeds.features.shape == (expected_tokens, 768)
    assert loaded["trimmed"]["sample_rate"] == 22050
    assert loaded["trimmed"]["waveform"].shape == (1, 2, int(9 / 23 * 22050))


def test_our_encoder_works_with_core_audio_encoder_encode(comfy_nodes, loaded):
    prepared = loaded["embeds"].audio
    audio = {"waveform": prepared.waveform[None, None], "sample_rate": 16000}
    (output,) = run(comfy_nodes, "AudioEncoderEncode", audio_encoder=loaded["encoder"], audio=audio)
    torch.testing.assert_close(output["encoded_audio"][0].float(), loaded["embeds"].features, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("node_id", ["FantasyTalkingAudioEmbeds", "AudioEncoderEncode"])
def test_non_finite_voice_samples_are_reported_by_both_encoding_paths(comfy_nodes, loaded, node_id):
    waveform = voice_like(1.0, 22050)[None, None].clone()
    waveform[0, 0, 700] = float("nan")
    audio = {"waveform": waveform, "sample_rate": 22050}
    extra = {"fps": 23, "max_frames": 81} if node_id == "FantasyTalkingAudioEmbeds" else {}
    with pytest.raises(ValueError, match="1 non-finite samples \\(NaN or infinity; the first at sample 700\\)"):
        run(comfy_nodes, node_id, audio=audio, audio_encoder=loaded["encoder"], **extra)


def naive_reference_model(wan, adapter_state, embeds, scale):
    """Replace each block's cross-attention forward with the official formula restated naively (test-only)."""
    import comfy.model_management

    comfy.model_management.unload_all_models()  # a patched clone's twins leave the model (object patches undone)
    proj = F.layer_norm(
        embeds.features @ adapter_state["proj_model.proj.weight"].T,
        (adapter_state["proj_model.norm.bias"].shape[0],),
        adapter_state["proj_model.norm.weight"],
        adapter_state["proj_model.norm.bias"],
        eps=1e-5,
    )
    windows, k_lens = naive_official_windows(proj, embeds.num_frames)
    k_lens = torch.tensor(k_lens)[None]

    def forward_for(index, attn):
        def forward(x, context, context_img_len, transformer_options={}):  # noqa: B006 (WanT2VCrossAttention's)
            heads = attn.num_heads
            q = attn.norm_q(attn.q(x))
            img, txt = context[:, :context_img_len], context[:, context_img_len:]
            keys = windows @ adapter_state[f"blocks.{index}.k_proj.weight"].T
            values = windows @ adapter_state[f"blocks.{index}.v_proj.weight"].T
            out = []
            for b in range(x.shape[0]):
                text = naive_attention(q[b], attn.norm_k(attn.k(txt[b])), attn.v(txt[b]), heads)
                image = naive_attention(q[b], attn.norm_k_img(attn.k_img(img[b])), attn.v_img(img[b]), heads)
                audio = naive_frame_attention(q[b : b + 1], keys[None], values[None], k_lens, heads)[0]
                out.append(text + image + scale * audio)
            return attn.o(torch.stack(out))

        return forward

    for index, block in enumerate(wan.blocks):
        block.cross_attn.forward = forward_for(index, block.cross_attn)


def restore(wan):
    for block in wan.blocks:
        block.cross_attn.__dict__.pop("forward", None)


def test_one_evaluation_through_comfyui_equals_the_naive_official_formula(comfy_nodes, loaded, model_files):
    positive, negative = conditioning(1), conditioning(2)
    patched, heard, silent = apply(comfy_nodes, loaded, positive, negative, scale=1.5)
    through_comfy = denoise_once(patched, heard, silent)
    wan = loaded["wan"].model.diffusion_model
    naive_reference_model(wan, model_files["adapter_state"], loaded["embeds"], 1.5)
    try:
        reference = denoise_once(loaded["wan"], positive, negative)
    finally:
        restore(wan)
    torch.testing.assert_close(through_comfy, reference, rtol=1e-4, atol=1e-4)
    plain = denoise_once(loaded["wan"], positive, negative)
    assert (through_comfy - plain).abs().max() > 1e-3  # audio changes the output


def test_scale_zero_is_the_unpatched_model_and_nothing_is_left_behind(comfy_nodes, loaded):
    wan = loaded["wan"]
    before = (dict(wan.wrappers), dict(wan.additional_models))
    positive, negative = conditioning(3), conditioning(4)
    silent, quiet_positive, quiet_negative = apply(comfy_nodes, loaded, positive, negative, scale=0.0)
    plain = denoise_once(wan, positive, negative)
    assert torch.equal(denoise_once(silent, quiet_positive, quiet_negative, cfg=3.0), denoise_once(wan, positive, negative, cfg=3.0))
    assert torch.equal(denoise_once(silent, quiet_positive, quiet_negative), plain)
    assert (dict(wan.wrappers), dict(wan.additional_models)) == before  # the input model is untouched
    for block in wan.model.diffusion_model.blocks:
        assert not block.cross_attn.norm_q._forward_hooks and not block.cross_attn.o._forward_pre_hooks
    assert torch.equal(denoise_once(wan, positive, negative), plain)


def test_downstream_clones_share_the_patch_and_copy_no_weights(comfy_nodes, loaded):
    import comfy.patcher_extension

    patched = apply(comfy_nodes, loaded, conditioning(1), conditioning(2))[0]
    downstream = patched.clone().clone()
    for path in ("diffusion_model.blocks.0.cross_attn.norm_q", "diffusion_model.blocks.1.cross_attn.o", "diffusion_model.time_embedding.2"):
        assert downstream.object_patches[path] is patched.object_patches[path]
    (wrapper,) = downstream.get_wrappers(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "fantasytalking")
    assert wrapper.__self__.modules.audio.model is loaded["adapter"].audio.model  # the loaded adapter itself
    # a 9-frame track's keys and values are kept for the run: ComfyUI need not load the adapter while sampling
    assert downstream.get_additional_models_with_key("fantasytalking") == []


def test_guider_equals_the_official_formula_on_three_separate_passes(comfy_nodes, loaded):
    cfg, audio_cfg = 5.0, 4.5
    positive, negative = conditioning(5), conditioning(6)
    with_audio, heard, silent = apply(comfy_nodes, loaded, positive, negative)
    cond = denoise_once(with_audio, heard, silent)
    noaudio = denoise_once(loaded["wan"], positive, negative)
    uncond = denoise_once(loaded["wan"], negative, positive)
    (guider,) = run(
        comfy_nodes,
        "FantasyTalkingCFGGuider",
        model=with_audio,
        positive=heard,
        negative=silent,
        cfg=cfg,
        audio_cfg=audio_cfg,
        audio_cfg_start=0.0,
        audio_cfg_end=1.0,
    )
    guided = denoise_once(with_audio, heard, silent, guider=guider)
    torch.testing.assert_close(guided, uncond + cfg * (noaudio - uncond) + audio_cfg * (cond - noaudio), rtol=1e-4, atol=1e-4)
    (two_pass,) = run(
        comfy_nodes,
        "FantasyTalkingCFGGuider",
        model=with_audio,
        positive=heard,
        negative=silent,
        cfg=1.0,
        audio_cfg=audio_cfg,
        audio_cfg_start=0.0,
        audio_cfg_end=1.0,
    )
    torch.testing.assert_close(
        denoise_once(with_audio, heard, silent, guider=two_pass), noaudio + audio_cfg * (cond - noaudio), rtol=1e-4, atol=1e-4
    )


def test_frame_count_mismatch_is_reported(comfy_nodes, loaded):
    patched, heard, silent = apply(comfy_nodes, loaded, conditioning(7, frames=5), conditioning(8, frames=5))
    with pytest.raises(ValueError, match="made for 9 frames \\(3 latent frames\\).*has 5 latent frames.*WanImageToVideo's length"):
        denoise_once(patched, heard, silent, frames=5)


def test_adapter_for_another_model_size_is_rejected(comfy_nodes, loaded, model_files, tmp_path):
    from tiny_models import in_layout, random_adapter_state, write_checkpoint

    from fantasy_core import AudioAdapterConfig

    big = write_checkpoint(
        str(model_files["root"] / "fantasytalking" / "wide.safetensors"),
        in_layout(random_adapter_state(AudioAdapterConfig(768, 24, 384, 3)), "repack"),
    )
    assert big
    (wide,) = run(comfy_nodes, "FantasyTalkingModelLoader", model_name="wide.safetensors", weight_dtype="default")
    with pytest.raises(ValueError, match="adapter has 3 blocks of width 384, but the model has 2 blocks of width 256"):
        apply(comfy_nodes, {**loaded, "adapter": wide}, conditioning(1), conditioning(2))


def test_non_wan_model_is_rejected(comfy_nodes, loaded, comfy):
    import comfy.model_patcher

    other = comfy.model_patcher.ModelPatcher(torch.nn.Linear(2, 2), torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(ValueError, match="needs a Wan2.1 image-to-video model"):
        apply(comfy_nodes, loaded, conditioning(1), conditioning(2), model=other)


def test_long_audio_is_encoded_in_chunks_with_progress(comfy_nodes, loaded):
    import comfy.utils

    updates = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: updates.append((value, total)))
    try:
        audio = {"waveform": voice_like(65.0, 16000)[None, None], "sample_rate": 16000}
        embeds, num_frames, _, _ = run(
            comfy_nodes, "FantasyTalkingAudioEmbeds", audio=audio, audio_encoder=loaded["encoder"], fps=23, max_frames=100001
        )
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert num_frames == int(23 * 65.0 // 4) * 4 + 5
    kept = min(int(num_frames / 23 * 16000), 65 * 16000)  # the official trim never pads
    assert embeds.features.shape[0] == (kept - 400) // 320 + 1
    # 3249 tokens; each 30 s chunk keeps 999 (1499 minus 2 x 250 context tokens): 4 chunks, one update each
    assert updates == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_core_audio_encoder_loader_output_is_accepted_and_normalised(comfy_nodes, model_files):
    """Core's loader builds a 768-wide wav2vec2 without input normalisation; the embeds node must add it."""
    from safetensors.torch import save_file
    from tiny_models import comfy_wav2vec_config
    from transformers import Wav2Vec2Model

    torch.manual_seed(5)
    state = Wav2Vec2Model(comfy_wav2vec_config(num_layers=12)).state_dict()  # core's loader expects all 12 layers
    save_file(
        {k: v.contiguous() for k, v in state.items()}, str(model_files["root"] / "audio_encoders" / "wav2vec2_base_comfy.safetensors")
    )
    (core_encoder,) = run(comfy_nodes, "AudioEncoderLoader", audio_encoder_name="wav2vec2_base_comfy.safetensors")
    (our_encoder,) = run(comfy_nodes, "FantasyTalkingWav2VecLoader", model_name="wav2vec2_base_comfy.safetensors")
    assert core_encoder.model.do_normalize is False
    seen = []
    hook = core_encoder.model.feature_extractor.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    audio = {"waveform": (0.2 * voice_like(1.0, 16000) + 0.05)[None, None], "sample_rate": 16000}
    try:
        from_core = run(comfy_nodes, "FantasyTalkingAudioEmbeds", audio=audio, audio_encoder=core_encoder, fps=23, max_frames=81)[0]
    finally:
        hook.remove()
    (heard,) = seen
    assert abs(float(heard.mean())) < 1e-4 and abs(float(heard.std()) - 1) < 1e-3  # normalised before the model
    from_ours = run(comfy_nodes, "FantasyTalkingAudioEmbeds", audio=audio, audio_encoder=our_encoder, fps=23, max_frames=81)[0]
    relative = float((from_core.features - from_ours.features).norm() / from_ours.features.norm())
    assert relative < 1e-2, relative  # core keeps the weights in fp16 on this device; ours are fp32 as officially


def test_non_wav2vec_encoder_is_rejected(comfy_nodes, loaded):
    class WhisperLike:
        model = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match="needs wav2vec2-base-960h, but this encoder is Linear"):
        run(comfy_nodes, "FantasyTalkingAudioEmbeds", audio=loaded["audio"], audio_encoder=WhisperLike(), fps=23, max_frames=81)


def test_ksampler_negative_pass_runs_without_audio(comfy_nodes, loaded):
    """Core CFG on the patched model: uncond (no audio) + cfg * (cond with audio - uncond)."""
    positive, negative = conditioning(13), conditioning(14)
    patched, heard, silent = apply(comfy_nodes, loaded, positive, negative)
    cond = denoise_once(patched, heard, silent)
    uncond = denoise_once(loaded["wan"], negative, positive)
    torch.testing.assert_close(denoise_once(patched, heard, silent, cfg=3.0), uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-4)


def test_hooks_are_removed_when_sampling_fails_inside_the_model(comfy_nodes, loaded):
    patched, heard, silent = apply(comfy_nodes, loaded, conditioning(17), conditioning(18))
    failing = patched.clone()

    def interrupt(args, extra):
        import comfy.model_management

        raise comfy.model_management.InterruptProcessingException()

    failing.set_model_patch_replace(interrupt, "dit", "double_block", 1)
    import comfy.model_management

    with pytest.raises(comfy.model_management.InterruptProcessingException):
        denoise_once(failing, heard, silent)
    for block in loaded["wan"].model.diffusion_model.blocks:
        assert not block.cross_attn.norm_q._forward_hooks and not block.cross_attn.o._forward_pre_hooks


def test_text_to_video_wan_is_rejected(comfy, comfy_nodes, loaded, model_files):
    import comfy.ops
    import comfy.sd
    from comfy.ldm.wan.model import WanModel
    from safetensors.torch import save_file
    from tiny_models import TINY_WAN

    t2v = WanModel(model_type="t2v", in_dim=16, out_dim=16, text_dim=4096, operations=comfy.ops.disable_weight_init, **TINY_WAN)
    path = str(model_files["root"] / "diffusion_models" / "wan2.1_t2v_tiny.safetensors")
    save_file({k: torch.randn(v.shape) * 0.05 for k, v in t2v.state_dict().items()}, path)
    with pytest.raises(ValueError, match="this Wan model is text-to-video"):
        apply(comfy_nodes, loaded, conditioning(1), conditioning(2), model=comfy.sd.load_diffusion_model(path))


@pytest.mark.parametrize(
    "in_dim, out_dim, message",
    [
        (36, 16, "this is a Wan2.2 image-to-video model .*no CLIP image cross-attention"),
        (48, 48, "this is a Wan2.2 TI2V model"),
    ],
)
def test_wan22_models_get_their_own_message(comfy, comfy_nodes, loaded, model_files, in_dim, out_dim, message):
    import comfy.ops
    import comfy.sd
    from comfy.ldm.wan.model import WanModel
    from safetensors.torch import save_file
    from tiny_models import TINY_WAN

    wan22 = WanModel(model_type="t2v", in_dim=in_dim, out_dim=out_dim, text_dim=4096, operations=comfy.ops.disable_weight_init, **TINY_WAN)
    path = str(model_files["root"] / "diffusion_models" / f"wan2.2_{in_dim}_tiny.safetensors")
    save_file({k: torch.randn(v.shape) * 0.05 for k, v in wan22.state_dict().items()}, path)
    with pytest.raises(ValueError, match=f"trained on Wan2.1-I2V-14B, but {message}.*Load wan2.1_i2v_720p_14B"):
        apply(comfy_nodes, loaded, conditioning(1), conditioning(2), model=comfy.sd.load_diffusion_model(path))


def test_wav2vec_folder_settings_and_locations(comfy_nodes, model_files):
    import json
    import os
    import shutil

    import folder_paths

    transformers_dir = model_files["root"] / "transformers" / "facebook"
    transformers_dir.mkdir(parents=True)
    folder_paths.add_model_folder_path("transformers", str(model_files["root"] / "transformers"))
    target = transformers_dir / "wav2vec2-raw"
    shutil.copytree(model_files["wav2vec"], target)
    config = json.loads((target / "preprocessor_config.json").read_text())
    (target / "preprocessor_config.json").write_text(json.dumps({**config, "do_normalize": False}))
    schema_inputs = comfy_nodes["FantasyTalkingWav2VecLoader"].GET_SCHEMA().inputs
    assert "facebook/wav2vec2-raw" in schema_inputs[0].options
    (encoder,) = run(comfy_nodes, "FantasyTalkingWav2VecLoader", model_name="facebook/wav2vec2-raw")
    assert encoder.normalize_input is False
    with pytest.raises(FileNotFoundError, match="'nothing-here' was not found in .*audio_encoders.*transformers"):
        run(comfy_nodes, "FantasyTalkingWav2VecLoader", model_name="nothing-here")
    assert os.path.isdir(target)
