# Sourced by scripts/test.sh and scripts/bench.sh: creates the pinned environment once (reused while the pins are
# unchanged) and finds a ComfyUI checkout: $COMFYUI_PATH, the ComfyUI this pack sits in
# (ComfyUI/custom_nodes/<pack>), or ~/comfy/ComfyUI. Sets: pack_dir, venv, comfy (empty when none was found).
set -euo pipefail

pack_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
venv=${FANTASYTALKING_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/fantasytalking-nodes/venv}
pins="$pack_dir/tests/requirements.txt"
no_deps_pins="$pack_dir/tests/requirements-no-deps.txt"

# the one rule for finding ComfyUI (fantasy_comfy/host.py, standard library only, so any Python runs it)
if [ -n "${COMFYUI_PATH:-}" ] && [ ! -f "$COMFYUI_PATH/main.py" ]; then
  echo "COMFYUI_PATH=$COMFYUI_PATH is not a ComfyUI checkout (no main.py)" >&2
  exit 2
fi
comfy=$(cd "$pack_dir" && "$python" -m fantasy_comfy.host)

stamp=$( { "$python" --version; cat "$pins" "$no_deps_pins" "$pack_dir/requirements.txt"; [ -z "$comfy" ] || cat "$comfy/requirements.txt"; } | sha256sum | cut -c1-16)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "Setting up the test environment in $venv (first run: several minutes, torch is large)"
  "$python" -m venv "$venv"
  pin() { grep -E "^$1==" "$pins"; }
  "$venv/bin/pip" install -q "$(pin torch)" "$(pin torchvision)"
  "$venv/bin/pip" install -q "$(pin torch)" "$(pin torchaudio)"
  "$venv/bin/pip" install -q -r "$pins" -r "$pack_dir/requirements.txt"
  "$venv/bin/pip" install -q --no-deps -r "$no_deps_pins"
  if [ -n "$comfy" ]; then
    "$venv/bin/pip" install -q -r "$comfy/requirements.txt" -c "$pins"
  fi
  echo "$stamp" > "$venv/.stamp"
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ -n "$comfy" ]; then
  export COMFYUI_PATH="$comfy"
fi
