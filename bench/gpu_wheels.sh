#!/usr/bin/env bash
# The wheels bench/gpu_check.sh installs on a lent GPU machine, downloaded here from PyPI into .whl/
# (ignored by git through .git/info/exclude; the run tool's carry takes it). The machine has torch,
# transformers, accelerate, timm, safetensors, numpy, pillow, pyarrow, fsspec, regex, scikit-image and
# more (/work/.library/device/KINDS.md), and no network: only what the measured code imports and it
# lacks travels, at the versions pyproject's environment here runs, for its Python 3.12 on x86-64:
#   open_clip_torch (ClipStage, model_inputs' CLIP view) + ftfy + wcwidth (open_clip's tokenizer),
#   diffusers (the trainer's PixArt transformer), simplejpeg (decode's reduced-size JPEG path).
# pixcap.stages.caption imports nothing the machine lacks; spaCy, webdataset, Ray and vLLM are not
# imported by any measured part.
#
#     bash bench/gpu_wheels.sh [FOLDER]     # default .whl; prints the sizes and checks the 64 MiB budget
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${1:-.whl}
BUDGET_MIB=64  # what one run call carries: the working tree and the carried paths together
PACKAGES=(open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 diffusers==0.42.0 simplejpeg==1.9.0)
PIP=${PIP:-$( [ -x .venv/bin/pip ] && echo .venv/bin/pip || echo "python3 -m pip")}

if [ -d .git ] && ! grep -qx "/${WHEELS#./}/" .git/info/exclude 2>/dev/null; then
  mkdir -p .git/info && echo "/${WHEELS#./}/" >> .git/info/exclude
fi
rm -rf "$WHEELS" && mkdir -p "$WHEELS"
$PIP download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$WHEELS" "${PACKAGES[@]}"

ls -l "$WHEELS"/*.whl | awk '{printf "%8.2f MiB  %s\n", $5 / 1048576, $NF}'
wheels_kib=$(du -sk "$WHEELS" | cut -f1)
# What travels besides: tracked files and untracked ones git does not ignore.
tree_kib=$( { git ls-files -z; git ls-files -z -o --exclude-standard; } | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total_kib=$((wheels_kib + tree_kib))
printf "wheels %.1f MiB + tree %.1f MiB = %.1f MiB of the %d MiB a call carries\n" \
  "$(echo "$wheels_kib/1024" | bc -l)" "$(echo "$tree_kib/1024" | bc -l)" "$(echo "$total_kib/1024" | bc -l)" "$BUDGET_MIB"
if [ "$total_kib" -gt $((BUDGET_MIB * 1024)) ]; then
  echo "gpu_wheels: over the ${BUDGET_MIB} MiB a call carries" >&2
  exit 1
fi
