#!/usr/bin/env bash
# Sets up the pinned environment (first run only), checks lint and formatting with ruff, and runs the whole test
# suite. Core tests always run; the ComfyUI tier runs when a ComfyUI checkout is found (see scripts/venv.sh). Extra
# arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
if [ -n "$comfy" ]; then
  echo "ComfyUI tier: $comfy"
else
  echo "ComfyUI tier: no ComfyUI checkout found (set COMFYUI_PATH to enable it)"
fi
cd "$pack_dir"
# lint and format first (seconds); the tests run either way, so one run shows both
lint=0
"$venv/bin/ruff" check --no-cache --quiet . || lint=1
"$venv/bin/ruff" format --check --no-cache --quiet . || lint=1
status=0
"$venv/bin/python" -m pytest "$@" || status=$?
if [ "$lint" -ne 0 ]; then
  echo "ruff found the problems above: run 'ruff format . && ruff check --fix .' (the test environment has ruff)" >&2
  exit 1
fi
exit "$status"
