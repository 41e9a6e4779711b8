#!/usr/bin/env bash
# The first GPU run, as it is: `bash benchmarks/gpu_run.sh` (or `make gpu-run`) on a machine with a CUDA GPU.
#   1. installs the wheels carried in gpu-wheels/ into .gpu-site/ (no index, no dependencies; docs/gpu.md
#      says how to fill the folder) and puts it first on PYTHONPATH;
#   2. prints the torch, triton, CUDA and transformers versions;
#   3. and 4. benchmarks/gpu_run.py: both kernels against their reference on the device (float32 and
#      bfloat16), then every gpu_check row, each under its own time limit, JSON to $OUT after every row.
# The whole run fits in 8 minutes (GPU_RUN_BUDGET_S, default 420 s for the rows). `--dry-run` takes the
# same path on the CPU through Triton's interpreter at toy sizes (tests/integration/test_gpu_run.py).
# Environment: PYTHON (default python3), OUT (default cache/gpu-run), GPU_WHEELS, GPU_SITE.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${GPU_WHEELS:-gpu-wheels}
SITE=${GPU_SITE:-$PWD/.gpu-site}
export OUT=${OUT:-$PWD/cache/gpu-run}
DRY=()
if [[ "${1:-}" == "--dry-run" ]]; then DRY=(--dry-run); fi
mkdir -p "$OUT"

shopt -s nullglob
wheels=("$WHEELS"/*.whl)
if (( ${#wheels[@]} )); then
  echo "gpu-run: installing ${#wheels[@]} carried wheels ($(du -sh "$WHEELS" | cut -f1)) into $SITE"
  if ! "$PY" -m pip install --quiet --no-deps --no-index --upgrade --target "$SITE" "${wheels[@]}"; then
    echo "gpu-run: pip failed; unpacking the wheels instead"
    "$PY" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' "$SITE" "${wheels[@]}"
  fi
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "gpu-run: no carried wheels in $WHEELS/ (docs/gpu.md says how to fill it); using what is installed"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

"$PY" - <<'PY'
import torch, triton, transformers
cuda = torch.cuda.is_available()
print(f"gpu-run: torch {torch.__version__} (CUDA {torch.version.cuda}), triton {triton.__version__}, "
      f"transformers {transformers.__version__}")
print("gpu-run: device", f"{torch.cuda.get_device_name(0)} (capability {torch.cuda.get_device_capability(0)})"
      if cuda else "none: the CPU")
PY

"$PY" benchmarks/gpu_run.py "${DRY[@]}" --out "$OUT" --budget-s "${GPU_RUN_BUDGET_S:-420}"
