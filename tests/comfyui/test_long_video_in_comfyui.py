"""Long videos in a real ComfyUI: a 20-second voice track through overlapping segments to one MP4 with the voice."""

import os

import pytest
import torch
from graphs import mp4_streams
from taps import CallRecorder
from test_identity_in_comfyui import face_embedding
from test_nodes import run
from tiny_models import voice_like

from fantasy_core.motion.intensity import MotionIntensity

SECONDS, FPS = 20.0, 23


@pytest.fixture(scope="module")
def long_run(comfy_nodes, workspace, model_files, tmp_path_factory):
    import comfy.sd
    import comfy.utils

    wan = comfy.sd.load_diffusion_model(model_files["wan"])
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(model_files["vae"]))
    adapter = run(comfy_nodes, "FantasyTalkingModelLoader", model_name="fantasytalking_tiny.ckpt", weight_dtype="default")[0]
    modules = run(
        comfy_nodes,
        "FantasyTalkingModelLoader",
        model_name="identity_tiny.safetensors",
        weight_dtype="default",
        fantasytalking_model=adapter,
    )[0]
    modules = run(
        comfy_nodes, "FantasyTalkingModelLoader", model_name="motion_tiny.safetensors", weight_dtype="default", fantasytalking_model=modules
    )[0]
    face = face_embedding(seed=5)
    motion = MotionIntensity(0.9, 0.2)
    encoder = run(comfy_nodes, "FantasyTalkingWav2VecLoader", model_name="wav2vec2-tiny-960h")[0]
    track = {"waveform": torch.stack([voice_like(SECONDS, 22050, 1), voice_like(SECONDS, 22050, 2)])[None], "sample_rate": 22050}
    embeds, num_frames, fps, trimmed = run(
        comfy_nodes, "FantasyTalkingAudioEmbeds", audio=track, audio_encoder=encoder, fps=FPS, max_frames=100001
    )
    text = comfy_nodes["FantasyTalkingTestConditioning"]().make(seed=1)[0]
    negative = comfy_nodes["FantasyTalkingTestConditioning"]().make(seed=2)[0]
    clip = comfy_nodes["FantasyTalkingTestClipVisionOutput"]().make(seed=3)[0]
    portrait = torch.rand(1, 80, 64, 3, generator=torch.Generator().manual_seed(0))
    adapter_module, identity_module = modules.audio.model, modules.identity.model
    seen, original = [], adapter_module.frame_context
    adapter_module.frame_context = lambda features, windows, device=None: (seen.append(windows), original(features, windows, device))[1]
    faces, original_tokens = [], identity_module.identity_tokens
    identity_module.identity_tokens = lambda vectors, device=None: (faces.append((len(seen), vectors)), original_tokens(vectors, device))[1]
    recorder = CallRecorder()
    try:
        (video,) = run(
            comfy_nodes,
            "FantasyTalkingLongVideo",
            model=recorder.attach(wan),
            fantasytalking_model=modules,
            audio_embeds=embeds,
            audio_scale=1.0,
            positive=text,
            negative=negative,
            vae=vae,
            clip_vision_output=clip,
            start_image=portrait,
            width=64,
            height=64,
            segment_frames=81,
            overlap_frames=13,
            seed=0,
            steps=2,
            cfg=5.0,
            audio_cfg=4.5,
            sampler_name="euler",
            scheduler="fantasytalking",
            shift=5.0,
            color_match=1.0,
            audio=trimmed,
            identity=face,
            identity_scale=0.5,
            identity_guidance=False,
            motion=motion,
            motion_guidance=False,
        )
    finally:
        del adapter_module.frame_context, identity_module.identity_tokens
    return {
        "video": video,
        "embeds": embeds,
        "num_frames": num_frames,
        "seen": seen,
        "faces": faces,
        "face": face,
        "calls": recorder.calls,
        "motion": modules.motion.model,
        "recorder": recorder,
    }


def test_every_model_call_of_every_segment_gets_the_motion_intensity(long_run):
    # positive and negative rows alike get (0.9, 0.2), in every call of every segment (6 segments, 2 steps, 3 passes)
    omegas = long_run["recorder"].omegas(long_run["motion"], (0.9, 0.2), (0.5, 0.5))
    assert len(omegas) >= 6 * 2 and all(rows == [(0.9, 0.2)] * len(rows) for rows in omegas)


def test_twenty_seconds_become_one_mp4_of_the_right_length_with_the_voice(long_run):
    assert long_run["num_frames"] == 465  # int(23 * 20 // 4) * 4 + 5
    path = long_run["video"].get_stream_source()
    info = mp4_streams(path)
    assert info["kinds"] == ["audio", "video"]
    assert info["frames"] == 465  # no frame repeated or dropped at the 6 segment joins
    assert info["fps"] == pytest.approx(FPS)
    assert info["audio_duration"] == pytest.approx(SECONDS, abs=0.1)  # the track is 20 s; the video 465 / 23 = 20.2 s


def test_each_segment_hears_its_slice_of_the_whole_track_windows(long_run):
    from fantasy_core.long_video import plan_segments

    whole = long_run["embeds"].windows
    segments = plan_segments(465, 81, 13)
    per_segment = {}
    for windows in long_run["seen"]:  # every model call of every segment
        first = whole.starts.tolist().index(windows.starts[0].item())
        per_segment.setdefault(first, windows)
    assert sorted(per_segment) == [s.first_latent for s in segments]
    for segment in segments:
        windows = per_segment[segment.first_latent]
        expected = whole.slice(segment.first_latent, segment.first_latent + segment.latent_frames)
        assert torch.equal(windows.starts, expected.starts) and torch.equal(windows.k_lens, expected.k_lens)


def test_every_model_call_of_every_segment_sees_the_same_identity(long_run):
    # each segment's run made its identity tokens once, from the same face; every row of every call saw them
    from fantasy_core.long_video import plan_segments

    assert len(long_run["faces"]) == len(long_run["seen"]) == len(plan_segments(465, 81, 13))
    assert all(torch.equal(vectors, long_run["face"].vectors) for _, vectors in long_run["faces"])
    assert all(set(call.identity) == {0.5} for call in long_run["calls"])


class FailingModel:
    """A DIFFUSION_MODEL wrapper that fails on model call ``fail_at`` (counting from 1)."""

    def __init__(self, fail_at):
        self.fail_at, self.calls = fail_at, 0

    def __call__(self, executor, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("forced failure inside the model (out of memory, say)")
        return executor(*args, **kwargs)


@pytest.mark.parametrize("fail_at", [1, 5])  # before the first frame; in the second segment, after frames were written
def test_an_error_inside_reaches_the_user_and_leaves_no_file(comfy_nodes, workspace, model_files, fail_at):
    import comfy.patcher_extension
    import comfy.sd
    import comfy.utils
    import folder_paths

    wan = comfy.sd.load_diffusion_model(model_files["wan"]).clone()
    failing = FailingModel(fail_at)
    wan.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test_failure", failing)
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(model_files["vae"]))
    adapter = run(comfy_nodes, "FantasyTalkingModelLoader", model_name="fantasytalking_tiny.ckpt", weight_dtype="default")[0]
    modules = run(
        comfy_nodes,
        "FantasyTalkingModelLoader",
        model_name="identity_tiny.safetensors",
        weight_dtype="default",
        fantasytalking_model=adapter,
    )[0]
    modules = run(
        comfy_nodes, "FantasyTalkingModelLoader", model_name="motion_tiny.safetensors", weight_dtype="default", fantasytalking_model=modules
    )[0]
    face = face_embedding(seed=5)
    motion = MotionIntensity(0.9, 0.2)
    encoder = run(comfy_nodes, "FantasyTalkingWav2VecLoader", model_name="wav2vec2-tiny-960h")[0]
    track = {"waveform": voice_like(2.0, 16000, 3)[None, None], "sample_rate": 16000}
    embeds, _, _, trimmed = run(comfy_nodes, "FantasyTalkingAudioEmbeds", audio=track, audio_encoder=encoder, fps=FPS, max_frames=100001)
    before = set(os.listdir(folder_paths.get_temp_directory())) if os.path.isdir(folder_paths.get_temp_directory()) else set()
    with pytest.raises(RuntimeError, match="forced failure inside the model"):
        run(
            comfy_nodes,
            "FantasyTalkingLongVideo",
            model=wan,
            fantasytalking_model=modules,  # every modality: their run caches must not outlive the failure either
            audio_embeds=embeds,
            audio_scale=1.0,
            identity=face,
            motion=motion,
            positive=comfy_nodes["FantasyTalkingTestConditioning"]().make(seed=1)[0],
            negative=comfy_nodes["FantasyTalkingTestConditioning"]().make(seed=2)[0],
            vae=vae,
            clip_vision_output=comfy_nodes["FantasyTalkingTestClipVisionOutput"]().make(seed=3)[0],
            start_image=torch.rand(1, 64, 64, 3),
            width=64,
            height=64,
            segment_frames=17,
            overlap_frames=5,
            seed=2**64 - 1,
            steps=2,
            cfg=5.0,
            audio_cfg=4.5,
            sampler_name="euler",
            scheduler="fantasytalking",
            shift=5.0,
            color_match=1.0,
            audio=trimmed,
        )
    assert failing.calls == fail_at  # at 5, segment 1 ran: its seed wrapped to 0 (2**64 would not seed torch)
    assert set(os.listdir(folder_paths.get_temp_directory())) - before == set()


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_any_channel_count_is_muxed_to_the_right_duration(tmp_path, comfy_nodes, channels):
    from fantasy_core.video_writer import StreamingMp4

    waveform = torch.stack([voice_like(1.0, 22050, seed) for seed in range(channels)])[None]
    writer = StreamingMp4(str(tmp_path / "six.mp4"), 23, {"waveform": waveform, "sample_rate": 22050})
    writer.write(torch.rand(23, 64, 64, 3))
    writer.close()
    info = mp4_streams(str(tmp_path / "six.mp4"))
    assert info["frames"] == 23 and info["audio_duration"] == pytest.approx(1.0, abs=0.05)


def test_audio_embeds_mix_more_than_two_channels_down_for_core_create_video(comfy_nodes, workspace, model_files, tmp_path):
    encoder = run(comfy_nodes, "FantasyTalkingWav2VecLoader", model_name="wav2vec2-tiny-960h")[0]
    six = torch.stack([voice_like(1.0, 22050, seed) for seed in range(6)])[None]
    _, num_frames, fps, trimmed = run(
        comfy_nodes,
        "FantasyTalkingAudioEmbeds",
        audio={"waveform": six, "sample_rate": 22050},
        audio_encoder=encoder,
        fps=FPS,
        max_frames=81,
    )
    torch.testing.assert_close(trimmed["waveform"][0, 0], six[0, :, : trimmed["waveform"].shape[-1]].mean(dim=0))
    (video,) = run(comfy_nodes, "CreateVideo", images=torch.rand(num_frames, 64, 64, 3), fps=fps, audio=trimmed)
    path = str(tmp_path / "core.mp4")
    video.save_to(path)
    assert mp4_streams(path)["audio_duration"] == pytest.approx(1.0, abs=0.05)  # the 1 s track, not 3 s
