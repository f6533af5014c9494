#!/usr/bin/env bash
# Sets up the pinned environment (first run only) and runs the whole test suite. Core tests always run; the
# ComfyUI tier runs when a ComfyUI checkout is found (see scripts/venv.sh). Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
if [ -n "$comfy" ]; then
  echo "ComfyUI tier: $comfy"
else
  echo "ComfyUI tier: no ComfyUI checkout found (set COMFYUI_PATH to enable it)"
fi
cd "$pack_dir"
exec "$venv/bin/python" -m pytest "$@"
