"""The dataset folder, written so an interrupted run can go on where it stopped:

    dataset.json            format, settings and model files (a run with others is refused)
    manifest.jsonl          one row per kept clip, appended only after its shard is complete on disk
    dropped.jsonl           one row per dropped clip or video, with the reason
    shards/shard-NNNNN.safetensors   the clips' tensors, ``<clip id>.<field>`` (+ ``text.<caption key>``)
    calibration.json, summary.json, omega_histograms.png   written when a run completes

A shard is written to a temporary name, flushed and renamed, then its rows are appended in one write. On opening,
a partial last line, a shard whose rows are incomplete and a shard no row names are removed, so the clips they held
are done again, in the same order, into the same shard names: a resumed run ends with the files an uninterrupted
one writes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .settings import DatasetSettings

FORMAT = "fantasytalking.dataset"
VERSION = 1
HEADER = "dataset.json"
MANIFEST = "manifest.jsonl"
DROPPED = "dropped.jsonl"
SHARDS = "shards"


class DatasetFolderError(ValueError):
    """The output folder cannot hold this dataset."""


def _read_rows(path: str) -> list[dict]:
    """Complete JSON lines; a partial last line (a run killed mid-write) is cut off the file."""
    if not os.path.isfile(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(path, "r+b") as f:
            f.truncate(len(complete))
    return [json.loads(line) for line in complete.decode("utf-8").splitlines() if line.strip()]


def _append_rows(path: str, rows: list[dict]) -> None:
    if not rows:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        f.flush()
        os.fsync(f.fileno())


def _write_rows(path: str, rows: list[dict]) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def write_json(path: str, value) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(temporary, path)


def _fsync_directory(path: str) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # not every platform opens directories
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def shard_name(index: int) -> str:
    return f"{SHARDS}/shard-{index:05d}.safetensors"


@dataclass
class DatasetFolder:
    root: str
    header: dict
    kept: list[dict]
    dropped: list[dict]

    @classmethod
    def open(cls, root: str, settings: DatasetSettings, models: dict) -> DatasetFolder:
        """Create the folder, or reopen one made with the same settings and models (cleaning what a kill left)."""
        header = {"format": FORMAT, "version": VERSION, "settings": settings.to_json(), "models": models}
        header_path = os.path.join(root, HEADER)
        if os.path.isfile(header_path):
            with open(header_path, encoding="utf-8") as f:
                existing = json.load(f)
            _check_same(root, existing, header)
        elif os.path.isdir(root) and os.listdir(root):
            raise DatasetFolderError(
                f"The output folder {root} is not empty and holds no {HEADER}: it is not a FantasyTalking dataset. "
                "Choose a new or empty folder."
            )
        else:
            os.makedirs(root, exist_ok=True)
            write_json(header_path, header)  # first: a kill right after leaves a folder that is already this dataset
        os.makedirs(os.path.join(root, SHARDS), exist_ok=True)
        folder = cls(root, header, _read_rows(os.path.join(root, MANIFEST)), _read_rows(os.path.join(root, DROPPED)))
        folder._remove_unfinished_shards()
        return folder

    def _remove_unfinished_shards(self) -> None:
        from safetensors import safe_open

        by_shard: dict[str, list[dict]] = {}
        for row in self.kept:
            by_shard.setdefault(row["shard"], []).append(row)
        complete = set()
        for shard, rows in by_shard.items():
            path = os.path.join(self.root, shard)
            if os.path.isfile(path):
                with safe_open(path, "pt") as f:
                    listed = json.loads(f.metadata()["clips"])
                if [row["clip"] for row in rows] == listed:
                    complete.add(shard)
        if len(complete) != len(by_shard):
            self.kept = [row for row in self.kept if row["shard"] in complete]
            _write_rows(os.path.join(self.root, MANIFEST), self.kept)
        for name in os.listdir(os.path.join(self.root, SHARDS)):
            if f"{SHARDS}/{name}" not in complete:
                os.remove(os.path.join(self.root, SHARDS, name))

    @property
    def done(self) -> set[str]:
        """Clip ids and sources (whole videos dropped) already decided."""
        return {row["clip"] for row in self.kept} | {row["clip"] or row["source"] for row in self.dropped}

    @property
    def next_shard(self) -> int:
        indices = [int(row["shard"].rsplit("-", 1)[1].split(".")[0]) for row in self.kept]
        return max(indices, default=-1) + 1

    def add_dropped(self, rows: list[dict]) -> None:
        _append_rows(os.path.join(self.root, DROPPED), rows)
        self.dropped.extend(rows)

    def add_shard(self, tensors: dict, rows: list[dict]) -> str:
        """Write one shard of clips (tensors keyed ``<clip>.<field>``) and then its manifest rows."""
        from safetensors.torch import save_file

        name = shard_name(self.next_shard)
        path = os.path.join(self.root, name)
        rows = [{**row, "shard": name} for row in rows]
        metadata = {"format": FORMAT + ".shard", "clips": json.dumps([row["clip"] for row in rows])}
        save_file({key: value.contiguous() for key, value in tensors.items()}, path + ".tmp", metadata=metadata)
        with open(path + ".tmp", "rb") as f:
            os.fsync(f.fileno())
        os.chmod(path + ".tmp", 0o644)  # safetensors writes 0600; a dataset is shared by the training processes' users
        os.replace(path + ".tmp", path)
        _fsync_directory(os.path.dirname(path))  # the rename is on disk before any row names the shard
        _append_rows(os.path.join(self.root, MANIFEST), rows)
        self.kept.extend(rows)
        return name


def _check_same(root: str, existing: dict, wanted: dict) -> None:
    if existing.get("format") != FORMAT:
        raise DatasetFolderError(f"{root}/{HEADER} is not a FantasyTalking dataset header. Choose another output folder.")
    if existing.get("version") != VERSION:
        raise DatasetFolderError(
            f"{root} holds a version {existing.get('version')} dataset; this version writes {VERSION}. Choose another output folder."
        )
    differences = []
    for section in ("settings", "models"):
        old, new = existing.get(section, {}), wanted[section]
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                differences.append(f"{key}: {old.get(key)!r} there, {new.get(key)!r} now")
    if differences:
        raise DatasetFolderError(
            f"The output folder {root} holds another dataset ({'; '.join(differences)}). To continue it, run with its "
            "settings and models; to make a new one, choose another output folder."
        )
