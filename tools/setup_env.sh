#!/usr/bin/env bash
# Idempotent set-up of the dmt_mm environment: venv, torch, the OpenMMLab stack (mmcv built
# from source with compiled ops, cached in a wheelhouse), and dmt_mm itself (editable).
#
#   bash tools/setup_env.sh            # creates/updates ./.venv
#   DMT_PYTHON=/path/to/python bash tools/setup_env.sh
#                                      # installs into an existing environment instead (e.g. a
#                                      # conda env with your cluster's CUDA torch); its torch is kept.
#
# Environment knobs:
#   DMT_VENV        venv folder (default: <repo>/.venv)
#   DMT_BASE_PYTHON interpreter that creates the venv (default: python3); Python 3.10-3.13
#   DMT_WHEELHOUSE  where built mmcv wheels are kept (default: ~/.cache/dmt_mm/wheelhouse)
#   DMT_TORCH_SPEC  torch to install when none is present (default below)
#   MAX_JOBS        parallel compile jobs for mmcv (default: number of cores)
# Prints the one line "dmt_mm environment ready: <python>" on success; the python path is
# also written to <repo>/.venv-python for the other scripts.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DMT_VENV:-$REPO/.venv}"
WHEELHOUSE_ROOT="${DMT_WHEELHOUSE:-$HOME/.cache/dmt_mm/wheelhouse}"
TORCH_SPEC="${DMT_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
MMCV_VERSION="2.1.0"
STAMP_NAME=".dmt_mm_setup_stamp"
t0=$(date +%s)

log() { printf '[setup_env %3ds] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }
die() { printf '[setup_env] ERROR: %s\n' "$*" >&2; exit 1; }

# Pythons this set-up was measured on (README "Version matrix"): the pinned torch 2.14.1 has
# no wheels below 3.10, and 3.14 is untested with mmcv 2.1.0.
SUPPORTED_PYTHONS="3.10 3.11 3.12 3.13"
check_python() {  # refuse at once, before anything is installed, with the versions that work
  local ver
  ver="$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" \
    || die "$1 does not run; install one of Python $SUPPORTED_PYTHONS"
  [[ " $SUPPORTED_PYTHONS " == *" $ver "* ]] || [[ -n "${DMT_ALLOW_UNTESTED_PYTHON:-}" ]] \
    || die "Python $ver is not supported (torch 2.14.1 + mmcv 2.1.0 were set up and tested on \
Python $SUPPORTED_PYTHONS); point DMT_BASE_PYTHON at one of them, e.g. DMT_BASE_PYTHON=python3.11 \
(DMT_ALLOW_UNTESTED_PYTHON=1 tries anyway)"
}

# 1. The Python environment.
if [[ -n "${DMT_PYTHON:-}" ]]; then
  PY="$DMT_PYTHON"
  [[ -x "$PY" ]] || die "DMT_PYTHON=$PY is not an executable python"
  check_python "$PY"
  log "using the existing environment of $PY"
else
  if [[ ! -x "$VENV/bin/python" ]]; then
    BASE_PY="${DMT_BASE_PYTHON:-python3}"
    command -v "$BASE_PY" >/dev/null || die "$BASE_PY not found; install one of Python $SUPPORTED_PYTHONS"
    check_python "$BASE_PY"
    [[ -n "${DMT_CHECK_PYTHON_ONLY:-}" ]] && { log "$("$BASE_PY" -V 2>&1) is supported"; exit 0; }
    log "creating venv $VENV with $("$BASE_PY" -V 2>&1)"
    "$BASE_PY" -m venv "$VENV"
  fi
  PY="$VENV/bin/python"
  check_python "$PY"
fi
[[ -n "${DMT_CHECK_PYTHON_ONLY:-}" ]] && { log "$("$PY" -V 2>&1) is supported"; exit 0; }
PIP=("$PY" -m pip --disable-pip-version-check)

# Fast path: nothing changed since the last successful set-up of this environment.
ENV_PREFIX="$("$PY" -c 'import sys; print(sys.prefix)')"
STAMP="$ENV_PREFIX/$STAMP_NAME"
want_stamp="$(cat "$REPO"/requirements/*.txt "$REPO/pyproject.toml" "$REPO/tools/setup_env.sh" | sha1sum | cut -c1-16) $REPO"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]] && "$PY" -c "import dmt_mm, mmcv._ext" 2>/dev/null; then
  echo "$PY" > "$REPO/.venv-python"
  log "already set up (delete $STAMP to force)"
  echo "dmt_mm environment ready: $PY"
  exit 0
fi

# 2. torch: keep the one the environment has (e.g. a CUDA build on a cluster), else install.
if "$PY" -c "import torch, torchvision" 2>/dev/null; then
  log "keeping installed $("$PY" -c 'import torch, torchvision; print(f"torch {torch.__version__} (cuda {torch.version.cuda}), torchvision {torchvision.__version__}")')"
else
  log "installing $TORCH_SPEC (no torch+torchvision in this environment)"
  # shellcheck disable=SC2086
  "${PIP[@]}" install -q $TORCH_SPEC
fi
TORCH_TAG="$("$PY" -c 'import torch, sys; print(f"torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}".replace("+", "_"))')"

# 3. Build tools and plain runtime dependencies (installed before mmcv so that its build
#    chooses the headless opencv already present).
# The OpenMMLab wheels declare neither mmcv nor mmengine, so they are installed explicitly;
# mmcv (step 4) is left out here because it needs a source build.
log "installing build tools, runtime requirements and the OpenMMLab packages"
grep -v '^mmcv' "$REPO/requirements/mminstall.txt" > "$ENV_PREFIX/.dmt_mm_mminstall.txt"
"${PIP[@]}" install -q -r "$REPO/requirements/build.txt" -r "$REPO/requirements/runtime.txt" \
  -r "$REPO/requirements/tests.txt" -r "$ENV_PREFIX/.dmt_mm_mminstall.txt"
# Test references whose metadata pins an old torch (dinov2==0.0.1.dev2 pins torch 2.0.0):
# without their dependencies, so the environment's torch stays (see the file's comments).
"${PIP[@]}" install -q --no-deps -r "$REPO/requirements/tests_nodeps.txt"

# 4. mmcv with compiled ops, from the wheelhouse keyed by the torch build, else from source.
WHEELHOUSE="$WHEELHOUSE_ROOT/$TORCH_TAG"
mkdir -p "$WHEELHOUSE"
if ! "$PY" -c "import mmcv, mmcv._ext, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
  wheel="$(ls "$WHEELHOUSE"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -1 || true)"
  if [[ -z "$wheel" ]]; then
    log "building mmcv $MMCV_VERSION with ops for $TORCH_TAG (takes ~6-12 min on 2 cores; cached afterwards in $WHEELHOUSE)"
    build_dir="$(mktemp -d)"
    if "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 13))'; then
      # pip download would run the unpatched setup.py for metadata and fail on 3.13
      "$PY" "$REPO/tools/patch_mmcv_sdist.py" --download "$MMCV_VERSION" "$build_dir" \
        || die "could not download the mmcv $MMCV_VERSION sdist"
    else
      "${PIP[@]}" download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$build_dir"
    fi
    tar -xzf "$build_dir"/mmcv-"$MMCV_VERSION".tar.gz -C "$build_dir"
    src="$build_dir/mmcv-$MMCV_VERSION"
    # Recent torch headers #error below C++20; mmcv 2.1.0's setup.py hard-codes -std=c++14/17.
    torch_all_h="$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "include/torch/csrc/api/include/torch/all.h"))')"
    "$PY" "$REPO/tools/patch_mmcv_sdist.py" "$src" || die "could not patch mmcv's setup.py"
    if grep -q '__cplusplus < 202002L' "$torch_all_h" 2>/dev/null; then
      sed -i -E "s/-std=c\+\+1[47]/-std=c++20/g" "$src/setup.py"
      log "  patched the unpacked sdist's setup.py to -std=c++20 for this torch"
    fi
    (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
       CFLAGS="${MMCV_CFLAGS:--DNDEBUG -O3 -g0 -fwrapv -Wall}" \
       "${PIP[@]}" wheel -q --no-build-isolation --no-deps -w "$WHEELHOUSE" . ) \
       || die "mmcv build failed; see the compiler output above"
    rm -rf "$build_dir"
    wheel="$(ls "$WHEELHOUSE"/mmcv-"$MMCV_VERSION"-*.whl | head -1)"
  else
    log "reusing cached mmcv wheel $wheel"
  fi
  "${PIP[@]}" install -q --no-deps --force-reinstall "$wheel"
  # mmcv's own light dependencies (not its opencv choice, already satisfied).
  "${PIP[@]}" install -q addict packaging Pillow pyyaml yapf
fi
"$PY" -c "import mmcv._ext" || die "mmcv was installed without its compiled ops (mmcv._ext); delete $WHEELHOUSE and rerun"

# 5. dmt_mm itself.
log "installing dmt_mm (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$REPO"

# 6. Verify the whole stack imports and agrees on versions (dmt_mm checks them at import).
"$PY" -c "import dmt_mm, mmdet.models, mmseg.models, mmpretrain.models; print('  versions OK:', dmt_mm.stack_versions())" \
  || die "the stack does not import; see the message above"
echo "$want_stamp" > "$STAMP"
echo "$PY" > "$REPO/.venv-python"
log "done"
echo "dmt_mm environment ready: $PY"
