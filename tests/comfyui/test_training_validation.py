"""Validation renders during training: they come out as MP4s and TensorBoard images, equal what the nodes make from
the same step's checkpoint (a workflow built here node by node, as the shipped one is), leave the training itself
untouched, are scored for lip sync beside their frames (what `evaluate_sync` gives, or in words why not), and bad
inputs are refused with what to do."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict

import av
import numpy as np
import pytest
import torch
from conftest_helpers import save_astronaut
from dataset_media import speech
from test_nodes import run
from test_training_in_comfyui import LINEAR_ADAM, states
from training_setup import config_of

pytestmark = pytest.mark.face
SPEECH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "media", "speech_a.wav")
ARCFACE_CHOICE = "tiny_training/w600k_r50.onnx"  # the dataset's ArcFace, as a pack in models/insightface


@pytest.fixture(scope="module")
def syncnet_file(tmp_path_factory) -> str:
    """syncnet_v2.model in its real layout (random values), in a models/evaluation folder."""
    from fantasy_core.lipsync.syncnet import SyncNet

    folder = tmp_path_factory.mktemp("evaluation")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(SyncNet().state_dict(), folder / "syncnet_v2.model")
    return str(folder / "syncnet_v2.model")


@pytest.fixture(scope="module")
def dino_folder(tmp_path_factory) -> str:
    """facebook/dino-vitb16's layout, tiny (evaluation_models), made without touching the run's random state."""
    from evaluation_models import write_dino

    root = tmp_path_factory.mktemp("evaluation")
    with torch.random.fork_rng():
        write_dino(str(root))
    return str(root / "dino-vitb16")


@pytest.fixture(scope="module")
def rendered(comfy, made, model_files, syncnet_file, dino_folder, tmp_path_factory):
    """Stage 2, four steps, a render every two, each scored (SyncNet, DINO); and the same run without renders."""
    from dataset_models import tiny_encoders

    from fantasy_train.trainer import train

    root = tmp_path_factory.mktemp("validation")
    pack = model_files["root"] / "insightface" / "models" / "tiny_training"
    pack.mkdir(parents=True, exist_ok=True)
    shutil.copy(os.path.join(made["models"], "arcface.onnx"), pack / "w600k_r50.onnx")
    save_astronaut(root / "portrait.png")
    validation = {
        "every": 2,
        "image": str(root / "portrait.png"),
        "audio": SPEECH,
        "steps": 2,
        "seed": 7,
        "omega_lip": 0.8,
        "omega_body": 0.3,
        "arcface": ARCFACE_CHOICE,
        "syncnet": syncnet_file,
        "dino": dino_folder,
    }
    encoders = tiny_encoders(comfy, made["models"])
    common = {"stage": 2, "steps": 4, "optimizer": LINEAR_ADAM}
    config = config_of(made, root / "with", validation=validation, **common)
    with_renders = train(config, show_progress=False, validation_encoders=encoders)
    without = train(config_of(made, root / "without", **common), show_progress=False)
    return {"config": config, "with": with_renders, "without": without, "encoders": encoders, "root": root}


def decoded(path) -> tuple[np.ndarray, bool]:
    with av.open(str(path)) as container:
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
        return frames, bool(container.streams.audio)


def test_renders_are_written_and_logged(rendered):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = rendered["root"] / "with" / "validation"
    assert sorted(os.listdir(folder)) == ["step-0000002.mp4", "step-0000004.mp4"]  # the modules' temporary file is gone
    for name in os.listdir(folder):
        frames, has_sound = decoded(folder / name)
        assert frames.shape == (25, 128, 128, 3) and has_sound  # the run's clip length and size, with the voice
        assert frames.std() > 1.0  # a picture, not a flat frame
    first, _ = decoded(folder / "step-0000002.mp4")
    last, _ = decoded(folder / "step-0000004.mp4")
    assert np.abs(first.astype(float) - last.astype(float)).mean() > 0.5  # the modules trained in between
    events = EventAccumulator(str(rendered["root"] / "with" / "logs" / "fantasytalking"), size_guidance={"images": 0}).Reload()
    images = events.Images("validation/frames")
    assert [(event.step, event.width, event.height) for event in images] == [(2, 384, 128), (4, 384, 128)]  # first, middle, last frame


def texts(events, tag: str) -> list[tuple[int, str]]:
    return [(event.step, event.tensor_proto.string_val[0].decode()) for event in events.Tensors(f"{tag}/text_summary")]


def test_each_render_is_scored_beside_its_frames(rendered, syncnet_file):
    """The tiny random Wan renders noise, not a face: each render's outcome is logged in words at its frames' step, no
    number is, and the reason is the one `evaluate_sync` gives on the written MP4 with its voice."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fantasy_core.evaluation.sync import evaluate_sync, to_16k_mono
    from fantasy_core.identity.face import MediaPipeFaceDetector
    from fantasy_core.lipsync.syncnet import load_syncnet

    events = EventAccumulator(str(rendered["root"] / "with" / "logs" / "fantasytalking"), size_guidance={"tensors": 0}).Reload()
    reason, hint = "no face of at least 50 px in any frame", "(validation.score_min_face_size sets the smallest face)"
    assert texts(events, "validation/sync") == [(step, f"lip sync not scored (no_face): {reason} {hint}") for step in (2, 4)]
    identity = f"IDC not scored (no_face): a face of at least 50 px in 0 of 25 frames; IDC needs 2 {hint}"
    assert texts(events, "validation/identity") == [(step, identity) for step in (2, 4)]
    assert [event.step for event in events.Images("validation/frames")] == [2, 4]
    assert not [tag for tag in events.Tags()["scalars"] if tag.startswith("validation/")]  # no fake number
    with av.open(str(rendered["root"] / "with" / "validation" / "step-0000004.mp4")) as container:
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    samples, rate = speech("a")
    with MediaPipeFaceDetector() as detector:
        result = evaluate_sync(load_syncnet(syncnet_file), frames, 12.0, to_16k_mono(torch.from_numpy(samples), rate), detector)
    assert (result.status, result.detail) == ("no_face", reason)


def test_scores_are_what_the_evaluation_gives_logged_as_scalars(comfy, syncnet_file, dino_folder, tmp_path):
    """The scorer on a real talking face (the astronaut with a moving mouth, 0.8 s at 25 fps, espeak-ng speech; a
    scored track of 20 frames, as validation.sync_min_track allows): Sync-C, Sync-D, the offset and IDC go to
    TensorBoard as scalars at the step, equal to `evaluate_sync` and `video_identity_consistency` run on their own; a
    track shorter than validation.sync_min_track and a silent voice log only the reason."""
    from accelerate.tracking import TensorBoardTracker
    from motion_clips import clip
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fantasy_core.evaluation.dino import IdcProtocol, load_dino, video_identity_consistency
    from fantasy_core.evaluation.sync import SyncProtocol, evaluate_sync, to_16k_mono
    from fantasy_core.identity.face import MediaPipeFaceDetector
    from fantasy_core.lipsync.syncnet import load_syncnet
    from fantasy_train.validation import RenderScorer, ScoreWeights

    talking = np.stack(clip(frames=20, expression=10, size=160))
    portrait = clip(frames=1, size=160)[0]
    samples, rate = speech("a")
    voice = {"waveform": torch.from_numpy(samples)[None, None], "sample_rate": rate}  # ComfyUI AUDIO
    protocol = SyncProtocol(min_face_size=16, min_track=15)
    scorer = RenderScorer(ScoreWeights(syncnet_file, dino_folder), protocol, "cpu", portrait)
    try:
        values = scorer.scores(torch.from_numpy(talking).float() / 255, 25.0, voice)
        scorer.protocol = SyncProtocol(min_face_size=16, min_track=25)
        short = scorer.scores(torch.from_numpy(talking).float() / 255, 25.0, voice)
        silent = scorer.scores(torch.from_numpy(talking).float() / 255, 25.0, {**voice, "waveform": torch.zeros(1, 1, rate * 3)})
    finally:
        scorer.close()
    with MediaPipeFaceDetector() as detector:
        expected = evaluate_sync(load_syncnet(syncnet_file), talking, 25, to_16k_mono(torch.from_numpy(samples), rate), detector, protocol)
        identity = video_identity_consistency(
            load_dino(dino_folder), talking, detector, IdcProtocol(min_face_size=16, reference="portrait"), portrait=portrait
        )
    assert expected.status == "scored" and isinstance(expected.offset, int) and abs(expected.offset) <= 15
    assert identity["idc_status"] == "scored" and identity["idc_face_frames"] == 20
    assert short["validation/sync"] == (
        "lip sync not scored (short_track): the longest face track with sound is 20 frames at 25 fps; at least "
        "25 are scored (validation.sync_min_track sets the shortest track scored)"
    )
    assert silent["validation/sync"] == "lip sync not scored (no_sound): the clip has no sound (or only silence) to compare the lips with"
    assert not {"validation/sync_c", "validation/sync_d", "validation/offset"} & (set(short) | set(silent))

    tracker = TensorBoardTracker("scores", str(tmp_path))  # what accelerator.log writes to
    tracker.start()
    for step, logged in ((3, values), (5, short), (7, silent)):
        tracker.log(logged, step=step)
    tracker.finish()
    events = EventAccumulator(str(tmp_path / "scores"), size_guidance={"tensors": 0}).Reload()
    scalars = {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    idc = pytest.approx(identity["idc"], rel=1e-6)
    assert scalars == {
        "validation/sync_c": [(3, pytest.approx(expected.sync_c, rel=1e-6))],
        "validation/sync_d": [(3, pytest.approx(expected.sync_d, rel=1e-6))],
        "validation/offset": [(3, expected.offset)],
        "validation/idc": [(3, idc), (5, idc), (7, idc)],  # the picture, not the sound: the same each time
    }
    assert np.isfinite(expected.sync_c) and np.isfinite(expected.sync_d) and expected.sync_d >= 0
    assert [step for step, _ in texts(events, "validation/sync")] == [3, 5, 7]
    said = texts(events, "validation/sync")[0][1]
    assert said.startswith(
        f"lip sync: Sync-C {expected.sync_c:.3f}, Sync-D {expected.sync_d:.3f}, offset {expected.offset} over a 20-frame"
    )
    assert texts(events, "validation/identity")[0] == (3, f"IDC {identity['idc']:.4f} against the portrait over 20 frames with a face")


def test_score_weights_are_found_or_refused_before_the_run(made, rendered, syncnet_file, tmp_path):
    """validation.syncnet: "" finds syncnet_v2.model in models/evaluation or says once how to turn the scores on;
    a file asked for and missing stops the run before it loads anything, naming the option and the download."""
    from fantasy_core.training.config import ConfigError
    from fantasy_train.encoders import MissingModelError
    from fantasy_train.trainer import train
    from fantasy_train.validation import score_weights

    valid = asdict(rendered["config"].validation)
    evaluation, empty = os.path.dirname(syncnet_file), str(tmp_path)

    def weights(dirs, **changes):
        return score_weights(config_of(made, tmp_path / "run", validation={**valid, **changes}).validation, dirs)

    assert (weights([empty, evaluation], syncnet="").syncnet, weights([empty, evaluation], syncnet="").note) == (syncnet_file, "")
    assert weights([evaluation], syncnet="syncnet_v2.model").syncnet == syncnet_file  # a name in the folder
    off = weights([empty], syncnet="")
    assert off.syncnet is None
    assert f"no syncnet_v2.model in {empty}" in off.note and "joonson/syncnet_python" in off.note and "validation.syncnet" in off.note
    assert weights([evaluation], syncnet="none").syncnet is None
    with pytest.raises(MissingModelError, match=r"validation.syncnet: the file '.*nowhere.model' was not found .*joonson/syncnet_python"):
        weights([evaluation], syncnet=str(tmp_path / "nowhere.model"))
    with pytest.raises(MissingModelError, match=r"validation.dino: the folder .*'dino-vitb16' was not found .*facebook/dino-vitb16"):
        weights([evaluation], dino="dino-vitb16")
    with pytest.raises(ConfigError, match="'validation.sync_min_track' must be at least 1"):
        config_of(made, tmp_path / "run", validation={**valid, "sync_min_track": 0})

    run = tmp_path / "missing"
    with pytest.raises(MissingModelError, match="validation.syncnet: the file"):
        train(config_of(made, run, stage=2, steps=1, validation={**valid, "syncnet": str(tmp_path / "nowhere.model")}), show_progress=False)
    assert not run.exists()  # stopped before writing anything


def test_renders_leave_the_training_untouched(rendered):
    """The render loads, patches and unloads the base the run trains: the run ends bit-identical to one without."""
    with_renders, without = states(rendered["with"]["modules"]), states(rendered["without"]["modules"])
    assert with_renders.keys() == without.keys()
    for name, value in without.items():
        assert torch.equal(with_renders[name], value), name


def test_a_render_is_what_the_nodes_make_from_the_checkpoint(comfy_nodes, model_files, made, rendered):
    """The last step's checkpoint through a workflow built node by node (as the shipped identity/motion workflow):
    the renderer's frames are these, and the MP4 holds them (up to h264)."""
    import comfy.sd

    from fantasy_train.trainer import checkpoint_metadata
    from fantasy_train.validation import ValidationRenderer

    config, encoders = rendered["config"], rendered["encoders"]
    valid = config.validation
    shutil.copy(rendered["with"]["file"], model_files["root"] / "fantasytalking" / "validation_tiny.safetensors")
    shutil.copy(
        rendered["with"]["file"].replace("step0000004", "step0000002"),
        model_files["root"] / "fantasytalking" / "validation_step2_tiny.safetensors",
    )
    modules = run(comfy_nodes, "FantasyTalkingModelLoader", model_name="validation_tiny.safetensors", weight_dtype="default")[0]
    image = torch.from_numpy(decoded_portrait(rendered["root"] / "portrait.png")).float()[None] / 255
    samples, rate = speech("a")
    audio = {"waveform": torch.from_numpy(samples)[None, None], "sample_rate": rate}
    embeds, num_frames, fps, _ = run(
        comfy_nodes, "FantasyTalkingAudioEmbeds", audio=audio, audio_encoder=encoders.wav2vec, fps=12, max_frames=25
    )
    positive = run(comfy_nodes, "CLIPTextEncode", clip=encoders.text_encoder, text=valid.prompt)[0]
    negative = run(comfy_nodes, "CLIPTextEncode", clip=encoders.text_encoder, text=valid.negative_prompt)[0]
    vision = run(comfy_nodes, "CLIPVisionEncode", clip_vision=encoders.clip_vision, image=image, crop="none")[0]
    positive, negative, latent = run(
        comfy_nodes,
        "WanImageToVideo",
        positive=positive,
        negative=negative,
        vae=encoders.vae,
        width=128,
        height=128,
        length=num_frames,
        batch_size=1,
        start_image=image,
        clip_vision_output=vision,
    )
    face = run(comfy_nodes, "FantasyTalkingFaceCrop", image=image, detector="mediapipe", margin=0.3, min_face_size=16, crop_size=112)[0]
    identity = run(comfy_nodes, "FantasyTalkingFaceEmbedding", face=face, arcface_model=ARCFACE_CHOICE, device="cpu")[0]
    motion = run(comfy_nodes, "FantasyTalkingMotionIntensity", preset="custom", omega_lip=0.8, omega_body=0.3)[0]
    wan = comfy.sd.load_diffusion_model(made["wan"])
    with torch.no_grad():
        workflow = sample_and_decode(comfy_nodes, wan, modules, embeds, positive, negative, latent, identity, motion, valid, encoders.vae)
        step_two = sample_and_decode(
            comfy_nodes,
            wan,
            run(comfy_nodes, "FantasyTalkingModelLoader", model_name="validation_step2_tiny.safetensors", weight_dtype="default")[0],
            embeds,
            positive,
            negative,
            latent,
            identity,
            motion,
            valid,
            encoders.vae,
        )

    renderer = ValidationRenderer.prepare(config, made["clips"], made["frozen"], encoders)
    frames = renderer.render(rendered["with"]["modules"], 4, checkpoint_metadata(config, 4))
    assert (num_frames, fps) == (25, 12.0)
    assert frames.shape == workflow.shape == (25, 128, 128, 3)
    # Bit-identical. The loaders map weights from the file without copying, so a file's header length sets their
    # memory alignment and with it the order CPU kernels sum in: the render saves the modules with the checkpoint's
    # own metadata (with none, the frames differed by 4e-6). The previous checkpoint differs by far more.
    assert torch.equal(frames, workflow)
    assert (step_two - workflow).abs().max() > 2e-3
    written, _ = decoded(rendered["root"] / "with" / "validation" / "step-0000004.mp4")
    # h264 of these frames: each frame's colour (what lossy coding of noise-like tiny-model frames keeps)
    np.testing.assert_allclose((written / 255).mean(axis=(1, 2)), frames.numpy().mean(axis=(1, 2)), atol=0.02)


def sample_and_decode(comfy_nodes, wan, modules, embeds, positive, negative, latent, identity, motion, valid, vae) -> torch.Tensor:
    model, positive, negative = run(
        comfy_nodes,
        "FantasyTalkingApply",
        model=wan,
        fantasytalking_model=modules,
        audio_embeds=embeds,
        audio_scale=1.0,
        positive=positive,
        negative=negative,
        identity=identity,
        motion=motion,
    )
    samples = run(
        comfy_nodes,
        "FantasyTalkingSampler",
        model=model,
        positive=positive,
        negative=negative,
        latent_image=latent,
        seed=valid.seed,
        steps=valid.steps,
        cfg=valid.cfg,
        audio_cfg=valid.audio_cfg,
        sampler_name="euler",
        scheduler="fantasytalking",
        denoise=1.0,
        shift=valid.shift,
    )[0]
    return run(comfy_nodes, "VAEDecode", vae=vae, samples=samples)[0]


def decoded_portrait(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).copy()


def test_bad_validation_inputs_are_refused(comfy, made, rendered, tmp_path):
    from fantasy_core.training.config import ConfigError
    from fantasy_train.encoders import MissingModelError
    from fantasy_train.validation import ValidationInputError, ValidationRenderer

    valid = asdict(rendered["config"].validation)
    with pytest.raises(ConfigError, match="'validation.image' must be the portrait to render"):
        config_of(made, tmp_path / "a", validation={"every": 5, "audio": SPEECH})
    with pytest.raises(ConfigError, match="'validation.every' must be 0 with model.shard_base = true"):
        config_of(made, tmp_path / "b", validation=valid, model={"shard_base": True})

    def prepare(encoders=rendered["encoders"], **changes):
        config = config_of(made, tmp_path / "c", validation={**valid, **changes})
        return ValidationRenderer.prepare(config, made["clips"], made["frozen"], encoders)

    with pytest.raises(ValidationInputError, match="validation.image: the file .*nowhere.png does not exist"):
        prepare(image=str(tmp_path / "nowhere.png"))
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValidationInputError, match="validation.image: .*text.png is not an image PIL can read"):
        prepare(image=str(tmp_path / "text.png"))
    with pytest.raises(ValidationInputError, match="validation.audio: the file .*nowhere.wav does not exist"):
        prepare(audio=str(tmp_path / "nowhere.wav"))
    with pytest.raises(MissingModelError, match="validation.arcface: ArcFace model 'missing/w600k_r50.onnx' was not found"):
        prepare(arcface="missing/w600k_r50.onnx")
    # no encoders given: the dataset's own names are looked up in ComfyUI's folders, every missing one named at once
    with pytest.raises(MissingModelError, match="(?s)validation.text_encoder: 'umt5_tiny' was not found.*validation.clip_vision"):
        prepare(encoders=None)


def test_a_voice_without_sound_and_a_diverged_render_are_refused(made, rendered, tmp_path):
    import copy
    import wave

    from fantasy_train.validation import (
        ValidationInputError,
        ValidationRenderer,
        render_file,
    )

    valid = {**asdict(rendered["config"].validation), "steps": 1}
    silent = tmp_path / "silent.wav"
    with wave.open(str(silent), "wb") as f:  # a valid WAV header and no samples
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
    with pytest.raises(ValidationInputError, match=r"validation.audio: .*silent.wav holds no sound. Give a voice file."):
        ValidationRenderer.prepare(
            config_of(made, tmp_path / "a", validation={**valid, "audio": str(silent)}), made["clips"], made["frozen"], rendered["encoders"]
        )

    config = config_of(made, tmp_path / "b", validation=valid)
    renderer = ValidationRenderer.prepare(config, made["clips"], made["frozen"], rendered["encoders"])
    diverged = copy.deepcopy(rendered["with"]["modules"])
    with torch.no_grad():
        diverged.audio.blocks[0].v_proj.weight[0, 0] = float("nan")
    with pytest.raises(
        FloatingPointError, match=r"render at step 7 cannot run: the modules' weight 'audio.blocks.0.v_proj.weight' holds NaN"
    ):
        renderer.render(diverged, 7, {})
    with torch.no_grad():
        diverged.audio.blocks[0].v_proj.weight.copy_(rendered["with"]["modules"].audio.blocks[0].v_proj.weight * 1e36)  # finite, overflows
    with pytest.raises(FloatingPointError, match="The validation render at step 7 is not finite: the modules' weights have diverged"):
        renderer.render(diverged, 7, {})
    assert not os.path.exists(render_file(config.output_dir, 7))  # no NaN video written
    frames = renderer.render(rendered["with"]["modules"], 8, {})  # the base was put back: the next render works
    assert torch.isfinite(frames).all() and os.path.isfile(render_file(config.output_dir, 8))


def test_the_packs_nodes_package_is_not_taken_for_comfyuis(comfyui_path):
    """A working directory inside the pack puts its ``nodes`` package first on the import path (``python -m
    fantasy_train``); importing ComfyUI through fantasy_comfy.host still gives ComfyUI's own ``nodes`` module."""
    import subprocess
    import sys

    pack = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = f"""
import sys
sys.path[:0] = [{pack!r}, {str(comfyui_path)!r}]
from fantasy_comfy.host import comfyui_nodes, import_comfyui
import_comfyui({str(comfyui_path)!r}, "--cpu")
print(comfyui_nodes().__file__)
"""
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == os.path.join(str(comfyui_path), "nodes.py")


def test_the_command_holds_one_copy_of_the_pack_and_reports_machinery_errors(made, tmp_path, comfyui_path):
    """A ``fantasy_train train`` process loads each pack file under one name, so an error the ComfyUI-side machinery
    raises (here Face Crop's work on a validation portrait without a face) is caught by the command's own classes:
    the message and exit 1, no traceback."""
    import json
    import subprocess
    import sys

    from PIL import Image
    from test_training_in_comfyui import toml_text
    from training_setup import run_config

    Image.new("RGB", (128, 128), (128, 128, 128)).save(tmp_path / "no_face.png")
    validation = {
        "every": 1,
        "image": str(tmp_path / "no_face.png"),
        "audio": SPEECH,
        "steps": 1,
        "arcface": os.path.join(made["models"], "arcface.onnx"),
    }
    config = tmp_path / "run.toml"
    config.write_text(toml_text(run_config(made, str(tmp_path / "run"), stage=2, steps=1, validation=validation)))
    runner = os.path.join(os.path.dirname(__file__), "cli_runner.py")
    report = tmp_path / "modules.json"
    done = subprocess.run(
        [
            sys.executable,
            runner,
            str(report),
            made["models"],
            "--",
            "train",
            str(config),
            "--comfyui",
            str(comfyui_path),
            "--comfyui-args=--cpu",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "error: validation.image: " in done.stderr and "no face" in done.stderr.lower(), done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    loaded = json.loads(report.read_text())
    assert {"fantasy_comfy/faces.py", "fantasy_core/identity/face.py", "fantasy_train/validation.py"} <= set(loaded)
    twice = {file: names for file, names in loaded.items() if len(names) != 1}
    assert not twice, twice
