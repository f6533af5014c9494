"""Evaluating a folder of generated videos: every chosen metric over every video (a row each, nothing dropped), the
set metrics against reference videos (statistics cached), the summary and the manifest. Launched with
``accelerate launch``, the processes share the folder out and the rows and statistics are gathered on the first."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

from ..dataset.video import UnreadableVideoError, find_videos
from . import catalog, metrics
from .dynamics import DynamicsProtocol
from .frechet import FeatureStatistics, frechet_distance
from .media import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, matched_file, read_video
from .report import manifest, status_counts, value_summary, write_outputs
from .sync import SyncProtocol


class MissingWeightsError(FileNotFoundError):
    """None of the metrics asked for has its weights."""


@dataclass
class EvaluationRequest:
    videos_dir: str
    out_dir: str
    weights_dir: str | None = None  # ComfyUI/models/evaluation or any folder holding catalog names
    metrics: tuple[str, ...] = metrics.DEFAULT
    audio_dir: str | None = None  # voice files matched by name; None: each video's own sound track
    portraits_dir: str | None = None  # source portraits matched by name (IDC against the portrait)
    reference_dir: str | None = None  # reference videos for FID and FVD
    stats_cache: str | None = None  # where reference statistics are cached; None: <out_dir>/reference_stats
    device: str = "cpu"
    sync_protocol: SyncProtocol = field(default_factory=SyncProtocol)
    dynamics_protocol: DynamicsProtocol = field(default_factory=DynamicsProtocol)
    weight_files: dict[str, str] = field(default_factory=dict)  # catalog key -> an explicit path (e.g. --syncnet)
    check_hashes: bool = True  # refuse a file whose publisher's hash it does not match (else record the mismatch)


@dataclass
class Plan:
    metrics: tuple[str, ...]  # what will run
    paths: dict[str, str]  # catalog key -> weights path
    skipped: dict[str, str]  # metric -> why it will not run
    missing: str = ""  # every missing weights file, with its folder and source


def plan(request: EvaluationRequest) -> Plan:
    """Which metrics can run: each one's weights present (explicit paths first, then the weights folder); the set
    metrics need reference videos. Every missing file is named at once."""
    unknown = [name for name in request.metrics if name not in metrics.ALL]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(metrics.ALL)}.")
    paths, skipped, missing = {}, {}, {}
    for name in request.metrics:
        if name in metrics.SETS and request.reference_dir is None:
            skipped[name] = "needs reference videos (--reference-dir)"
            continue
        absent = []
        for entry in metrics.weights_of([name], request):
            path = request.weight_files.get(entry.key) or (os.path.join(request.weights_dir, entry.name) if request.weights_dir else None)
            if path and catalog.exists(path, entry):
                paths[entry.key] = path
            else:
                absent.append(entry)
                missing[entry.key] = entry
        if absent:
            skipped[name] = "weights missing: " + ", ".join(entry.name for entry in absent)
    runnable = tuple(name for name in request.metrics if name not in skipped)
    message = ""
    if missing:
        where = request.weights_dir or "ComfyUI/models/evaluation (give --weights or set COMFYUI_PATH)"
        message = "missing weights: " + catalog.describe_missing(where, missing.values())
    if not runnable and message:
        raise MissingWeightsError(message)
    if not runnable:
        raise ValueError("no metric can run: " + "; ".join(f"{name} {reason}" for name, reason in skipped.items()))
    return Plan(runnable, paths, skipped, message)


def hashed_weights(paths: dict[str, str], check: bool = True) -> dict[str, dict]:
    """Each weights file's SHA-256 for the manifest; a file whose publisher put a hash in its name must match it
    (unless ``check`` is off, when the manifest says it does not)."""
    described = {}
    for key, path in paths.items():
        entry = catalog.BY_KEY[key]
        if entry.is_folder:
            files = sorted(name for name in os.listdir(path) if os.path.isfile(os.path.join(path, name)))
            described[key] = {
                "folder": os.path.basename(path),
                "sha256": {name: catalog.sha256_of(os.path.join(path, name)) for name in files},
            }
        else:
            digest = catalog.sha256_of(path)
            described[key] = {"file": os.path.basename(path), "sha256": digest}
            if entry.sha256_prefix:
                described[key]["published"] = digest.startswith(entry.sha256_prefix)
                if check and not described[key]["published"]:
                    raise ValueError(
                        f"{path} is not the published {entry.name}: its SHA-256 does not start with {entry.sha256_prefix}. "
                        f"Download it again from {entry.source} (or pass --allow-unpublished-weights to score with it anyway)."
                    )
    return described


class Processes:
    """accelerate's view of the launch (one process when not launched by ``accelerate launch`` or torchrun); on
    GPUs each process takes its own device, on the CPU they talk over gloo."""

    def __init__(self, device: str):
        self.state, self.device = None, device
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import PartialState

            self.state = PartialState(cpu=device == "cpu")
            self.device = str(self.state.device)

    @property
    def count(self) -> int:
        return self.state.num_processes if self.state else 1

    @property
    def is_main(self) -> bool:
        return self.state.is_main_process if self.state else True

    def mine(self, items: list) -> list:
        return items[self.state.process_index :: self.state.num_processes] if self.state else items

    def gather_rows(self, rows: list[dict]) -> list[dict]:
        if not self.state:
            return rows
        from accelerate.utils import gather_object

        return gather_object(rows)

    def sum_statistics(self, statistics: FeatureStatistics) -> FeatureStatistics:
        if not self.state:
            return statistics
        import torch
        from accelerate.utils import reduce

        device = self.state.device
        count = reduce(torch.tensor([float(statistics.count)], dtype=torch.float64, device=device), "sum")
        total = reduce(statistics.total.to(device), "sum").cpu()
        outer = reduce(statistics.outer.to(device), "sum").cpu()
        return FeatureStatistics(int(count.item()), total, outer)


def listing_key(videos: list[tuple[str, str]], metric, weights: dict) -> str:
    listing = [(relative, os.path.getsize(path), os.path.getmtime(path)) for path, relative in videos]
    own = {key: weights[key] for key in metric.weights if key in weights}  # this metric's network only, so other choices reuse the cache
    payload = json.dumps([metric.name, metric.described(), own, listing], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def set_statistics(metric, videos, processes: Processes, progress) -> tuple[FeatureStatistics, dict[str, int]]:
    """The reference videos' statistics and how many were used, unreadable or too short."""
    statistics, counts = FeatureStatistics.empty(metric.width), {"used": 0, "unreadable": 0, "too_short": 0}
    for path, relative in progress(processes.mine(videos), f"reference {metric.name}"):
        try:
            video = read_video(path, relative, None, None, need_sound=False)
        except UnreadableVideoError:
            counts["unreadable"] += 1
            continue
        features, _ = metric.features(video)
        counts["used" if features is not None else "too_short"] += 1
        if features is not None:
            statistics.update(features)
    gathered = processes.gather_rows([counts])
    return processes.sum_statistics(statistics), {key: sum(part[key] for part in gathered) for key in counts}


def reference_statistics(
    metric, request: EvaluationRequest, weights: dict, processes: Processes, progress
) -> tuple[FeatureStatistics, dict]:
    """The reference set's statistics, from the cache when the same videos, weights and protocol made them."""
    videos = find_videos(request.reference_dir)
    cache_dir = request.stats_cache or os.path.join(request.out_dir, "reference_stats")
    path = os.path.join(cache_dir, f"{metric.name}-{listing_key(videos, metric, weights)}.pt")
    if os.path.isfile(path):
        statistics, description = FeatureStatistics.load(path)
        return statistics, {"file": path, "cached": True, "videos": len(videos), "made_from": description}
    statistics, counts = set_statistics(metric, videos, processes, progress)
    description = f"{metric.name} of {counts['used']} of {len(videos)} videos under {request.reference_dir} ({counts})"
    if processes.is_main:
        statistics.save(path, description)
    return statistics, {"file": path, "cached": False, "videos": len(videos), "made_from": description}


def evaluate_folder(request: EvaluationRequest, show_progress: bool = True, announce=print) -> dict:
    """Scores every video under ``videos_dir``, writes the outputs to ``out_dir`` (first process) and returns the summary."""
    from tqdm import tqdm

    chosen = plan(request)
    videos = find_videos(request.videos_dir)
    processes = Processes(request.device)
    if processes.is_main:
        for name, reason in chosen.skipped.items():
            announce(f"skipping {name}: {reason}")
        if chosen.missing:
            announce(chosen.missing)

    def progress(items, what):
        return tqdm(items, desc=what, unit="video", disable=not (show_progress and processes.is_main))

    weights = hashed_weights(chosen.paths, request.check_hashes)
    shared = metrics.Shared()
    try:
        runners = metrics.build(chosen.metrics, chosen.paths, processes.device, shared, request)
        per_video = [runner for runner in runners if not hasattr(runner, "features")]
        sets = [runner for runner in runners if hasattr(runner, "features")]
        needs_sound = any(getattr(runner, "needs_sound", False) for runner in runners)
        needs_reference = any(getattr(runner, "needs_reference_video", False) for runner in runners)
        rows, generated = [], {runner.name: FeatureStatistics.empty(runner.width) for runner in sets}
        for path, relative in progress(processes.mine(videos), "evaluating"):
            audio = matched_file(request.audio_dir, relative, AUDIO_EXTENSIONS)
            portrait = matched_file(request.portraits_dir, relative, IMAGE_EXTENSIONS)
            row = {"video": relative, "audio": os.path.relpath(audio, request.audio_dir) if audio else "own track"}
            if request.portraits_dir:
                row["portrait"] = os.path.relpath(portrait, request.portraits_dir) if portrait else None
            try:
                video = read_video(path, relative, audio, portrait, needs_sound)
            except UnreadableVideoError as error:
                rows.append({**row, "read_status": "unreadable", "read_detail": str(error)})
                continue
            row.update(read_status="ok", read_detail="", fps_in=video.fps, seconds=video.seconds, frames_in=len(video.frames))
            shared.next_video()
            if needs_reference and request.reference_dir:
                row["reference"], video.reference_frames = reference_video(request.reference_dir, relative)
            for runner in per_video:
                row.update(runner.score(video))
            for runner in sets:
                features, detail = runner.features(video)
                row[f"{runner.name}_status"] = "used" if features is not None else "too_short"
                row[f"{runner.name}_detail"] = detail
                row[f"{runner.name}_items"] = 0 if features is None else int(features.shape[0])
                if features is not None:
                    generated[runner.name].update(features)
            rows.append(row)
        rows = sorted(processes.gather_rows(rows), key=lambda row: row["video"])
        generated = {name: processes.sum_statistics(statistics) for name, statistics in generated.items()}
        set_results = {}
        for runner in sets:
            reference, cache = reference_statistics(runner, request, weights, processes, progress)
            set_results[runner.name] = set_summary(runner, generated[runner.name], reference, cache)
    finally:
        shared.close()
    summary = summarise(rows, runners, set_results, chosen.skipped)
    summary["missing_weights"] = chosen.missing
    if processes.is_main:
        arguments = {**asdict(request), "metrics": list(chosen.metrics)}
        protocols = {runner.name: runner.described() for runner in runners}
        write_outputs(request.out_dir, rows, summary, manifest(arguments, weights, protocols, processes.count))
    return summary


def reference_video(reference_dir: str, relative: str) -> tuple[str | None, object]:
    """The reference video of the same name and its frames, or (None, None) when there is none or it is unreadable."""
    from ..dataset.settings import VIDEO_EXTENSIONS

    path = matched_file(reference_dir, relative, VIDEO_EXTENSIONS)
    if path is None:
        return None, None
    try:
        return os.path.relpath(path, reference_dir), read_video(path, relative, None, None, need_sound=False).frames
    except UnreadableVideoError:
        return f"{os.path.relpath(path, reference_dir)} (unreadable)", None


def set_summary(runner, generated: FeatureStatistics, reference: FeatureStatistics, cache: dict) -> dict:
    enough = generated.count >= 2 and reference.count >= 2
    return {
        "value": frechet_distance(generated, reference) if enough else None,
        "generated": generated.count,
        "reference": reference.count,
        "unit": runner.unit,
        "reference_videos": cache["videos"],
        "reference_stats": cache["file"],
        "reference_stats_cached": cache["cached"],
        "reference_made_from": cache["made_from"],
        "note": ""
        if generated.count >= runner.width
        else f"fewer {runner.unit} ({generated.count}) than feature dimensions ({runner.width}): the covariance is rank-deficient",
    }


def summarise(rows: list[dict], runners: list, set_results: dict, skipped: dict) -> dict:
    statuses = {"read": status_counts(rows, "read_status")}
    values = {}
    for runner in runners:
        status_column = f"{runner.name}_status"
        statuses[runner.name] = status_counts(rows, status_column)
        for column, rule in getattr(runner, "summarised", {}).items():
            values[column] = value_summary(rows, column, status_column, rule)
    return {"videos": len(rows), "status": statuses, "metrics": values, "sets": set_results, "skipped": dict(skipped)}
