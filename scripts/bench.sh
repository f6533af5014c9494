#!/usr/bin/env bash
# Sets up the pinned environment (first run only) and runs the benchmarks. Extra arguments go to bench_core.py.
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$pack_dir"
PYTHONPATH="$pack_dir" exec "$venv/bin/python" benchmarks/bench_core.py "$@"
