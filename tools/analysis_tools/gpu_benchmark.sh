#!/usr/bin/env bash
# Every GPU measurement of BENCHMARKS.md in one run (about 8 minutes on one H100 / H200; each
# stage has a time limit and writes its JSON as it goes):
#   1. the shipped ViT-S DMT config (3 ViT-B teachers, 224 px) as tools/train.py runs it --
#      bf16 AMP without loss scaler, fused AdamW, merged param groups, torch.compile -- end
#      to end with its real data loader on real photos, then its compiled step alone, with
#      the naive peer in the same process; FLOPs, MFU; data loader and pipeline images/s per
#      worker (one core);
#   2. the teachers under each teacher_execution setting (eager, compile, CUDA graphs, FP8
#      through torchao, FP8 + compile): time, memory, FP8 drift (cosine of the targets);
#   3. what each benchmark config costs: a few iterations at its real input size and per-GPU
#      batch, seconds per iteration and peak memory (GPU-hours: benchmark_configs.py).
# Writes bench.json, teachers.json, costs.json, summary.md and gpu_benchmark.log to $OUT.
#
# For a machine with torch + CUDA (+ torchvision, opencv) but no OpenMMLab packages and no
# network: it installs the wheels of .whl/ (tools/analysis_tools/gpu_wheels.sh downloads them:
# mmengine, mmpretrain, mmcv-lite without compiled ops, torchao, small dependencies) into a
# private folder. Without mmcv's compiled CUDA ops the COCO / ADE20K configs cannot run there:
# stage 3 runs the mmpretrain configs unless DMT_BENCH_CONFIGS names others.
#
#   bash tools/analysis_tools/gpu_wheels.sh        # once, where PyPI is reachable
#   DMT_BENCH_PYTHONPATH=$PWD/.whl/extra bash tools/analysis_tools/gpu_benchmark.sh
#
# Environment (defaults in brackets):
#   OUT [./gpu_out]           results
#   PY [python3]              interpreter
#   DMT_BENCH_SITE [/tmp/site]  where the wheels go (prepended to PYTHONPATH)
#   DMT_BENCH_WHEELS [.whl/*.whl]  wheel files to install; DMT_BENCH_SKIP_INSTALL=1 skips it
#   DMT_BENCH_PKG_SHIM [auto] 'force': install the pkg_resources stand-in even if present
#                             (stand-ins for pkg_resources / importlib_metadata are written
#                             to DMT_BENCH_SITE only when the machine lacks them)
#   DMT_BENCH_PYTHONPATH      extra entries appended to PYTHONPATH (.whl/extra: modelindex)
#   DMT_BENCH_IMAGES ["tests/data/coco_real_mini/images dmt_mm/study/sample_images"]
#                             real photos (add a carried copy of ../shared/data/real_images_cc0)
#   DMT_BENCH_BATCH [128]     per-GPU batch of stages 1-2 (the configs' own)
#   DMT_BENCH_CONFIGS         stage 3's configs (default: DMT ViT-T/S/B, ImageNet fine-tune
#                             and linear ViT-S); DMT_BENCH_COCO / DMT_BENCH_COCO_ANN /
#                             DMT_BENCH_ADE: fixture folders for mmdet / mmseg configs
#   DMT_BENCH_QUICK=1         tiny sizes on CPU (ViT-T, 32 px, batch 2, compile off): a dry run
#   DMT_BENCH_T_MAIN [200] / DMT_BENCH_T_TEACHERS [100] / DMT_BENCH_T_COSTS [120]
#                             time limits (s) of the three stages; DMT_BENCH_STAGES ["1 2 3"]
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
OUT="${OUT:-./gpu_out}"
PY="${PY:-python3}"
SITE="${DMT_BENCH_SITE:-/tmp/site}"
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
             'dmt_mm.models', 'dmt_mm.engine', 'dmt_mm.analysis', 'dmt_mm.optim',
             'dmt_mm.datasets.fast_decode']:
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa
        missing.append(f'{name}: {exc!r}')
import torch
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
try:
    import torchao
    print('torchao', torchao.__version__)
except Exception as exc:  # noqa -- FP8 teachers then fail with their own message
    print('torchao missing:', repr(exc))
for name in ['numpy', 'mmengine', 'mmcv', 'mmpretrain']:
    mod = sys.modules.get(name)
    print(name, getattr(mod, '__version__', '?'), getattr(mod, '__file__', '?'))
print('loaded:', sorted(m for m in ('mmdet', 'mmseg', 'mmcv._ext', 'mmcv.ops') if m in sys.modules))
if missing:
    print('MISSING:\n  ' + '\n  '.join(missing))
    sys.exit(1)
PYEOF

  # shellcheck disable=SC2206
  IMAGES=(${DMT_BENCH_IMAGES:-tests/data/coco_real_mini/images dmt_mm/study/sample_images})
  BATCH="${DMT_BENCH_BATCH:-128}"
  STAGES="${DMT_BENCH_STAGES:-1 2 3}"
  CONFIGS="${DMT_BENCH_CONFIGS:-configs/dmt/dmt_vit-tiny-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py configs/dmt/dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py configs/dmt/dmt_vit-base-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py configs/benchmarks/classification/dmt-vit-small-p16_8xb128-coslr-200e_in1k.py configs/benchmarks/classification/dmt-vit-small-p16_8xb2048-linear-coslr-90e_in1k.py}"
  if [ "${DMT_BENCH_QUICK:-0}" = 1 ]; then
    SIZE=(--student-arch vit-tiny --teacher-arch vit-tiny --img-size 32)
    MAIN=(--iters 2 --warmup 1 --shipped-iters 1 --loader-batches 1 --pipeline-images 4 --cfg-options compile=None)
    TEACH=(--iters 1 --warmup 1 --modes eager fp8)
    COSTS=(--iters 1 --warmup 0 --eager)
    BATCH="${DMT_BENCH_BATCH:-2}"
    CONFIGS="${DMT_BENCH_CONFIGS:-configs/benchmarks/classification/dmt-vit-tiny-p16_8xb2048-linear-coslr-90e_in1k.py}"
  else
    SIZE=()
    MAIN=(--iters 10 --warmup 3 --shipped-iters 8 --loader-batches 8 --pipeline-images 200)
    TEACH=(--iters 10 --warmup 3 --modes eager fp8 compile fp8-compile cudagraphs)
    COSTS=(--iters 3 --warmup 2 --eager --timeout 60)
  fi
  S_CONFIG=configs/dmt/dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py
  JSONS=()

  # 1. the shipped config as tools/train.py runs it, end to end and its step; naive peer
  if [[ " $STAGES " == *" 1 "* ]]; then
    timeout "${DMT_BENCH_T_MAIN:-200}" "$PY" tools/analysis_tools/benchmark_pretrain.py "$S_CONFIG" \
      --random-teachers "${SIZE[@]}" --batch-size "$BATCH" --shipped --peer naive --loader \
      --pipeline "${IMAGES[@]}" "${MAIN[@]}" --out "$OUT/bench.json"
    echo "stage 1 exit status: $?"
    [ -f "$OUT/bench.json" ] && JSONS+=("$OUT/bench.json")
  fi

  # 2. the teachers under each execution setting; FP8 drift
  if [[ " $STAGES " == *" 2 "* ]]; then
    timeout "${DMT_BENCH_T_TEACHERS:-100}" "$PY" tools/analysis_tools/benchmark_teachers.py "$S_CONFIG" \
      --random-teachers "${SIZE[@]}" --batch-size "$BATCH" --images "${IMAGES[@]}" "${TEACH[@]}" \
      --out "$OUT/teachers.json"
    echo "stage 2 exit status: $?"
  fi

  # 3. what each benchmark config costs
  if [[ " $STAGES " == *" 3 "* ]]; then
    EXTRA=()
    [ -n "${DMT_BENCH_COCO:-}" ] && EXTRA+=(--coco "$DMT_BENCH_COCO" --coco-ann "${DMT_BENCH_COCO_ANN:-instances_785_allcats.json}")
    [ -n "${DMT_BENCH_ADE:-}" ] && EXTRA+=(--ade "$DMT_BENCH_ADE")
    [ "${DMT_BENCH_QUICK:-0}" = 1 ] && EXTRA+=(--batch-size "$BATCH")
    # shellcheck disable=SC2086
    timeout "${DMT_BENCH_T_COSTS:-120}" "$PY" tools/analysis_tools/benchmark_configs.py $CONFIGS \
      --images "${IMAGES[@]}" "${COSTS[@]}" "${EXTRA[@]}" --out "$OUT/costs.json"
    echo "stage 3 exit status: $?"
  fi

  # summary for BENCHMARKS.md
  {
    [ ${#JSONS[@]} -gt 0 ] && "$PY" tools/analysis_tools/benchmark_pretrain.py --summarize "${JSONS[@]}"
    [ -f "$OUT/teachers.json" ] && "$PY" -c "
import json; r = json.load(open('$OUT/teachers.json'))
print('| teacher execution | ms / batch %d | images/s | vs eager | peak memory | lowest target cosine vs bf16 |' % r['batch_size'])
print('|---|---|---|---|---|---|')
eager = r['modes'].get('eager', {}).get('ms_median')
for name, m in r['modes'].items():
    if 'error' in m:
        print('| %s | failed: %s |||||' % (name, m['error'][:100])); continue
    low = min(v['cosine'] for v in m['drift_vs_eager_bf16'].values())
    print('| %s | %.1f | %.0f | %s | %.2f GiB | %.5f |' % (name, m['ms_median'], m['images_per_s'],
          '%.2fx' % (eager / m['ms_median']) if eager else '', m['peak_memory']['bytes'] / 2**30, low))
"
    [ -f "$OUT/costs.json" ] && "$PY" tools/analysis_tools/benchmark_configs.py --summarize "$OUT/costs.json"
  } > "$OUT/summary.md"
  cat "$OUT/summary.md"
  echo "== done $(date -u +%Y-%m-%dT%H:%M:%SZ)"
}

main "$@" 2>&1 | tee "$OUT/gpu_benchmark.log"
exit "${PIPESTATUS[0]}"
