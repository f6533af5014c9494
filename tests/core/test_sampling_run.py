"""What a sampling run keeps (fantasy_core.sampling_run): made once, equal to what each call would compute itself, and
looked up by every later call."""

import torch
from naive_reference import naive_motion_embedding
from test_identity import SMALL as SMALL_IDENTITY
from test_identity import face, identity_module
from test_motion import network

from fantasy_core import AudioAdapter, AudioAdapterConfig, AudioEmbeds, PassSettings, PreparedAudio, compute_audio_windows
from fantasy_core.dit.attention import frame_groups
from fantasy_core.identity.embeds import FaceEmbedding
from fantasy_core.motion.intensity import MotionIntensity
from fantasy_core.sampling_run import RunInputs, SamplingRun, audio_cache_fits

DIM = SMALL_IDENTITY.model_dim


def adapter(context_dim=128, seed=0):
    torch.manual_seed(seed)
    module = AudioAdapter(AudioAdapterConfig(audio_dim=8, context_dim=context_dim, model_dim=DIM, num_blocks=SMALL_IDENTITY.num_blocks))
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return module


def embeds(num_frames=25, tokens=60):
    features = torch.randn(tokens, 8, generator=torch.Generator().manual_seed(1))
    return AudioEmbeds.from_features(features, PreparedAudio(torch.zeros(1), num_frames, 23))


def inputs(context_dim=128, motion=False):
    identity, _ = identity_module()
    net = network()[0] if motion else None
    return RunInputs(adapter(context_dim), embeds(), identity, FaceEmbedding(face(), "arcface", "cpu"), net, MotionIntensity(0.7, 0.1))


HEARD, SILENT = PassSettings(1.5, 0.5), PassSettings(0.0, 0.5)


def test_the_audio_cache_is_kept_while_it_is_no_larger_than_the_weights_it_replaces():
    windows = compute_audio_windows(175, 81)  # 21 latent frames x 17 slots = 357
    assert windows.latent_frames * windows.window_length == 357
    assert audio_cache_fits(RunInputs(adapter(357), AudioEmbeds(torch.zeros(175, 8), windows, None)))
    assert not audio_cache_fits(RunInputs(adapter(356), AudioEmbeds(torch.zeros(175, 8), windows, None)))


@torch.no_grad()
def test_a_calls_audio_keys_are_views_of_the_whole_track_and_equal_its_frames_computed_alone():
    run = SamplingRun(inputs(), torch.device("cpu"), torch.float32)
    assert run.cache_audio
    source = run.inputs
    whole = run.call((HEARD, SILENT), range(7))
    (audio, identity) = whole.branches
    window = run.call((HEARD, SILENT), (2, 3, 4))
    keys = window.branches[0][1].keys
    assert keys.untyped_storage().data_ptr() == audio[1].keys.untyped_storage().data_ptr()  # a view: nothing copied
    alone = source.adapter.keys_values(
        source.adapter.frame_context(source.audio.features, source.audio.windows.select([2, 3, 4])), torch.float32
    )
    torch.testing.assert_close(keys, alone[1][0], rtol=1e-6, atol=1e-6)
    assert window.branches[0][0].frame_groups == frame_groups(source.audio.windows.k_lens[[2, 3, 4]].tolist())
    looped = run.call((HEARD, SILENT), (5, 6, 0))  # a wrapped-around context window: gathered, once for the run
    torch.testing.assert_close(looped.branches[0][0].keys, audio[0].keys[:, [5, 6, 0]])
    assert run.call((HEARD, SILENT), (5, 6, 0)) is looped


@torch.no_grad()
def test_rows_scales_and_identity_follow_the_pass_settings():
    run = SamplingRun(inputs(), torch.device("cpu"), torch.float64)
    call = run.call((SILENT, HEARD, PassSettings(0.0, 0.0)), range(7))
    audio, identity = call.branches
    assert audio[0].rows == (1,) and identity[0].rows == (0, 1)
    assert audio[0].scales.dtype == torch.float64 and audio[0].scales.tolist() == [0.0, 1.5, 0.0]
    assert identity[0].scales.tolist() == [0.5, 0.5, 0.0]
    tokens = run.inputs.identity.identity_tokens(run.inputs.face.vectors)
    expected = run.inputs.identity.keys_values(tokens, torch.float64)
    assert all(torch.equal(term.keys, keys) and torch.equal(term.values, values) for term, (keys, values) in zip(identity, expected))
    assert run.call((SILENT, HEARD, PassSettings(0.0, 0.0)), range(7)) is call  # a step's calls repeat the first's objects
    assert call.time_addition is None


@torch.no_grad()
def test_each_row_gets_its_own_motion_or_the_applied_one_and_each_omega_is_run_once():
    run = SamplingRun(inputs(motion=True), torch.device("cpu"), torch.float32)
    state = {k: v for k, v in run.inputs.motion.state_dict().items()}
    ran = []
    handle = run.inputs.motion.register_forward_hook(lambda _m, args, _out: ran.append([round(v, 5) for v in args[0][0].tolist()]))
    try:
        own = PassSettings(1.0).with_motion(MotionIntensity(0.2, 0.9))
        first = run.call((own, SILENT), range(7))
        run.call((SILENT, own), range(7))
    finally:
        handle.remove()
    torch.testing.assert_close(first.time_addition[0], naive_motion_embedding(state, 0.2, 0.9), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(first.time_addition[1], naive_motion_embedding(state, 0.7, 0.1), rtol=1e-5, atol=1e-5)
    assert sorted(ran) == [[0.2, 0.9], [0.7, 0.1]]


@torch.no_grad()
def test_a_track_too_long_to_cache_gets_each_calls_keys_computed_for_its_frames():
    cached = SamplingRun(inputs(), torch.device("cpu"), torch.float32)
    per_call = SamplingRun(cached.inputs, torch.device("cpu"), torch.float32)
    per_call.cache_audio = False  # what audio_cache_fits decides for a long track (tested above)
    a = cached.call((HEARD,), (3, 4, 5)).branches[0]
    b = per_call.call((HEARD,), (3, 4, 5)).branches[0]
    for x, y in zip(a, b):
        torch.testing.assert_close(x.keys, y.keys, rtol=1e-6, atol=1e-6)
        assert x.frame_groups == y.frame_groups
    assert per_call.call((HEARD,), (3, 4, 5)) is not per_call.call((HEARD,), (3, 4, 5))  # nothing of the audio kept
    assert per_call.cached_bytes() == sum(t.nbytes for kv in per_call._identity for t in kv)


@torch.no_grad()
def test_the_run_knows_what_it_holds():
    run = SamplingRun(inputs(), torch.device("cpu"), torch.float32)
    assert run.cached_bytes() == 0
    run.prepare()  # at the run's start, before the model is loaded
    windows = run.inputs.audio.windows
    audio = 2 * SMALL_IDENTITY.num_blocks * windows.latent_frames * windows.window_length * DIM * 4
    identity = 2 * SMALL_IDENTITY.num_blocks * SMALL_IDENTITY.num_queries * DIM * 4
    assert run.cached_bytes() == audio + identity
    run.call((HEARD, SILENT), range(7))
    assert run.cached_bytes() == audio + identity  # the calls use what was prepared
    assert run.matches(torch.device("cpu"), torch.float32) and not run.matches(torch.device("cpu"), torch.float16)
