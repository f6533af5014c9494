"""The speed benchmark's CPU smoke run: it completes on a tiny Wan and its figures say what the pack promises."""

import json
import os
import subprocess
import sys

from tiers import PACK_DIR


def test_speed_benchmark_smoke_run(comfyui_path, tmp_path):
    out = tmp_path / "speed.json"
    done = subprocess.run(
        [sys.executable, os.path.join(PACK_DIR, "benchmarks", "bench_speed.py"), "--steps", "3", "--json", str(out)],
        env={**os.environ, "COMFYUI_PATH": str(comfyui_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "counted at the real shapes" in done.stdout
    figures = json.load(open(out))
    measured, counted = figures["measured"], figures["counted"]
    for key in ("plain/eager", "patched/eager", "plain/compiled (eager)", "patched/compiled (eager)"):
        assert measured[key]["finite"] and measured[key]["seconds_per_call"] > 0, key
    plain, patched = measured["plain/eager"], measured["patched/eager"]
    assert patched["host_syncs"] == plain["host_syncs"] == 0
    assert patched["loaded_bytes"] == plain["loaded_bytes"]  # the modules are not loaded while sampling
    assert 0 < measured["run_cache_bytes"] < measured["module_bytes"]
    assert counted["branch_bytes_now"] < counted["branch_bytes_before"] and counted["branch_kernels_now"] < counted["branch_kernels_before"]
