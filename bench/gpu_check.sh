#!/usr/bin/env bash
# pixcap's GPU figures in one call on a lent GPU machine (bench/gpu_check.py says what it measures).
# The machine has its own Python with torch and transformers and no network: the wheels that
# bench/gpu_wheels.sh downloaded here travel in .whl/ (the run tool's carry), install into a folder of
# their own with no index and no dependencies, and this tree is put on the path as the `pixcap` package
# by links that follow pyproject's package-dir (pip installs nothing of pixcap, so no build backend is needed).
#
#     bash bench/gpu_check.sh [OUT_DIR]      # OUT_DIR: default $OUT (the run tool's), else out/gpu_check
#
# On a lent H200: `bash bench/gpu_wheels.sh` here first, then one call with .whl carried and a limit of
# about 540 s: `bash bench/gpu_check.sh "$OUT"` (results.json, table.txt, progress.jsonl, worker.log).
#     SHAPE=small bash bench/gpu_check.sh    # the same at toy sizes, on any machine
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-out/gpu_check}}
SHAPE=${SHAPE:-full}
WHEELS=${WHEELS:-.whl}
PYTHON=${PYTHON:-python3}
LIMIT_S=${LIMIT_S:-455}  # the parts' time: with the wheels' install and the table, under 8 minutes

SITE=$(mktemp -d /tmp/pixcap-gpu-check.XXXXXX)
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl
else
  echo "gpu_check.sh: no wheels in $WHEELS (run bench/gpu_wheels.sh here and carry $WHEELS); going on without them" >&2
fi
"$PYTHON" - "$SITE" <<'PY'
import os, sys, tomllib
site, repo = sys.argv[1], os.getcwd()
dirs = tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["package-dir"]
root = os.path.join(site, "pixcap")
os.makedirs(root, exist_ok=True)
top = os.path.join(repo, dirs["pixcap"])
for name in os.listdir(top):  # the package's own files, then each subpackage's folder
    os.symlink(os.path.join(top, name), os.path.join(root, name))
for package, folder in dirs.items():
    if package != "pixcap":
        os.symlink(os.path.join(repo, folder), os.path.join(site, *package.split(".")))
PY
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,power.draw --format=csv,noheader 2>/dev/null || true
# PARTS (optional): some of device caption clip train cpu, for a rerun of what failed
# gpu_check ends its parts at LIMIT_S and writes what it has; the timeout is only a backstop.
timeout --kill-after=5 $((LIMIT_S + 20)) "$PYTHON" -m bench.gpu_check --shape "$SHAPE" --out "$OUT_DIR" \
  --limit "$LIMIT_S" ${PARTS:+--parts $PARTS}
