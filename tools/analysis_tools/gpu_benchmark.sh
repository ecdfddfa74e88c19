#!/usr/bin/env bash
# DMT pretraining throughput on one GPU: ViT-S/16 student + 3 ViT-B/16 teachers (MAE, MoCo v3,
# iBOT layout; random weights: same cost) at 224 px, bf16, the largest batch that fits;
# optimized step, its ablations, the naive peers (same process), full step vs sum of parts,
# data pipeline images/s per worker, then torch.compile. Writes JSON, a Markdown summary and
# a log to $OUT. About 5-6 minutes of GPU time (each stage has a time limit).
#
# For a machine with torch + CUDA (+ torchvision, opencv) but no OpenMMLab packages and no
# network: it installs the pure-Python wheels in .whl/ (mmengine, mmpretrain, mmcv-lite without
# compiled ops, their small dependencies) into a private folder. The benchmark path imports
# neither mmdet, mmseg nor mmcv's compiled ops.
#
#   bash tools/analysis_tools/gpu_benchmark.sh
#
# Environment (defaults in brackets):
#   OUT [./gpu_out]           results: bench.json, bench_compile.json, summary.md, *.log
#   PY [python3]              interpreter
#   DMT_BENCH_SITE [/tmp/site]  where the wheels go (prepended to PYTHONPATH)
#   DMT_BENCH_WHEELS [.whl/*.whl]  wheel files to install; DMT_BENCH_SKIP_INSTALL=1 skips it
#   DMT_BENCH_PKG_SHIM [auto] 'force': install the pkg_resources stand-in even if present
#                             (stand-ins for pkg_resources / importlib_metadata are written
#                             to DMT_BENCH_SITE only when the machine lacks them)
#   DMT_BENCH_PYTHONPATH      extra entries appended to PYTHONPATH. PyPI's modelindex 0.0.2
#                             wheel is empty (metadata only): copy the installed package
#                             folder (site-packages/modelindex) to .whl/extra/ and pass
#                             DMT_BENCH_PYTHONPATH=$PWD/.whl/extra (as in BENCHMARKS.md)
#   DMT_BENCH_QUICK=1         tiny sizes (ViT-T everywhere, 32 px, batch 2): a CPU dry run
#   DMT_BENCH_BATCHES ["384 256 192 128 96 64 32"]  batch sizes tried, largest first
#   DMT_BENCH_T_MAIN [240] / DMT_BENCH_T_COMPILE [150]  time limits (s) of the two runs
#   DMT_BENCH_COMPILE [1]     0: skip the torch.compile run
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
OUT="${OUT:-./gpu_out}"
PY="${PY:-python3}"
SITE="${DMT_BENCH_SITE:-/tmp/site}"
CONFIG=configs/dmt/dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py
mkdir -p "$OUT"

main() {
  echo "== DMT GPU benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), repo $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit,clocks.max.sm --format=csv
  "$PY" --version

  # 1. the pure-Python OpenMMLab wheels, into a private folder
  if [ "${DMT_BENCH_SKIP_INSTALL:-0}" != 1 ]; then
    # shellcheck disable=SC2086
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" ${DMT_BENCH_WHEELS:-.whl/*.whl} \
      || { echo "FAILED: installing the wheels of .whl/ into $SITE"; return 2; }
  fi
  # mmengine 0.10.7 resolves 'mmpretrain::' config bases with pkg_resources.get_distribution;
  # setuptools >= 81 no longer ships pkg_resources: a minimal stand-in on importlib.metadata
  if [ "${DMT_BENCH_PKG_SHIM:-auto}" = force ] || ! PYTHONPATH="$SITE" "$PY" -c 'import pkg_resources' 2>/dev/null; then
    mkdir -p "$SITE/pkg_resources"
    cat > "$SITE/pkg_resources/__init__.py" <<'PYEOF'
"""Stand-in for setuptools' pkg_resources (gone in setuptools >= 81): the two names mmengine
0.10.7 uses to find installed packages, on top of importlib.metadata."""
from importlib import metadata


class DistributionNotFound(Exception):
    pass


class _Distribution:
    def __init__(self, dist):
        self._dist = dist
        self.project_name = dist.metadata['Name']
        self.version = dist.version
        self.location = str(dist.locate_file(''))

    def has_metadata(self, name):
        return self._dist.read_text(name) is not None

    def get_metadata(self, name):
        return self._dist.read_text(name) or ''


def get_distribution(name):
    try:
        return _Distribution(metadata.distribution(name))
    except metadata.PackageNotFoundError as exc:
        raise DistributionNotFound(name) from exc
PYEOF
    echo "pkg_resources missing: using the stand-in in $SITE/pkg_resources"
  fi
  # mmpretrain imports the importlib_metadata backport; Python >= 3.8 has the same in stdlib
  if ! PYTHONPATH="$SITE" "$PY" -c 'import importlib_metadata' 2>/dev/null; then
    mkdir -p "$SITE/importlib_metadata"
    printf '%s\n' '"""Stand-in for the importlib_metadata backport: the standard library module."""' \
      'from importlib.metadata import *  # noqa: F401,F403' \
      'from importlib.metadata import PackageNotFoundError, distribution, version  # noqa: F401' \
      > "$SITE/importlib_metadata/__init__.py"
    echo "importlib_metadata missing: using the stand-in in $SITE/importlib_metadata"
  fi
  export PYTHONPATH="$SITE:$REPO${DMT_BENCH_PYTHONPATH:+:$DMT_BENCH_PYTHONPATH}"

  # 2. preflight: every module the benchmark imports, and none of the compiled ones
  "$PY" - <<'PYEOF' || { echo "FAILED: preflight (missing modules above); nothing was timed"; return 3; }
import importlib, sys
missing = []
for name in ['torch', 'torchvision', 'cv2', 'numpy', 'yaml', 'rich', 'addict', 'termcolor',
             'yapf', 'einops', 'markdown', 'importlib_metadata', 'modelindex', 'mat4py',
             'pkg_resources', 'mmengine', 'mmcv', 'mmpretrain', 'mmpretrain.models',
             'dmt_mm.models', 'dmt_mm.engine', 'dmt_mm.analysis']:
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa
        missing.append(f'{name}: {exc!r}')
import torch
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
for name in ['numpy', 'mmengine', 'mmcv', 'mmpretrain']:
    mod = sys.modules.get(name)
    print(name, getattr(mod, '__version__', '?'), getattr(mod, '__file__', '?'))
print('loaded:', sorted(m for m in ('mmdet', 'mmseg', 'mmcv._ext', 'mmcv.ops') if m in sys.modules))
if missing:
    print('MISSING:\n  ' + '\n  '.join(missing))
    sys.exit(1)
PYEOF

  if [ "${DMT_BENCH_QUICK:-0}" = 1 ]; then
    SIZE=(--student-arch vit-tiny --teacher-arch vit-tiny --img-size 32 --iters 2 --warmup 1 --parts-rounds 1 --pipeline-images 4)
    BATCHES="${DMT_BENCH_BATCHES:-2}"
  else
    SIZE=(--iters 15 --warmup 3 --parts-rounds 5 --pipeline-images 200)
    BATCHES="${DMT_BENCH_BATCHES:-384 256 192 128 96 64 32}"
  fi
  # shellcheck disable=SC2206
  BS=($BATCHES)

  # 3. optimized step, the shipped config's step, merged param groups, the naive peers,
  #    ablations, full step vs parts, data pipeline
  timeout "${DMT_BENCH_T_MAIN:-240}" "$PY" tools/analysis_tools/benchmark_pretrain.py "$CONFIG" \
    --random-teachers "${SIZE[@]}" --batch-size "${BS[@]}" \
    --variants optimized config optimized-merged-groups --peer naive naive-nograd --ablate \
    --parts --pipeline tests/data/coco_real_mini/images --out "$OUT/bench.json"
  echo "main run exit status: $?"

  # 4. torch.compile (student, teachers, heads) next to the optimized step, same process
  if [ "${DMT_BENCH_COMPILE:-1}" = 1 ]; then
    BEST=$("$PY" -c "import json; r = json.load(open('$OUT/bench.json')); print(next(v['batch_size'] for v in r['variants'] if v['variant'] == 'optimized' and 'batch_size' in v))" 2>/dev/null || echo "${BS[*]}")
    # shellcheck disable=SC2086
    timeout "${DMT_BENCH_T_COMPILE:-150}" "$PY" tools/analysis_tools/benchmark_pretrain.py "$CONFIG" \
      --random-teachers "${SIZE[@]}" --batch-size $BEST --variants optimized --compile \
      --out "$OUT/bench_compile.json"
    echo "compile run exit status: $?"
  fi

  # 5. summary for BENCHMARKS.md
  JSONS=()
  for f in "$OUT/bench.json" "$OUT/bench_compile.json"; do [ -f "$f" ] && JSONS+=("$f"); done
  if [ ${#JSONS[@]} -gt 0 ]; then
    "$PY" tools/analysis_tools/benchmark_pretrain.py --summarize "${JSONS[@]}" > "$OUT/summary.md"
    cat "$OUT/summary.md"
  fi
  echo "== done $(date -u +%Y-%m-%dT%H:%M:%SZ)"
}

main "$@" 2>&1 | tee "$OUT/gpu_benchmark.log"
exit "${PIPESTATUS[0]}"
