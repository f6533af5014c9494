"""Evaluation benchmark: videos per minute per metric for one generated clip (512 px, 81 frames at 23 fps, with
speech), each metric's networks at their real sizes with random weights, side by side in one run.

    python benchmarks/bench_evaluation.py [--frames 81] [--size 512] [--metrics sync,idc,sd,aesthetic,fid,fvd,es] [--json F]

Measured here: seconds per video on this machine's device (CPU by default) for each metric's whole per-video path
(face detection, crops, networks, arithmetic), and the decoding shared by all. Counted: each metric's network FLOPs
per video (torch's FlopCounterMode on the same path), from which one GPU's time is estimated as FLOPs / an assumed
sustained rate plus the CPU-side work measured here (MediaPipe detection and segmentation stay on the CPU). FVD's
I3D is available only as TorchScript weights, so its network is a stand-in here: its cost is estimated from I3D's
published 108 GFLOPs per 64-frame 224 px clip and this machine's measured FLOP rate on the Inception.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

GPU_SUSTAINED_FLOPS = 50e12  # assumed: fp32 networks with TF32 convolutions on a current data-centre GPU
I3D_FLOPS_PER_FRAME = 108e9 / 64  # I3D (Carreira & Zisserman) at 224 px
FPS = 23


def write_real_size_weights(folder: str) -> None:
    """SyncNet, RAFT-large and the FID Inception are fixed architectures; DINO ViT-B/16 and CLIP ViT-L/14 at their
    published configurations; the LAION head [1, 768]; a stand-in I3D with the real call signature."""
    import transformers
    from evaluation_models import write_face_recon, write_i3d, write_inception, write_raft, write_syncnet

    for write in (write_syncnet, write_raft, write_inception, write_i3d, write_face_recon):
        write(folder)
    transformers.ViTModel(transformers.ViTConfig(patch_size=16), add_pooling_layer=False).save_pretrained(f"{folder}/dino-vitb16")
    vision = transformers.CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14, projection_dim=768
    )
    transformers.CLIPVisionModelWithProjection(vision).save_pretrained(f"{folder}/clip-vit-large-patch14")
    torch.save(torch.nn.Linear(768, 1).state_dict(), f"{folder}/sa_0_4_vit_l_14_linear.pth")


def write_clip(path: str, frames: int, size: int) -> None:
    import torch.nn.functional as F
    from dataset_media import speech, write_video
    from motion_clips import clip

    pictures = clip(frames=frames, expression=8, body=6)
    if size != pictures[0].shape[0]:
        stacked = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).float()
        pictures = list(F.interpolate(stacked, size=(size, size), mode="bilinear").round().byte().permute(0, 2, 3, 1).numpy())
    samples, rate = speech("a")
    needed = int(frames / FPS * rate) + rate
    write_video(path, pictures, FPS, (np.resize(samples, needed), rate))


def cpu_side_seconds(name: str, video, runner, shared) -> float:
    """What stays on the CPU when the networks run on a GPU: face detection (sync, IDC), segmentation (SD/BD)."""
    if name in ("sync", "idc", "es"):
        shared.next_video()
        start = time.perf_counter()
        for frame in video.frames:
            runner.shared.detector.detect(frame)
        return time.perf_counter() - start
    if name == "dynamics":
        from fantasy_core.evaluation.dynamics import prepare_frames

        prepared = prepare_frames(video.frames, runner.protocol)
        start = time.perf_counter()
        runner.segmenter.masks(prepared)
        return time.perf_counter() - start
    return 0.0


def measure(runner, video, shared) -> float:
    """One metric alone on the video: its own face detection included (the run forgets the previous metric's)."""
    shared.next_video()
    start = time.perf_counter()
    runner.features(video) if hasattr(runner, "features") else runner.score(video)
    return time.perf_counter() - start


def counted_flops(runner, video, shared) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        measure(runner, video, shared)
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--metrics", default="sync,idc,sd,aesthetic,fid,fvd,es")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()

    from fantasy_core.evaluation import metrics
    from fantasy_core.evaluation.folder import EvaluationRequest
    from fantasy_core.evaluation.media import read_video

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as work:
        weights = os.path.join(work, "weights")
        os.makedirs(weights)
        write_real_size_weights(weights)
        path = os.path.join(work, "talk.mp4")
        write_clip(path, args.frames, args.size)
        start = time.perf_counter()
        video = read_video(path, "talk.mp4", None, None, need_sound=True)
        decode_s = time.perf_counter() - start
        video.portrait = video.frames[0]  # the source portrait: IDC's and ES's reference
        chosen = [name.strip() for name in args.metrics.split(",")]
        request = EvaluationRequest(
            videos_dir=work, out_dir=work, weights_dir=weights, metrics=tuple(chosen), portraits_dir=work, device=args.device
        )
        paths = {entry.key: os.path.join(weights, entry.name) for entry in metrics.weights_of(chosen)}
        shared = metrics.Shared()
        figures = {"device": args.device, "frames": len(video.frames), "size": args.size, "decode_seconds": decode_s, "metrics": {}}
        print(f"one clip: {len(video.frames)} frames of {args.size} px at {FPS} fps with speech; decoding {decode_s:.2f} s")
        print(f"{'metric':10} {'s/video':>8} {'videos/min':>11} {'GFLOP/video':>12} {'CPU-side s':>10} {'GPU est. videos/min':>20}")
        try:
            runners = metrics.build(chosen, paths, args.device, shared, request)
            inception_rate = None
            for runner in runners:
                measure(runner, video, shared)  # warm-up: first calls allocate and pick kernels
                seconds = measure(runner, video, shared)
                flops = counted_flops(runner, video, shared)
                if runner.name == "fid":
                    inception_rate = flops / seconds
                if runner.name == "fvd":  # the stand-in's cost replaced by the real I3D's
                    clips = len(video.frames) // 16
                    flops = clips * 16 * I3D_FLOPS_PER_FRAME
                    seconds = seconds + flops / inception_rate if inception_rate else float("nan")
                cpu_side = cpu_side_seconds(runner.name, video, runner, shared)
                gpu_seconds = flops / GPU_SUSTAINED_FLOPS + cpu_side + decode_s
                figures["metrics"][runner.name] = {
                    "seconds_per_video": seconds,
                    "videos_per_minute": 60 / seconds,
                    "gflops_per_video": flops / 1e9,
                    "cpu_side_seconds": cpu_side,
                    "gpu_estimate_videos_per_minute": 60 / gpu_seconds,
                }
                print(f"{runner.name:10} {seconds:8.2f} {60 / seconds:11.2f} {flops / 1e9:12.1f} {cpu_side:10.2f} {60 / gpu_seconds:20.1f}")
        finally:
            shared.close()
    print(
        f"GPU estimate: FLOPs / {GPU_SUSTAINED_FLOPS / 1e12:.0f} TFLOP/s sustained + the CPU-side work and decoding measured "
        "here; an estimate, not a measurement. FVD: I3D's cost estimated from its published FLOPs (see the docstring)."
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
