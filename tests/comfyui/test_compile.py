"""FantasyTalking under torch.compile, the ways ComfyUI users compile Wan: core TorchCompileModel (the whole diffusion
model, with its guard filter that drops every guard on ``transformer_options``) and block by block (KJNodes' Wan
compile nodes: ComfyUI's compile wrapper with every block as a key). The expectation is always the eager result. A
counting backend runs Dynamo exactly as inductor would be run (same graph breaks, same recompiles) and counts the graphs
and the operations they run; the graphs then run eagerly. Also: the host synchronisations of a model call."""

import pytest
import torch
from sync_ops import SyncCounter
from test_identity_in_comfyui import face_embedding, load, talking_inputs
from test_nodes import conditioning, hear, run

from fantasy_core.motion.intensity import MotionIntensity

STEPS = 3


class GraphCounter:
    """A torch.compile backend: records each graph's operation count and how many operations the graphs run."""

    def __init__(self):
        self.graphs: list[int] = []
        self.ops_run = 0

    def __call__(self, gm, example_inputs):
        ops = sum(node.op in ("call_function", "call_method", "call_module") for node in gm.graph.nodes)
        self.graphs.append(ops)

        def run_graph(*args):
            self.ops_run += ops
            return gm.forward(*args)

        return run_graph


@pytest.fixture(scope="module")
def talk(comfy_nodes, model_files):
    inputs = talking_inputs(comfy_nodes, model_files)
    identity = load(comfy_nodes, "identity_tiny.safetensors", chained=inputs["adapter"])
    return {**inputs, "all": load(comfy_nodes, "motion_tiny.safetensors", chained=identity), "face": face_embedding()}


@pytest.fixture(autouse=True)
def fresh_dynamo(comfy, monkeypatch):
    """Wan's attention as on a GPU (PyTorch SDPA; ComfyUI's CPU default asks psutil for free memory, a graph break),
    and Dynamo's caches empty before and after each test."""
    import comfy.ldm.modules.attention
    import comfy.ldm.wan.model

    monkeypatch.setattr(comfy.ldm.wan.model, "optimized_attention", comfy.ldm.modules.attention.attention_pytorch)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def patched(comfy_nodes, talk, model=None, modules="all"):
    """Apply with the audio, and with identity and motion when the modules hold them: (model, positive, negative)."""
    extra = {"identity": talk["face"], "motion": MotionIntensity(0.8, 0.3)} if modules == "all" else {}
    return run(
        comfy_nodes,
        "FantasyTalkingApply",
        model=model or talk["wan"],
        fantasytalking_model=talk[modules],
        audio_embeds=talk["embeds"],
        audio_scale=1.0,
        positive=conditioning(41),
        negative=conditioning(42),
        **extra,
    )


def sample(model, positive, negative, cfg=3.0):
    import comfy.sample
    import comfy.samplers

    latent = torch.zeros(1, 16, 3, 8, 8)
    return comfy.sample.sample_custom(
        model,
        comfy.sample.prepare_noise(latent, 0),
        cfg,
        comfy.samplers.sampler_object("euler"),
        torch.linspace(0.9, 0.0, STEPS + 1),
        positive,
        negative,
        latent,
        disable_pbar=True,
        seed=0,
    )


def core_options(core_node) -> dict | None:
    """The options core TorchCompileModel passes: its guard filter (dropping guards on transformer_options), which
    ComfyUI v0.3.64 does not have yet."""
    guard_filter = getattr(core_node, "skip_torch_compile_dict", None)
    return None if guard_filter is None else {"guard_filter_fn": guard_filter}


def compile_whole(model, backend):
    """What core TorchCompileModel does, with a counting backend instead of inductor."""
    import comfy_extras.nodes_torch_compile as core_node
    from comfy_api.torch_helpers import set_torch_compile_wrapper

    compiled = model.clone()
    set_torch_compile_wrapper(model=compiled, backend=backend, options=core_options(core_node))
    return compiled


def compile_blocks(model, backend):
    """What KJNodes' Wan compile nodes do: every block compiled on its own."""
    from comfy_api.torch_helpers import set_torch_compile_wrapper

    compiled = model.clone()
    blocks = len(model.get_model_object("diffusion_model.blocks"))
    set_torch_compile_wrapper(model=compiled, backend=backend, keys=[f"diffusion_model.blocks.{i}" for i in range(blocks)])
    return compiled


def test_torch_compile_model_compiles_once_never_drops_a_modality_and_equals_eager(comfy_nodes, talk):
    plain = GraphCounter()
    positive, negative = conditioning(41), conditioning(42)
    sample(compile_whole(talk["wan"], plain), positive, negative)
    plain_ops_per_call = plain.ops_run / STEPS
    model, heard, silent = patched(comfy_nodes, talk)
    eager = sample(model, heard, silent)
    without = sample(talk["wan"], positive, negative)
    counter = GraphCounter()
    compiled = compile_whole(model, counter)
    graphs_after_each_run, results = [], []
    for _ in range(3):
        counter.ops_run = 0
        results.append(sample(compiled, heard, silent))
        graphs_after_each_run.append(len(counter.graphs))
    assert graphs_after_each_run[0] == graphs_after_each_run[1] == graphs_after_each_run[2]  # nothing compiled after run 1
    assert graphs_after_each_run[0] < torch._dynamo.config.recompile_limit
    assert counter.ops_run / STEPS > plain_ops_per_call  # the whole patched model runs compiled, the taps included
    for result in results:
        assert torch.equal(result, eager)
    assert (eager - without).abs().max() > 1e-3


def test_a_changed_scale_or_intensity_is_no_new_graph(comfy_nodes, talk):
    """The pass settings are data: another audio scale, identity scale or ω uses the graph already compiled (also when
    the first call's audio and identity scales happened to be alike, (0.5, 0) for both)."""

    def settings(conditioning, audio, identity, **motion):
        return run(
            comfy_nodes,
            "FantasyTalkingConditioningSettings",
            conditioning=conditioning,
            audio_scale=audio,
            identity_scale=identity,
            **motion,
        )[0]

    counter = GraphCounter()
    model, heard, silent = patched(comfy_nodes, talk)
    heard, silent = settings(heard, 0.5, 0.5), settings(silent, 0.0, 0.0)
    compiled = compile_whole(model, counter)
    assert torch.equal(sample(compiled, heard, silent), sample(model, heard, silent))
    graphs = len(counter.graphs)
    louder = settings(heard, 2.5, 0.9, motion=MotionIntensity(0.2, 0.9))
    eager = sample(model, louder, silent)
    assert torch.equal(sample(compiled, louder, silent), eager)
    assert len(counter.graphs) == graphs


def test_per_block_compile_after_a_silent_run_still_hears_the_audio(comfy_nodes, talk):
    model, heard, silent = patched(comfy_nodes, talk, modules="adapter")
    mute = hear(comfy_nodes, heard, 0.0)
    eager_audio, eager_silent = sample(model, heard, silent), sample(model, mute, silent)
    compiled = compile_blocks(model, GraphCounter())
    assert torch.equal(sample(compiled, mute, silent), eager_silent)  # the blocks' first graphs have nothing to add
    voiced = sample(compiled, heard, silent)
    assert torch.equal(voiced, eager_audio)
    assert (voiced - eager_silent).abs().max() > 1e-3


def test_per_block_compile_with_passes_run_one_row_at_a_time(comfy_nodes, talk):
    """What ComfyUI does when the batched passes do not fit in memory: the silent negative runs alone, then the positive."""
    import comfy.patcher_extension

    model, heard, silent = patched(comfy_nodes, talk, modules="adapter")
    base = model.model
    base.memory_required = lambda input_shape, cond_shapes={}: 0 if input_shape[0] <= 1 else float("inf")
    rows_per_call = []
    try:
        eager_audio = sample(model, heard, silent)  # the expectation runs one row at a time too
        eager_silent = sample(model, hear(comfy_nodes, heard, 0.0), silent)
        compiled = compile_blocks(model, GraphCounter())
        compiled.add_wrapper_with_key(
            comfy.patcher_extension.WrappersMP.APPLY_MODEL,
            "test_rows",
            lambda executor, x, *args, **kwargs: (rows_per_call.append(x.shape[0]), executor(x, *args, **kwargs))[1],
        )
        voiced = sample(compiled, heard, silent)
    finally:
        del base.memory_required
    assert set(rows_per_call) == {1} and len(rows_per_call) == 2 * STEPS
    assert torch.equal(voiced, eager_audio)
    assert (voiced - eager_silent).abs().max() > 1e-3


def test_blocks_compiled_and_used_before_apply_then_the_official_guider_at_cfg_one(comfy_nodes, talk):
    counter = GraphCounter()
    compiled_plain = compile_blocks(talk["wan"], counter)
    sample(compiled_plain, conditioning(41), conditioning(42))  # the blocks' graphs exist, for two rows
    assert counter.graphs

    def guided(model, positive, negative):
        import comfy.sample
        import comfy.samplers

        guider = run(
            comfy_nodes,
            "FantasyTalkingCFGGuider",
            model=model,
            positive=positive,
            negative=negative,
            cfg=1.0,
            audio_cfg=4.5,
            audio_cfg_start=0.0,
            audio_cfg_end=1.0,
        )[0]
        latent = torch.zeros(1, 16, 3, 8, 8)
        guider.set_conds(positive, negative)
        return guider.sample(
            comfy.sample.prepare_noise(latent, 0),
            latent,
            comfy.samplers.sampler_object("euler"),
            torch.linspace(0.9, 0.0, STEPS + 1),
            disable_pbar=True,
            seed=0,
        )

    model, heard, silent = patched(comfy_nodes, talk, model=compiled_plain, modules="adapter")
    voiced = guided(model, heard, silent)  # cfg 1: two rows (the positive and its audio-free pass), as before
    eager, heard_eager, silent_eager = patched(comfy_nodes, talk, modules="adapter")
    assert torch.equal(voiced, guided(eager, heard_eager, silent_eager))
    assert (voiced - guided(eager, hear(comfy_nodes, heard_eager, 0.0), silent_eager)).abs().max() > 1e-3


def test_no_host_synchronisation_in_a_model_call(comfy_nodes, talk):
    """Per model call after the first of a run: the patched model (audio, identity, motion) makes the host wait exactly
    as often as the plain Wan (counted by operation; see sync_ops)."""
    import comfy.patcher_extension

    def per_call_counts(model, positive, negative):
        counts = []

        def count(executor, *args, **kwargs):
            with SyncCounter() as counter:
                out = executor(*args, **kwargs)
            counts.append(dict(counter.counts))
            return out

        model = model.clone()
        model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "test_syncs", count)
        wrappers = model.wrappers[comfy.patcher_extension.WrappersMP.APPLY_MODEL]
        model.wrappers[comfy.patcher_extension.WrappersMP.APPLY_MODEL] = {"test_syncs": wrappers.pop("test_syncs"), **wrappers}
        sample(model, positive, negative)
        return counts

    plain = per_call_counts(talk["wan"], conditioning(41), conditioning(42))
    model, heard, silent = patched(comfy_nodes, talk)
    fantasy = per_call_counts(model, heard, silent)
    assert len(fantasy) == len(plain) == STEPS
    assert fantasy[1:] == plain[1:] == [{}] * (STEPS - 1)
    # the run's first call makes what the run keeps: the scales and the motion intensities, from host numbers
    assert set(fantasy[0]) <= {"aten.lift_fresh"}
