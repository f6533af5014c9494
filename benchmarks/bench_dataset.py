"""Data preparation benchmark: throughput and peak memory at the tiny scale, and an estimate per real clip.

    python benchmarks/bench_dataset.py [--videos 4 16]      (needs a ComfyUI checkout: COMFYUI_PATH or ~/comfy/ComfyUI)

1. For each video count, a fresh process makes that many 4.4 s talking videos (the test suite's astronaut with
   espeak-ng speech, two 12 fps x 25-frame clips each, 128 x 128), prepares them with the tiny encoders in this
   process (no workers) and reports clips per second and its peak resident memory; memory must stay flat (within
   10%) from 4 to 16 videos, since clips are streamed.
2. Per real clip (81 frames, 512 x 512, 23 fps): bytes on disk per cached tensor (bf16), and the GPU time of each
   encoder from its FLOP count (the Wan VAE's counted on its real architecture, the others from parameter counts)
   at an assumed sustained 300 TFLOP/s (a third of an H100's dense bf16 peak), next to the CPU trackers' time
   measured here per frame.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SUSTAINED_FLOPS = 300e12
REAL = {"frames": 81, "fps": 23, "side": 512}


def one_run(videos: int, folder: str) -> dict:
    from fantasy_comfy.host import find_comfyui, import_comfyui

    import_comfyui(str(find_comfyui()), "--cpu")
    import comfy
    from dataset_media import make_videos
    from dataset_models import MODEL_NAMES, tiny_encoders

    from fantasy_core.dataset.analyse import AnalysisModels
    from fantasy_core.dataset.settings import DatasetSettings
    from fantasy_train.prepare import RunOptions, prepare_dataset

    settings = DatasetSettings(fps=12, frames=25, width=128, height=128)
    make_videos(os.path.join(folder, "videos"), talking=videos, extras=False)
    encoders = tiny_encoders(comfy, os.path.join(folder, "models"))
    start = time.perf_counter()
    summary = prepare_dataset(
        os.path.join(folder, "videos"),
        os.path.join(folder, "out"),
        settings,
        encoders,
        MODEL_NAMES,
        AnalysisModels(settings),
        options=RunOptions(show_progress=False),
    )
    seconds = time.perf_counter() - start
    return {
        "videos": videos,
        "clips": summary["clips_kept"],
        "seconds": seconds,
        "dropped": {reason: entry["count"] for reason, entry in summary["dropped"].items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def vae_flops_per_clip() -> float:
    """Wan 2.1 VAE encoder FLOPs for 81 frames at 512 x 512, counted on the real architecture at 9 frames x 64 x 64
    and scaled by pixels x frames (every layer is a convolution or a per-pixel operation)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fantasy_comfy.host import find_comfyui, import_comfyui

    import_comfyui(str(find_comfyui()), "--cpu")
    from comfy.ldm.wan.vae import WanVAE

    vae = WanVAE(
        dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[], temperal_downsample=[False, True, True], dropout=0.0
    )
    sample = torch.zeros(1, 3, 9, 64, 64)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        vae.encode(sample)
    return counter.get_total_flops() * (REAL["frames"] / 9) * (REAL["side"] / 64) ** 2


def per_clip_estimate() -> None:
    from fantasy_core.audio.wav2vec import WAV2VEC2_GEOMETRY
    from fantasy_core.frames import latent_frames, samples_for_frames

    t, cells = latent_frames(REAL["frames"]), (REAL["side"] // 8) ** 2
    tokens = WAV2VEC2_GEOMETRY.num_tokens(samples_for_frames(REAL["frames"], REAL["fps"], 16000))
    sizes = {
        "latents": 16 * t * cells,
        "reference_latents": 16 * t * cells,
        "reference_mask": t * cells,
        "clip_vision": 257 * 1280,
        "audio_features": tokens * 768,
        "lip_mask": t * cells,
    }
    total = sum(2 * n for n in sizes.values()) + 512 * 4
    print("\nDisk per real clip (81 frames, 512x512, bf16):")
    for name, n in sizes.items():
        print(f"  {name:18} {2 * n / 2**20:6.2f} MiB")
    print(f"  {'face_embedding':18} {512 * 4 / 2**20:6.3f} MiB (fp32)")
    print(
        f"  total {total / 2**20:.2f} MiB per clip (+ {4096 * 2 / 1024:.0f} KiB per caption token, once per caption per shard); "
        f"150k clips (the paper's) = {150_000 * total / 2**40:.2f} TiB"
    )
    vae = vae_flops_per_clip()
    stages = {
        "Wan VAE, clip latents": vae,
        "Wan VAE, reference + grey frames": vae,
        "CLIP ViT-H (632M params x 257 tokens)": 2 * 632e6 * 257,
        f"wav2vec2-base (95M params x {tokens} tokens)": 2 * 95e6 * tokens,
        "UMT5-XXL encoder (5.7B params x 512 tokens), once per caption": 2 * 5.7e9 * 512,
    }
    print(f"\nGPU time per real clip at {SUSTAINED_FLOPS / 1e12:.0f} TFLOP/s sustained:")
    for name, flops in stages.items():
        print(f"  {name:60} {flops / 1e12:8.2f} TFLOP  {flops / SUSTAINED_FLOPS * 1000:8.1f} ms")
    measured = sum(v for k, v in stages.items() if "UMT5" not in k) / SUSTAINED_FLOPS
    print(f"  per clip without the caption: {measured:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one, args.folder)))
        return
    results = []
    for count in args.videos:
        with tempfile.TemporaryDirectory() as folder:
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(count), "--folder", folder], capture_output=True, text=True, check=True
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("Tiny scale (128x128, 25 frames at 12 fps, tiny encoders, no workers), one fresh process per run:")
    for r in results:
        print(
            f"  {r['videos']:3d} videos: {r['clips']:3d} clips in {r['seconds']:6.1f} s = {r['clips'] / r['seconds']:.2f} clips/s, "
            f"peak RSS {r['peak_rss_mb']:.0f} MiB; dropped {r['dropped'] or 'none'}"
        )
    if len(results) >= 2:
        print(
            f"  peak memory ratio {results[-1]['videos']} / {results[0]['videos']} videos: "
            f"{results[-1]['peak_rss_mb'] / results[0]['peak_rss_mb']:.3f}"
        )
    per_clip_estimate()


if __name__ == "__main__":
    main()
