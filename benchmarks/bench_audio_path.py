"""Per-call cost of the audio path under context windows, for a short and a long track.

Each model call under core context windows takes the audio keys and values of its own 21 latent frames and runs the
audio attention of every block. The cost must not grow with the track: a short track's keys and values are made once
per run for every frame (``fantasy_core.sampling_run``) and a call takes views of its frames; a track whose cache would
outgrow the adapter's k/v weights has them made per call for the call's frames only. This measures the median time of
one steady-state call, with the calls for the two track lengths alternating in one process so that drift of the
machine's speed cancels, and the memory one call allocates (every new tensor storage its operations create, counted
exactly through a dispatch mode), and prints the long/short ratios. The earlier way (project the whole track on every
call, then cut the windows) is measured beside it for comparison.

    python benchmarks/bench_audio_path.py                        # 10 s and 10 min, real adapter widths, 4 blocks
    python benchmarks/bench_audio_path.py --one 600 --calls 100  # one track length only (for whole-process timing)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fantasy_core import AudioAdapter, AudioAdapterConfig, AudioContext, AudioEmbeds, PreparedAudio, compute_audio_windows  # noqa: E402
from fantasy_core.audio.windows import gather_windows  # noqa: E402
from fantasy_core.dit.attention import frame_groups  # noqa: E402
from fantasy_core.dit.injection import branch_terms  # noqa: E402
from fantasy_core.frames import official_num_frames  # noqa: E402
from fantasy_core.passes import PassSettings  # noqa: E402
from fantasy_core.sampling_run import RunInputs, SamplingRun  # noqa: E402

TOKENS_PER_SECOND = 50  # wav2vec2: 16 kHz / hop 320
WINDOW_LATENT_FRAMES = 21  # one 81-frame context window
# Real adapter widths (wav2vec2-base 768 -> 2048); a Wan-like block width and token count kept small enough for a CPU.
CONFIG = AudioAdapterConfig(audio_dim=768, context_dim=2048, model_dim=1024, num_blocks=4)
HEADS, TOKENS_PER_FRAME = 8, 64


class AllocationCounter(TorchDispatchMode):
    """Bytes of every tensor storage the operations create (views of their inputs are not new memory)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        created = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tree_leaves(out) if isinstance(t, torch.Tensor)}
        self.bytes += sum(size for pointer, size in created.items() if pointer not in inputs)
        return out


def whole_track_context(adapter: AudioAdapter, features: torch.Tensor, windows) -> AudioContext:
    """The earlier per-call path: the whole track projected, then the windows cut out."""
    tokens = gather_windows(adapter.proj_model(features.float()), windows)
    return AudioContext(tokens[None], windows.k_lens[None])


def call_for(seconds: float, whole_track: bool):
    """One model call's audio work for a track of ``seconds``, under a context window in the track's middle."""
    torch.manual_seed(0)
    adapter = AudioAdapter(CONFIG).eval()
    features = torch.randn(int(seconds * TOKENS_PER_SECOND), CONFIG.audio_dim)
    windows = compute_audio_windows(features.shape[0], official_num_frames(seconds, 23, None))
    middle = windows.latent_frames // 2 - WINDOW_LATENT_FRAMES // 2
    window = windows.select(list(range(middle, middle + WINDOW_LATENT_FRAMES)))
    q = torch.randn(2, WINDOW_LATENT_FRAMES * TOKENS_PER_FRAME, CONFIG.model_dim)
    hidden = torch.zeros_like(q)
    rows = (PassSettings(1.0), PassSettings(0.0))  # positive hears the audio, negative does not
    frames = list(range(middle, middle + WINDOW_LATENT_FRAMES))
    embeds = AudioEmbeds(features, windows, PreparedAudio(torch.zeros(1), windows.num_frames, 23))
    run = SamplingRun(RunInputs(adapter, embeds), torch.device("cpu"), torch.float32)
    run.call(rows, frames)  # the run's first call makes what the run keeps

    def one_call():
        if whole_track:
            context = whole_track_context(adapter, features, window)
            terms = branch_terms([0], torch.ones(2), adapter.keys_values(context, torch.float32), frame_groups(window.k_lens.tolist()))
        else:
            (terms,) = run.call(rows, frames).branches
        for term in terms:
            term.add_to(hidden, q, HEADS)

    one_call.mode = "whole track" if whole_track else ("keys/values cached for the run" if run.cache_audio else "keys/values per call")
    return one_call


@torch.inference_mode()
def measure(lengths: list[float], calls: int, whole_track: bool) -> list[dict]:
    runs = [call_for(seconds, whole_track) for seconds in lengths]
    times = [[] for _ in lengths]
    for _ in range(calls):
        for run, spent in zip(runs, times):  # alternating: A B A B ...
            start = time.perf_counter()
            run()
            spent.append(time.perf_counter() - start)
    results = []
    for seconds, run, spent in zip(lengths, runs, times):
        with AllocationCounter() as counter:
            run()
        results.append(
            {
                "seconds": seconds,
                "tokens": int(seconds * TOKENS_PER_SECOND),
                "mode": run.mode,
                "call_ms": 1000 * statistics.median(spent),
                "allocated_mb": counter.bytes / 2**20,
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", type=float, help="measure one track length (seconds) only and print JSON")
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--short", type=float, default=10.0)
    parser.add_argument("--long", type=float, default=600.0)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure([args.one], args.calls, whole_track=False)[0]))
        return
    print(
        f"audio path per model call, {WINDOW_LATENT_FRAMES}-latent-frame context window, {CONFIG.num_blocks} blocks, "
        f"adapter {CONFIG.audio_dim}->{CONFIG.context_dim}->{CONFIG.model_dim}, median of {args.calls} alternating calls, "
        f"CPU ({torch.get_num_threads()} threads)"
    )
    for label, whole in (("windows only (now)", False), ("whole track (before)", True)):
        short, long = measure([args.short, args.long], args.calls, whole)
        for result in (short, long):
            print(
                f"  {label:22s} {result['seconds']:6.0f} s track ({result['tokens']:6d} tokens): "
                f"{result['call_ms']:8.2f} ms/call, {result['allocated_mb']:7.1f} MB allocated/call ({result['mode']})"
            )
        print(
            f"  {label:22s} ratio {args.long:.0f} s / {args.short:.0f} s: time {long['call_ms'] / short['call_ms']:.3f}, "
            f"memory {long['allocated_mb'] / short['allocated_mb']:.3f}"
        )


if __name__ == "__main__":
    main()
