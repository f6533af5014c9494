"""Motion benchmark: what measuring a reference clip costs, and what the motion embedding costs per model call.

    python benchmarks/bench_motion.py [--frames 50] [--repeats 3]

1. Measuring: frames per second of ``measure_motion`` (MediaPipe face mesh + MediaPipe Pose, static mode) on a
   512 x 512 clip made from scikit-image's astronaut, next to the face mesh alone, in one run.
2. The motion network at the real scale (Wan2.1-14B time-embedding width 5120, hidden width 1024) against Wan's own
   time_projection (5120 -> 6 x 5120), which runs once per model call too: FLOPs and measured time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from fantasy_core.motion.model import MotionConfig, MotionNetwork, initialise_motion_network  # noqa: E402

REAL_MOTION = MotionConfig(hidden_dim=1024, model_dim=5120)


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def motion_flops(c: MotionConfig, rows: int = 2) -> float:
    per_token = 2 * c.hidden_dim + 2 * c.hidden_dim * c.hidden_dim  # the scalar MLP
    per_token += 2 * 2 * c.hidden_dim * c.hidden_dim  # the residual layer
    return rows * (2 * per_token + 2 * c.hidden_dim * c.model_dim)


def bench_measuring(frames: int, repeats: int) -> None:
    from motion_clips import FPS, clip

    from fantasy_core.motion.landmarks import FaceMeshTracker, MediaPipePoseTracker
    from fantasy_core.motion.measure import measure_motion

    pixels = clip(frames=frames, expression=8, body=8)

    def face_only():
        with FaceMeshTracker() as face:
            for frame in pixels:
                face.track(frame)

    def both():
        with FaceMeshTracker() as face, MediaPipePoseTracker() as body:
            measure_motion(pixels, FPS, face, body)

    face_s, both_s = median_seconds(face_only, repeats), median_seconds(both, repeats)
    print(
        f"measuring {frames} frames of 512x512 on CPU: face mesh alone {frames / face_s:.1f} frames/s, "
        f"face mesh + pose + measurement {frames / both_s:.1f} frames/s (ratio {both_s / face_s:.2f})"
    )


@torch.no_grad()
def bench_network(repeats: int) -> None:
    network = initialise_motion_network(MotionNetwork(REAL_MOTION))
    projection = torch.nn.Sequential(torch.nn.SiLU(), torch.nn.Linear(5120, 6 * 5120))
    omegas, e = torch.rand(2, 2), torch.randn(2, 5120)
    motion_s = median_seconds(lambda: network(omegas), repeats * 10)
    projection_s = median_seconds(lambda: projection(e), repeats * 10)
    projection_flops = 2 * 2 * 5120 * 6 * 5120
    print(
        f"motion network (hidden {REAL_MOTION.hidden_dim}, width {REAL_MOTION.model_dim}), batch 2: "
        f"{motion_flops(REAL_MOTION) / 1e6:.1f} MFLOP, {motion_s * 1e3:.2f} ms; Wan's time_projection: "
        f"{projection_flops / 1e6:.1f} MFLOP, {projection_s * 1e3:.2f} ms (ratio {motion_s / projection_s:.2f}); "
        f"{sum(p.numel() for p in network.parameters()) / 1e6:.1f} M parameters"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bench_network(args.repeats)
    try:
        bench_measuring(args.frames, args.repeats)
    except ImportError as error:
        print(f"measuring skipped: {error}")


if __name__ == "__main__":
    main()
