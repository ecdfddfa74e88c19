#!/usr/bin/env bash
# Download, on a machine with PyPI access, the wheels tools/analysis_tools/gpu_benchmark.sh
# installs on a GPU host without network or OpenMMLab packages (Python 3.12, x86_64 by
# default): the pure-Python OpenMMLab stack (mmengine, mmpretrain, mmcv-lite: no compiled ops,
# so the COCO / ADE20K configs cannot run there), their small dependencies, and torchao (FP8
# teachers; the release built for torch 2.11). PyPI's modelindex 0.0.2 wheel holds no code:
# the installed package folder is copied to .whl/extra/ (pass DMT_BENCH_PYTHONPATH=$PWD/.whl/extra).
#
#   bash tools/analysis_tools/gpu_wheels.sh            # into .whl/ (ignored by git)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PY:-python3}"
DEST="${DEST:-$REPO/.whl}"
PYVER="${DMT_WHEEL_PYTHON:-3.12}"
mkdir -p "$DEST/extra"
grep -qx '/.whl/' "$REPO/.git/info/exclude" 2>/dev/null || \
  { [ -d "$REPO/.git" ] && echo '/.whl/' >> "$REPO/.git/info/exclude"; } || true
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$DEST" \
  mmengine==0.10.7 mmpretrain==1.2.0 mmcv-lite==2.1.0 addict==2.4.0 yapf==0.43.0 \
  termcolor==3.1.0 platformdirs==4.3.8 mat4py==0.6.0 modelindex==0.0.2 torchao==0.18.0
MODELINDEX="$("$PY" -c 'import modelindex, os; print(os.path.dirname(modelindex.__file__))' 2>/dev/null || true)"
if [ -n "$MODELINDEX" ]; then
  rm -rf "$DEST/extra/modelindex" && cp -r "$MODELINDEX" "$DEST/extra/modelindex"
  find "$DEST/extra" -name __pycache__ -prune -exec rm -rf {} +
else
  echo "modelindex is not installed here: copy its package folder to $DEST/extra/ by hand"
fi
du -sh "$DEST"; ls "$DEST"
