#!/usr/bin/env bash
# ctest `client.check_serve` (label client): an independent client of `recforge serve`.
# Trains a tiny synthetic run, exports it, and runs tools/client/check_serve.py in .venv: it
# starts the server on an ephemeral loopback port, checks its answers against NumPy brute force
# over the export's files on one keep-alive connection, parses /metrics with the Prometheus
# project's parser, and stops the server with SIGTERM (exit 0 expected).
#   usage: check_serve_test.sh RECFORGE_BINARY SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
py="$src/.venv/bin/python"
if [[ ! -x "$py" ]] || ! "$py" -c "import numpy, prometheus_client" 2>/dev/null; then
  echo "client test: $py lacks NumPy or prometheus_client; run tools/setup.sh (it creates" \
       ".venv from tools/requirements.txt)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
cat > small.yaml <<'YAML'
run:
  name: small
  progress: off
data:
  format: synthetic
  cache: false
synthetic:
  users: 400
  items: 300
  interactions: 12000
split:
  method: leave_last
model:
  factors: 16
  iterations: 4
YAML
"$bin" train small.yaml >/dev/null 2>train.log || { cat train.log >&2; exit 1; }
"$bin" export runs/small --out exp >/dev/null 2>export.log || { cat export.log >&2; exit 1; }
"$py" "$src/tools/client/check_serve.py" exp --recforge "$bin" --users 60 --k 10
