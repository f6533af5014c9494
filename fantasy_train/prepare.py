"""The data preparation: plan the clips of every video, analyse them on the CPU in worker processes (in order, a
bounded number ahead), encode what is kept with the GPU encoders, and write shards as they fill. Memory holds a few
clips at a time whatever the number or length of the videos."""

from __future__ import annotations

import collections
import csv
import hashlib
import logging
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import torch

from fantasy_core.dataset import (
    analyse as clip_analysis,  # imported by its top-level name: worker processes re-import it
)
from fantasy_core.dataset.settings import DatasetSettings
from fantasy_core.dataset.store import DatasetFolder
from fantasy_core.dataset.summary import dataset_calibration, write_summary
from fantasy_core.dataset.video import UnreadableVideoError, find_videos, probe
from fantasy_core.frames import clip_starts
from fantasy_core.motion.intensity import MotionCalibration

logger = logging.getLogger("fantasytalking.prepare")
STORAGE = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class RunOptions:
    workers: int = 0  # CPU worker processes for decoding and the trackers; 0 runs them in this process
    clips_per_shard: int = 16
    encode_batch: int = 4  # reference frames through CLIP vision at once
    show_progress: bool = True


def read_captions(folder: str, captions_csv: str | None, videos: list[tuple[str, str]] = ()) -> dict[str, str]:
    """Captions by relative video path: a CSV with columns 'file' and 'caption', else a sidecar <video>.txt each."""
    captions = {}
    if captions_csv:
        if not os.path.isfile(captions_csv):
            raise FileNotFoundError(f"--captions: the file {captions_csv} does not exist.")
        with open(captions_csv, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"file", "caption"} <= set(reader.fieldnames):
                raise ValueError(f"--captions {captions_csv}: needs the columns 'file' and 'caption'; it has {reader.fieldnames}.")
            captions = {os.path.normpath(row["file"]).replace("\\", "/"): row["caption"].strip() for row in reader}
        unmatched = sorted(set(captions) - {relative for _, relative in videos})
        if unmatched:
            logger.warning(
                "--captions %s: %d rows name no video under %s (e.g. %r); their captions are not used. Names are "
                "paths relative to the videos folder.",
                captions_csv,
                len(unmatched),
                folder,
                unmatched[0],
            )
    return captions


def caption_for(path: str, relative: str, captions: dict[str, str]) -> str:
    if relative in captions:
        return captions[relative]
    sidecar = os.path.splitext(path)[0] + ".txt"
    if os.path.isfile(sidecar):
        with open(sidecar, encoding="utf-8") as f:
            return f.read().strip()
    return ""  # the paper evaluates without prompts


def clip_id(relative: str, index: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", os.path.splitext(os.path.basename(relative))[0])[:40]
    return f"{stem}-{hashlib.sha1(relative.encode()).hexdigest()[:8]}-{index:04d}"


def plan(videos: list[tuple[str, str]], settings: DatasetSettings, captions: dict[str, str], done: set[str]):
    """The clip tasks still to do, and rows for videos dropped as a whole."""
    tasks, dropped = [], []

    def drop(relative: str, reason: str, detail: str) -> None:
        if relative not in done:
            dropped.append({"clip": None, "source": relative, "start": None, "end": None, "reason": reason, "detail": detail, "checks": {}})

    for path, relative in videos:
        try:
            info = probe(path)
        except UnreadableVideoError as error:
            drop(relative, "unreadable", str(error))
            continue
        if not info.has_audio:
            drop(relative, "no_audio", f"{relative} has no audio track")
            continue
        if min(info.width, info.height) < settings.minimum_side:
            drop(
                relative, "low_resolution", f"{info.width}x{info.height}, below min_resolution {settings.minimum_side} on the shorter side"
            )
            continue
        duration = min(info.duration, info.audio_duration)
        starts = clip_starts(duration, settings.frames, settings.fps, settings.stride_seconds)
        if not starts:
            drop(relative, "too_short", f"{duration:.2f} s, one clip needs {settings.clip_seconds:.2f} s")
            continue
        caption = caption_for(path, relative, captions)
        for index, start in enumerate(starts):
            identifier = clip_id(relative, index)
            if identifier not in done:
                tasks.append(clip_analysis.ClipTask(path, relative, identifier, start, caption))
    return tasks, dropped


def analysed(tasks, models: clip_analysis.AnalysisModels, workers: int):
    """Analysis results in task order; with workers, at most 2 x workers clips ahead of the consumer."""
    if workers <= 0:
        analyser = clip_analysis.ClipAnalyser(models)
        try:
            for task in tasks:
                yield _guarded(analyser.analyse, task)
        finally:
            analyser.close()
        return
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=clip_analysis.start_worker, initargs=(models,))
    try:
        window = collections.deque()
        for task in tasks:
            window.append((task, pool.submit(clip_analysis.analyse_in_worker, task)))
            if len(window) >= 2 * workers:
                yield _result(*window.popleft())
        while window:
            yield _result(*window.popleft())
    finally:  # on an error here (an encoder, a kill of the run) the workers' queued clips are not waited for
        pool.shutdown(wait=False, cancel_futures=True)


def _guarded(function, task):
    try:
        return function(task)
    except (BrokenProcessPool, MemoryError):
        raise  # the machine, not the clip: stop; the next run continues from here
    except Exception as error:
        logger.exception("FantasyTalking prepare: %s failed", task.clip_id)
        return clip_analysis.DroppedClip(task, clip_analysis.ERROR, f"{type(error).__name__}: {error}")


def _result(task, future):
    return _guarded(lambda _: future.result(), task)


def dropped_row(result, settings: DatasetSettings) -> dict:
    task = result.task
    return {
        "clip": task.clip_id,
        "source": task.relative,
        "start": task.start,
        "end": round(task.start + settings.clip_seconds, 6),
        "reason": result.reason,
        "detail": result.detail,
        "checks": result.checks,
    }


class ShardWriter:
    """Encodes analysed clips and writes a shard each time ``clips_per_shard`` are ready."""

    def __init__(self, folder: DatasetFolder, encoders, settings: DatasetSettings, options: RunOptions):
        self.folder, self.encoders, self.settings, self.options = folder, encoders, settings, options
        self.dtype = STORAGE[settings.storage_dtype]
        self.waiting, self.tensors, self.rows = [], {}, []

    def add(self, clip) -> None:
        self.waiting.append(clip)
        if len(self.waiting) >= self.options.encode_batch or len(self.rows) + len(self.waiting) >= self.options.clips_per_shard:
            self._encode()
        if len(self.rows) >= self.options.clips_per_shard:
            self.flush()

    def flush(self) -> None:
        self._encode()
        if self.rows:
            self.folder.add_shard(self.tensors, self.rows)
        self.tensors, self.rows = {}, []

    @torch.no_grad()
    def _encode(self) -> None:
        if not self.waiting:
            return
        import numpy as np

        vision = self.encoders.clip_vision_features(np.stack([clip.frames[0] for clip in self.waiting]))
        for clip, clip_vision in zip(self.waiting, vision):
            task, key = clip.task, clip.task.clip_id
            reference, mask = self.encoders.reference_latents(clip.frames[0], len(clip.frames))
            fields = {
                "latents": self.encoders.latents(clip.frames),
                "reference_latents": reference,
                "reference_mask": mask,
                "clip_vision": clip_vision,
                "audio_features": self.encoders.audio_features(clip.waveform),
                "lip_mask": clip.lip_mask,
            }
            for name, value in fields.items():
                self.tensors[f"{key}.{name}"] = _finite(value, f"{key}.{name}").to(self.dtype)
            if clip.face_embedding is not None:
                self.tensors[f"{key}.face_embedding"] = torch.from_numpy(clip.face_embedding).float()
                fields["face_embedding"] = None
            text_key = "text." + hashlib.sha1(task.caption.encode()).hexdigest()[:16]
            if text_key not in self.tensors:  # once per caption per shard
                self.tensors[text_key] = _finite(self.encoders.text(task.caption), text_key).to(self.dtype)
            self.rows.append(
                {
                    "clip": key,
                    "source": task.relative,
                    "start": task.start,
                    "end": round(task.start + self.settings.clip_seconds, 6),
                    "frames": self.settings.frames,
                    "fps": self.settings.fps,
                    "caption": task.caption,
                    "text": text_key,
                    "fields": sorted(fields),
                    "omega_lip_raw": clip.omega_lip_raw,
                    "omega_body_raw": clip.omega_body_raw,
                    "checks": clip.checks,
                }
            )
        self.waiting = []


def _finite(tensor: torch.Tensor, name: str) -> torch.Tensor:
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name}: the encoder produced non-finite values; check the model file (a NaN would poison training).")
    return tensor


def prepare_dataset(
    videos_dir: str,
    out_dir: str,
    settings: DatasetSettings,
    encoders,
    model_names: dict,
    analysis_models: clip_analysis.AnalysisModels,
    captions_csv: str | None = None,
    options: RunOptions = RunOptions(),
) -> dict:
    """Make (or continue) the dataset in ``out_dir`` and return its summary."""
    settings.check_motion_window()
    folder = DatasetFolder.open(out_dir, settings, model_names)
    videos = find_videos(videos_dir)
    tasks, video_drops = plan(videos, settings, read_captions(videos_dir, captions_csv, videos), folder.done)
    folder.add_dropped(video_drops)
    writer = ShardWriter(folder, encoders, settings, options)
    progress = _progress(len(tasks), options.show_progress)
    errors = []
    for result in analysed(tasks, analysis_models, options.workers):
        if isinstance(result, clip_analysis.DroppedClip) and result.reason == clip_analysis.ERROR:
            errors.append(dropped_row(result, settings))  # not recorded as done: the next run tries it again
        elif isinstance(result, clip_analysis.DroppedClip):
            folder.add_dropped([dropped_row(result, settings)])
        else:
            writer.add(result)
        progress.update(1)
        progress.set_postfix(kept=len(folder.kept) + len(writer.rows) + len(writer.waiting), dropped=len(folder.dropped), refresh=False)
    writer.flush()
    progress.close()
    calibration = dataset_calibration(folder.kept, settings.body_landmarks, MotionCalibration().window_seconds)
    return write_summary(out_dir, folder.kept, folder.dropped, calibration, settings.clip_seconds, errors)


def _progress(total: int, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="clip", desc="preparing", disable=not show, dynamic_ncols=True)
