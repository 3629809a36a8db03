#!/usr/bin/env bash
# GPU check (issue 14): correctness of every fixture generation on CUDA (fp32 and bf16 against
# the CPU fp32 reference), CUDA graphs against eager, then d20 bf16 speed and 32 concurrent
# streams through the web server. One JSON report. Needs a CUDA machine with this repository
# installed (pip install -e '.[test]'); takes a few minutes.
#
#   scripts/gpu_check.sh [gpu_check.json]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" -m nanochat_tui.gpu_check --out "${1:-gpu_check.json}"
