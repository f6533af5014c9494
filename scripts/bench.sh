#!/usr/bin/env bash
# Sets up the pinned environment (first run only) and runs the benchmarks: the core one always, the ComfyUI one
# when a ComfyUI checkout is found (see scripts/venv.sh).
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$pack_dir"
export PYTHONPATH="$pack_dir"
"$venv/bin/python" benchmarks/bench_core.py
"$venv/bin/python" benchmarks/bench_audio_path.py
"$venv/bin/python" benchmarks/bench_identity.py
"$venv/bin/python" benchmarks/bench_motion.py
if [ -n "$comfy" ]; then
  "$venv/bin/python" benchmarks/bench_speed.py
  "$venv/bin/python" benchmarks/bench_comfyui.py
  "$venv/bin/python" benchmarks/bench_long_video.py
  "$venv/bin/python" benchmarks/bench_dataset.py
  "$venv/bin/python" benchmarks/bench_training.py
else
  echo "ComfyUI benchmark skipped: no ComfyUI checkout found (set COMFYUI_PATH)"
fi
