"""FantasyTalking's cost at full speed: a patched Wan2.1-I2V model call against the plain one, eager and compiled as core
TorchCompileModel compiles it, side by side in one run; and the branches' memory traffic counted at the real shapes.

    python benchmarks/bench_speed.py                  # CPU: a tiny Wan (seconds; the smoke run CI makes)
    python benchmarks/bench_speed.py --scale block    # GPU: one Wan2.1-I2V-14B block at the real width, batch 3
    python benchmarks/bench_speed.py --scale full     # GPU: the whole 14B model (~33 GB of bf16 weights)

Random weights in the real layouts, built on the device; 81 frames at 512x512 (21 latent frames of 32x32 tokens: 21 504
video tokens) at the real scales, 21 latent frames of 4x4 tokens for tiny. The patched model hears the audio and sees
the identity (a Q-Former module of the paper's size) with a motion module; sampling uses the official three passes in
one batch (DualCFGGuider with the positive's audio-free pass as its middle conditioning, which is FantasyTalking's
guidance; the plain Wan gets the same three rows). Per model (plain, patched) and mode (eager, compiled):

* seconds per model call: median of the calls after the run's first (CUDA events on a GPU);
* peak memory: CUDA max_memory_allocated over the run; on the CPU the peak of the tensors one call creates;
* TFLOP/s and MFU: FLOPs of one eager call (torch's FLOP counter) over its time, against the device's dense bf16 peak;
* host synchronisations in one steady call (CUDA: torch.cuda.set_sync_debug_mode; CPU: tests/sync_ops.py);
* the attention kernels a patched call runs (profiler), and the weights ComfyUI keeps loaded while sampling.

Counted on meta tensors at the real shapes (any machine): per block, the memory traffic and kernels of the audio and
identity branches at batch 3 (the positive hears the audio; all three rows see the identity), as the pack computed them
before run caches (keys/values projected per call, row gathers, masked attention, out-of-place adds) and now.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
import weakref
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_leaves

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(PACK_DIR)  # appended so ComfyUI's own `nodes` module keeps priority
sys.path.append(os.path.join(PACK_DIR, "scripts"))
sys.path.append(os.path.join(PACK_DIR, "tests"))
sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from fantasy_core import AudioAdapter, AudioAdapterConfig, AudioEmbeds, PreparedAudio  # noqa: E402
from fantasy_core.audio.windows import compute_audio_windows  # noqa: E402
from fantasy_core.dit.attention import frame_groups  # noqa: E402
from fantasy_core.dit.injection import branch_terms  # noqa: E402
from fantasy_core.identity.embeds import FaceEmbedding  # noqa: E402
from fantasy_core.identity.model import IdentityConfig, IdentityModule  # noqa: E402
from fantasy_core.motion.intensity import MotionCalibration, MotionIntensity  # noqa: E402
from fantasy_core.motion.model import MotionConfig, MotionNetwork  # noqa: E402

FRAMES, FPS, AUDIO_TOKENS, LATENT_FRAMES = 81, 23, 175, 21
REAL_WAN = {"dim": 5120, "ffn_dim": 13824, "num_heads": 40, "num_layers": 40}
SCALES = {  # Wan config, latent height/width, adapter context width, identity module, motion width
    "tiny": (dict(REAL_WAN, dim=256, ffn_dim=512, num_heads=2, num_layers=2), 8, 512, IdentityConfig(512, 64, 4, 2, 4, 128, 256, 2), 16),
    "block": (dict(REAL_WAN, num_layers=1), 64, 2048, IdentityConfig(512, 2048, 16, 4, 16, 8192, 5120, 1), 256),
    "full": (REAL_WAN, 64, 2048, IdentityConfig(512, 2048, 16, 4, 16, 8192, 5120, 40), 256),
}
# Dense bf16 tensor-core peaks (no sparsity) and HBM bandwidths from the vendors' data sheets; --peak-tflops overrides.
DEVICE_PEAKS = {
    "H200": (989e12, 4.8e12),
    "H100": (989e12, 3.35e12),
    "A100": (312e12, 2.04e12),
    "L40S": (362e12, 0.864e12),
    "RTX 4090": (165e12, 1.0e12),
    "RTX 3090": (71e12, 0.936e12),
}


def device_peaks(device: torch.device) -> tuple[str, float | None, float | None]:
    if device.type != "cuda":
        return "CPU", None, None
    name = torch.cuda.get_device_name(device)
    for key, (flops, bandwidth) in DEVICE_PEAKS.items():
        if key in name:
            return name, flops, bandwidth
    return name, None, None


# ----------------------------------------------------------------------------------------------------------- models


def random_state(module: torch.nn.Module, device, dtype, seed: int) -> dict:
    """Every tensor of ``module`` (built on meta) random, scaled so activations stay finite over 40 blocks."""
    gen = torch.Generator(device=device).manual_seed(seed)
    state = {}
    for key, meta in module.state_dict().items():
        if meta.dim() >= 2 and not key.endswith("modulation"):
            fan_in = meta[0].numel()
            tensor = torch.randn(meta.shape, generator=gen, device=device, dtype=dtype) * fan_in**-0.5
        elif key.endswith("weight"):
            tensor = 1 + 0.05 * torch.randn(meta.shape, generator=gen, device=device, dtype=dtype)
        else:
            tensor = 0.02 * torch.randn(meta.shape, generator=gen, device=device, dtype=dtype)
        state[key] = tensor
    return state


def load_wan(wan_config: dict, device, dtype):
    import comfy.ldm.wan.model
    import comfy.ops
    import comfy.sd

    with torch.device("meta"):
        meta = comfy.ldm.wan.model.WanModel(
            model_type="i2v", in_dim=36, out_dim=16, text_dim=4096, operations=comfy.ops.disable_weight_init, **wan_config
        )
    return comfy.sd.load_diffusion_model_state_dict(random_state(meta, device, dtype, seed=0))


def write_modules(folder: str, wan_config: dict, context_dim: int, identity: IdentityConfig, motion_hidden: int, device, dtype) -> str:
    """The three modules in the pack's one-file format (as the trainer writes them), for the pack's own loader."""
    from fantasy_core.module_file import save_fantasytalking_file

    with torch.device("meta"):
        adapter = AudioAdapter(AudioAdapterConfig(768, context_dim, wan_config["dim"], wan_config["num_layers"]))
        identity_module = IdentityModule(identity)
        motion = MotionNetwork(MotionConfig(motion_hidden, wan_config["dim"]))

    def cpu(module, seed):
        return {k: v.cpu() for k, v in random_state(module, device, dtype, seed).items()}

    path = os.path.join(folder, "fantasytalking_bench.safetensors")
    return save_fantasytalking_file(
        path,
        audio=cpu(adapter, 1),
        identity=(cpu(identity_module, 2), identity),
        motion=(cpu(motion, 3), motion.config, MotionCalibration()),
    )


def inputs(latent_hw: int):
    import comfy.clip_vision

    gen = torch.Generator().manual_seed(4)
    clip = comfy.clip_vision.Output()
    clip.penultimate_hidden_states = torch.randn(1, 257, 1280, generator=gen) * 0.5
    shape = (1, 16, LATENT_FRAMES, latent_hw, latent_hw)
    mask = torch.ones(1, 1, *shape[2:])
    mask[:, :, 0] = 0  # the portrait's latent frame is known

    def conditioning(seed):
        text = torch.randn(1, 512, 4096, generator=torch.Generator().manual_seed(seed)) * 0.5
        return [[text, {"clip_vision_output": clip, "concat_latent_image": torch.randn(shape, generator=gen) * 0.5, "concat_mask": mask}]]

    features = torch.randn(AUDIO_TOKENS, 768, generator=gen)
    embeds = AudioEmbeds.from_features(features, PreparedAudio(torch.zeros(int(FRAMES / FPS * 16000)), FRAMES, FPS))
    face = torch.nn.functional.normalize(torch.randn(1, 512, generator=gen), dim=-1)
    return conditioning(5), conditioning(6), embeds, FaceEmbedding(face, "bench", "bench"), shape


# -------------------------------------------------------------------------------------------------------- measuring


class LiveBytes(TorchDispatchMode):
    """The peak of the bytes held by the tensor storages created while active (views keep their storage alive)."""

    def __init__(self):
        super().__init__()
        self.refs: dict[int, list] = {}
        self.live = self.peak = 0

    def _hold(self, tensor, pointer, size):
        entry = self.refs.setdefault(pointer, [0, size])
        if entry[0] == 0:
            self.live += size
            self.peak = max(self.peak, self.live)
        entry[0] += 1
        weakref.finalize(tensor, self._release, pointer)

    def _release(self, pointer):
        entry = self.refs[pointer]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self.refs[pointer]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {id(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor) or id(tensor) in inputs:
                continue
            storage = tensor.untyped_storage()
            pointer = storage.data_ptr()
            if func.is_view and pointer not in self.refs:
                continue  # a view of something made before: not this call's memory
            self._hold(tensor, pointer, storage.nbytes())
        return out


class CallProbe:
    """An APPLY_MODEL wrapper (outermost): times every model call and instruments one of them."""

    def __init__(self, device: torch.device, instrument: bool):
        self.device, self.instrument = device, instrument
        self.events, self.seconds, self.facts = [], [], {}

    def __call__(self, executor, *args, **kwargs):
        index = len(self.events) + len(self.facts.get("instrumented", []))
        if self.instrument and index == 1:  # the run's second call: its constants exist, nothing compiles
            self.facts["instrumented"] = [index]
            return self._instrumented(executor, *args, **kwargs)
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = executor(*args, **kwargs)
            end.record()
            self.events.append((start, end))
        else:
            start = time.perf_counter()
            out = executor(*args, **kwargs)
            self.events.append(time.perf_counter() - start)
        return out

    def _instrumented(self, executor, *args, **kwargs):
        from sync_ops import SyncCounter
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as flops:
            executor(*args, **kwargs)
        self.facts["flops"] = flops.get_total_flops()
        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        with torch.profiler.profile(activities=activities) as profile:
            executor(*args, **kwargs)
        names = {event.name for event in profile.events()}
        self.facts["attention_kernels"] = sorted(
            n for n in names if any(k in n.lower() for k in ("flash", "efficient_attention", "fmha", "cudnn", "scaled_dot_product"))
        )[:12]
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    out = executor(*args, **kwargs)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            self.facts["host_syncs"] = sum("synchroniz" in str(w.message) for w in caught)
        else:
            with SyncCounter() as syncs, LiveBytes() as live:
                out = executor(*args, **kwargs)
            self.facts["host_syncs"] = syncs.total
            self.facts["call_peak_bytes"] = live.peak
        import comfy.model_management

        self.facts["loaded_bytes"] = sum(m.model_loaded_memory() for m in comfy.model_management.current_loaded_models)
        return out

    def steady_seconds(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            times = [start.elapsed_time(end) / 1e3 for start, end in self.events]
        else:
            times = list(self.events)
        return statistics.median(times[1:]) if len(times) > 1 else times[0]


def node_output(nodes, node_id, **inputs):
    node = nodes[node_id]
    if hasattr(node, "GET_SCHEMA"):  # V3
        return node.execute(**inputs).result
    return getattr(node(), node.FUNCTION)(**inputs)


def sample_run(nodes, model, positive, middle, negative, latent_shape, steps: int, device, instrument: bool):
    """One sampling run with the three passes batched; returns the probe's measurements."""
    import comfy.model_management
    import comfy.patcher_extension
    import comfy.sample
    import comfy.samplers

    from fantasy_core.guidance import official_sigmas

    probe = CallProbe(device, instrument)
    model = model.clone()
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "bench_probe", probe)
    wrappers = model.wrappers[comfy.patcher_extension.WrappersMP.APPLY_MODEL]
    model.wrappers[comfy.patcher_extension.WrappersMP.APPLY_MODEL] = {"bench_probe": wrappers.pop("bench_probe"), **wrappers}
    guider = node_output(
        nodes,
        "DualCFGGuider",
        model=model,
        cond1=positive,
        cond2=middle,
        negative=negative,
        cfg_conds=4.5,
        cfg_cond2_negative=5.0,
        style="regular",
    )[0]
    latent = torch.zeros(latent_shape)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        out = guider.sample(
            comfy.sample.prepare_noise(latent, 0),
            latent,
            comfy.samplers.sampler_object("euler"),
            official_sigmas(steps, 5.0, 1.0),
            disable_pbar=True,
            seed=0,
        )
    result = {
        "seconds_per_call": probe.steady_seconds(),
        "calls": len(probe.events),
        **probe.facts,
        "finite": bool(torch.isfinite(out).all()),
    }
    if device.type == "cuda":
        result["peak_bytes"] = torch.cuda.max_memory_allocated()
    comfy.model_management.soft_empty_cache()
    return result


def core_options(core_node) -> dict | None:
    """The options core TorchCompileModel passes: its guard filter (dropping guards on transformer_options), which
    ComfyUI v0.3.64 does not have yet."""
    guard_filter = getattr(core_node, "skip_torch_compile_dict", None)
    return None if guard_filter is None else {"guard_filter_fn": guard_filter}


def compiled(nodes, model, backend: str):
    """Core TorchCompileModel's wrapper (its guard filter included), with the backend asked for."""
    import comfy_extras.nodes_torch_compile as core_node
    from comfy_api.torch_helpers import set_torch_compile_wrapper

    model = model.clone()
    set_torch_compile_wrapper(model=model, backend=backend, options=core_options(core_node))
    return model


# ------------------------------------------------------------------------------------------ counted at real shapes


class Traffic(TorchDispatchMode):
    """Kernels and bytes each kernel reads and writes (views are free); SDPA counts as one fused kernel."""

    def __init__(self):
        super().__init__()
        self.kernels, self.bytes = 0, 0

    def add(self, tensors) -> None:
        self.kernels += 1
        self.bytes += sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view and func.overloadpacket.__name__ not in ("lift_fresh", "detach", "alias"):
            self.add(tree_leaves((args, kwargs)) + tree_leaves(out))
        return out


@contextmanager
def counted_traffic():
    original = F.scaled_dot_product_attention
    counter = Traffic()

    def fused(q, k, v, attn_mask=None, **kwargs):
        with _disable_current_modes():
            out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
        counter.add([q, k, v, attn_mask, out])
        return out

    F.scaled_dot_product_attention = fused
    try:
        with counter:
            yield counter
    finally:
        F.scaled_dot_product_attention = original


def branches_before(hidden, q, audio_tokens, audio_kv, k_lens, identity_tokens, identity_kv, heads):
    """Per block, the arithmetic the pack ran before run caches (restated from it; keys/values projected every call)."""
    active = torch.tensor([0], device=q.device)  # the positive row; DiTInjection found it with nonzero() each call
    scales = torch.tensor([1.0, 0.0, 0.0], device=q.device)
    tokens = audio_tokens.to(q)
    keys, values = F.linear(tokens, audio_kv[0]), F.linear(tokens, audio_kv[1])
    rows = q[active]
    frames, width = keys.shape[1], q.shape[-1]
    flat_q = rows.reshape(frames, q.shape[1] // frames, width)
    key_is_real = torch.arange(keys.shape[2], device=q.device)[None, :] < k_lens[:, None]
    has_keys = k_lens > 0
    mask = key_is_real | ~has_keys[:, None]

    def split(t):
        return t.unflatten(-1, (heads, width // heads)).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(flat_q), split(keys[0]), split(values[0]), attn_mask=mask[:, None, None, :])
    out = out.transpose(1, 2).flatten(2)
    out = torch.where(has_keys[:, None, None], out, torch.zeros((), dtype=out.dtype, device=out.device)).reshape(1, -1, width)
    hidden = hidden.index_add(0, active, scales[active].to(hidden).reshape(-1, 1, 1) * out)
    tokens = identity_tokens.to(q)
    keys, values = F.linear(tokens, identity_kv[0]), F.linear(tokens, identity_kv[1])
    keys, values = keys.expand(q.shape[0], -1, -1), values.expand(q.shape[0], -1, -1)
    out = F.scaled_dot_product_attention(split(q), split(keys), split(values)).transpose(1, 2).flatten(2)
    return hidden + torch.full((3,), 0.5, device=q.device).to(hidden).reshape(-1, 1, 1) * out


def count_at_real_shapes(dtype=torch.bfloat16) -> dict:
    """Per block, at batch 3 and 21 504 video tokens: the branches before and now; and what a run keeps."""
    heads, dim, identity = REAL_WAN["num_heads"], REAL_WAN["dim"], SCALES["full"][3]
    windows = compute_audio_windows(AUDIO_TOKENS, FRAMES)
    meta = torch.device("meta")
    q = torch.empty(3, LATENT_FRAMES * 32 * 32, dim, dtype=dtype, device=meta)
    audio_tokens = torch.empty(1, LATENT_FRAMES, windows.window_length, 2048, device=meta)
    audio_kv = [torch.empty(dim, 2048, dtype=dtype, device=meta) for _ in range(2)]
    identity_tokens = torch.empty(1, identity.num_queries, identity.width, device=meta)
    identity_kv = [torch.empty(dim, identity.width, dtype=dtype, device=meta) for _ in range(2)]
    with counted_traffic() as before:
        branches_before(torch.empty_like(q), q, audio_tokens, audio_kv, windows.k_lens.to(meta), identity_tokens, identity_kv, heads)
    cached_audio = [(torch.empty(1, LATENT_FRAMES, windows.window_length, dim, dtype=dtype, device=meta),) * 2]
    cached_identity = [(torch.empty(1, identity.num_queries, dim, dtype=dtype, device=meta),) * 2]
    scales = torch.empty(3, dtype=dtype, device=meta)
    terms = (
        branch_terms([0], scales, cached_audio, frame_groups(windows.k_lens.tolist()))[0],
        branch_terms([0, 1, 2], scales, cached_identity)[0],
    )
    with counted_traffic() as now:
        hidden = torch.empty_like(q)
        for term in terms:
            term.add_to(hidden, q, heads)
    itemsize = torch.finfo(dtype).bits // 8
    blocks = REAL_WAN["num_layers"]
    from bench_core import BlockShape, block_flops

    wan_block, _ = block_flops(
        BlockShape(dim=dim, ffn_dim=REAL_WAN["ffn_dim"], heads=heads, latent_frames=LATENT_FRAMES, tokens_per_frame=32 * 32)
    )
    return {
        "wan_block_flops": 3 * wan_block,
        "branch_bytes_before": before.bytes,
        "branch_kernels_before": before.kernels,
        "branch_bytes_now": now.bytes,
        "branch_kernels_now": now.kernels,
        "run_cache_bytes": blocks * 2 * dim * itemsize * (LATENT_FRAMES * windows.window_length + identity.num_queries),
        "audio_kv_weight_bytes": blocks * 2 * dim * 2048 * itemsize,
        "identity_weight_bytes": sum(t.numel() for t in IdentityModule(identity, device=meta).state_dict().values()) * itemsize,
    }


# ----------------------------------------------------------------------------------------------------------- report


def report(results: dict, counted: dict, device_name: str, peak_flops, bandwidth) -> None:
    gib = 2**30
    print(
        f"\nmeasured on {device_name}, torch {torch.__version__}, scale '{results['scale']}', {results['steps']} steps, "
        f"batch 3 (three passes), {results['video_tokens']} video tokens"
    )
    peak_name = "peak GB" if device_name != "CPU" else "call peak GB"
    print(f"  {'':36s}{'s/call':>9s}{'ratio':>7s}{peak_name:>14s}{'ratio':>7s}{'TFLOP/s':>9s}{'MFU':>7s}{'syncs':>7s}")

    def cell(value, form, width):
        return f"{value:{width}{form}}" if value is not None else f"{'-':>{width}s}"

    for mode in results["modes"]:
        plain, patched = results[f"plain/{mode}"], results[f"patched/{mode}"]
        peak_key = "peak_bytes" if "peak_bytes" in plain else "call_peak_bytes"
        for label, row in (("plain Wan", plain), ("+ FantasyTalking", patched)):
            tflops = row["flops"] / row["seconds_per_call"] / 1e12 if row.get("flops") else None
            peak, plain_peak = row.get(peak_key), plain.get(peak_key)
            print(
                f"  {mode + ',':19s} {label:16s}{row['seconds_per_call']:9.4f}{row['seconds_per_call'] / plain['seconds_per_call']:7.3f}"
                f"{cell(peak / gib if peak else None, '.3f', 14)}{cell(peak / plain_peak if peak and plain_peak else None, '.3f', 7)}"
                f"{cell(tflops, '.2f', 9)}{cell(100 * tflops * 1e12 / peak_flops if tflops and peak_flops else None, '.1f', 6)}"
                f"{'%' if tflops and peak_flops else ' '}{cell(row.get('host_syncs'), 'd', 6)}"
            )
    eager = results.get("patched/eager", {})
    print(f"  attention kernels of a patched call: {', '.join(eager.get('attention_kernels', [])) or 'n/a'}")
    print(
        f"  loaded while sampling: plain {results['plain/eager'].get('loaded_bytes', 0) / gib:.3f} GB, patched "
        f"{eager.get('loaded_bytes', 0) / gib:.3f} GB + the run's cache {results.get('run_cache_bytes', 0) / gib:.4f} GB; "
        f"the modules' weights ({results.get('module_bytes', 0) / gib:.3f} GB) are not loaded"
    )
    print(f"\ncounted at the real shapes (Wan2.1-I2V-14B, 21 504 tokens, batch 3; per block; bandwidth {bandwidth / 1e12:.2f} TB/s):")
    for when in ("before", "now"):
        traffic = counted[f"branch_bytes_{when}"]
        print(
            f"  branches {when:6s}: {traffic / 1e9:7.2f} GB of memory traffic in {counted[f'branch_kernels_{when}']:3d} kernels "
            f"= {traffic / bandwidth * 1e3:6.2f} ms per block, {40 * traffic / bandwidth * 1e3:7.1f} ms per model call"
        )
    block_seconds = counted["wan_block_flops"] / (peak_flops or DEVICE_PEAKS["H200"][0])
    for when in ("before", "now"):
        print(
            f"  branches {when:6s} at full bandwidth / the Wan block at full compute ({block_seconds * 1e3:.0f} ms): "
            f"{100 * counted[f'branch_bytes_{when}'] / bandwidth / block_seconds:.2f}%"
        )
    print(
        f"  kept for a run: {counted['run_cache_bytes'] / 2**20:.0f} MB of keys and values, instead of "
        f"{counted['audio_kv_weight_bytes'] / gib:.2f} GB (audio k/v) + "
        f"{counted['identity_weight_bytes'] / gib:.2f} GB (identity) of weights"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default=None, help="tiny (default without a GPU), block or full")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps per run (default: 6 tiny, 4 otherwise)")
    parser.add_argument("--backend", default=None, help="torch.compile backend (default: inductor on a GPU, eager on the CPU)")
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, for MFU")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    scale = args.scale or ("full" if gpu else "tiny")
    steps = args.steps or (6 if scale == "tiny" else 4)
    backend = args.backend or ("inductor" if gpu else "eager")
    from comfyui_host import load_comfyui_with_pack

    # on the CPU, ComfyUI's default attention asks psutil for free memory (a graph break); GPUs default to SDPA
    nodes = load_comfyui_with_pack(cpu=not gpu, options=() if gpu else ("--use-pytorch-cross-attention",))
    import comfy.model_management
    import folder_paths
    from comfy.patcher_extension import WrappersMP

    from fantasy_core.sampling_run import SamplingRun

    device = comfy.model_management.get_torch_device()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    name, peak_flops, bandwidth = device_peaks(device)
    peak_flops = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops
    wan_config, latent_hw, context_dim, identity_config, motion_hidden = SCALES[scale]
    print(f"building random weights on {device} ({scale}: {wan_config['num_layers']} blocks of width {wan_config['dim']})", flush=True)
    wan = load_wan(wan_config, device, dtype)
    positive, negative, embeds, face, latent_shape = inputs(latent_hw)
    with tempfile.TemporaryDirectory() as folder:
        folder_paths.add_model_folder_path("fantasytalking", folder)
        modules_file = write_modules(folder, wan_config, context_dim, identity_config, motion_hidden, device, dtype)
        modules = node_output(nodes, "FantasyTalkingModelLoader", model_name=os.path.basename(modules_file), weight_dtype="default")[0]
    patched, heard, silent = node_output(
        nodes,
        "FantasyTalkingApply",
        model=wan,
        fantasytalking_model=modules,
        audio_embeds=embeds,
        audio_scale=1.0,
        positive=positive,
        negative=negative,
        identity=face,
        identity_scale=0.5,
        identity_guidance=False,
        motion=MotionIntensity(0.8, 0.3),
        motion_guidance=False,
    )
    noaudio = node_output(nodes, "FantasyTalkingConditioningSettings", conditioning=heard, audio_scale=0.0, identity_scale=0.5)[0]
    results = {
        "scale": scale,
        "steps": steps,
        "device": name,
        "modes": ["eager"] + ([] if args.no_compile else [f"compiled ({backend})"]),
        "video_tokens": LATENT_FRAMES * (latent_hw // 2) ** 2,
        "module_bytes": sum(p.model_size() for p in modules.patchers()),
    }
    plain_conds = (positive, positive, negative)
    for mode in results["modes"]:
        for label, model, conds in (("plain", wan, plain_conds), ("patched", patched, (heard, noaudio, silent))):
            torch._dynamo.reset()
            run_model = model if mode == "eager" else compiled(nodes, model, backend)
            print(f"  {mode} {label}: sampling {steps} steps", flush=True)
            results[f"{label}/{mode}"] = sample_run(nodes, run_model, *conds, latent_shape, steps, device, instrument=mode == "eager")
    # what the patched run kept: the same constants, made again here for the three passes' settings
    (wrapper,) = patched.get_wrappers(WrappersMP.APPLY_MODEL, "fantasytalking")
    run = SamplingRun(wrapper.__self__.run_inputs(), device, dtype)
    with torch.inference_mode():
        run.call(
            tuple(c[0][1]["model_conds"]["fantasytalking_pass"].cond[0] for c in (heard, noaudio, silent)), tuple(range(LATENT_FRAMES))
        )
    results["run_cache_bytes"] = run.cached_bytes()
    counted = count_at_real_shapes()
    report(results, counted, name, peak_flops, bandwidth or DEVICE_PEAKS["H200"][1])
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"measured": results, "counted": counted}, file, indent=1, default=str)


if __name__ == "__main__":
    main()
