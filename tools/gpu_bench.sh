#!/usr/bin/env bash
# BackMix training speed on one GPU (issue 7), from a bare JAX image, in under 5 minutes.
#
#   bash tools/gpu_bench.sh                  # JSON + logs under $OUT (default runs/gpu_bench)
#   BENCH_QUICK=1 bash tools/gpu_bench.sh    # seconds-long smoke run of the same path (CPU)
#
# The image is assumed to hold jax, flax, optax, orbax-checkpoint, numpy (and PyYAML, a flax
# dependency) but no TensorFlow and no ml-collections: ml-collections and absl-py are
# unpacked from the wheels in tools/wheels/ (no pip, no internet), data are synthetic
# CIFAR-shaped uint8 images (32x32x3, 6 classes) fed by the NumPy pipeline.
# Runs, most important first: WRN-40-4 batch 128 bfloat16, batch 128 float32, batch 512
# bfloat16. Each run is bounded by RUN_LIMIT seconds and none starts after BUDGET seconds.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
RESULTS=${OUT:-runs/gpu_bench}
BUDGET=${BENCH_BUDGET:-270}
RUN_LIMIT=${BENCH_RUN_LIMIT:-150}
mkdir -p "$RESULTS"
export TF_CPP_MIN_LOG_LEVEL=2
# A rerun on the same machine reuses compiled steps (compile figures then show cache loads).
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/backmix_jax_cache}

# A pure-Python wheel is a zip of the package: unpacking it onto PYTHONPATH needs no pip,
# no index and no write access to the image's site-packages.
WHEEL_DIR=${BENCH_WHEEL_DIR:-/tmp/backmix_wheels}
install_from_wheel() {  # module, wheel glob
  if ! "$PY" -c "import $1" 2>/dev/null; then
    echo "unpacking $2 into $WHEEL_DIR (no $1 in this image)"
    for whl in $2; do "$PY" -m zipfile -e "$whl" "$WHEEL_DIR" || exit 1; done
    export PYTHONPATH="$WHEEL_DIR${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -c "import $1" || { echo "error: $1 still not importable"; exit 1; }
  fi
}
install_from_wheel absl "tools/wheels/absl_py-*.whl"
install_from_wheel ml_collections "tools/wheels/ml_collections-*.whl"
"$PY" -c "import yaml" 2>/dev/null || { echo "error: PyYAML (needed by ml-collections) is missing"; exit 1; }

"$PY" - <<'EOF' | tee "$RESULTS/environment.txt"
import jax, flax, optax, numpy
print("jax", jax.__version__, "| flax", flax.__version__, "| optax", optax.__version__,
      "| numpy", numpy.__version__)
print("devices", jax.devices())
EOF
command -v nvidia-smi >/dev/null && nvidia-smi >> "$RESULTS/environment.txt" 2>&1

if [[ -f configs/cifar10.py ]]; then
  CONFIG=configs/cifar10.py:cssr   # CSSR recipe: WRN-40-4, SGD, flip + crop 4, batch 128
else
  CONFIG=configs/digits.py
fi
COMMON=(--config "$CONFIG" --synthetic --synthetic_classes=6 --config.data.backend=numpy
        --config.data.image_size=32 --config.data.channels=3)
if [[ -n "${BENCH_QUICK:-}" ]]; then
  MODEL=cnn_small; B1=32; B2=64; TIMING=(--steps=2 --repeats=1 --warmup=1 --device_batches=2)
else
  MODEL=wrn40_4; B1=128; B2=512; TIMING=(--steps=50 --repeats=3 --warmup=5)
fi

START=$SECONDS
STATUS=0
run() {  # name, batch, dtype
  if (( SECONDS - START > BUDGET )); then
    echo "skip $1: ${BUDGET}s budget spent"; STATUS=1; return
  fi
  echo "== $1: $MODEL batch $2 $3"
  rm -f "$RESULTS/$1.json"  # never summarise a stale result
  timeout "$RUN_LIMIT" "$PY" -m experiments.benchmark "${COMMON[@]}" "${TIMING[@]}" \
      --config.model=$MODEL --config.batch_size="$2" --config.dtype="$3" \
      --json "$RESULTS/$1.json" 2>&1 | tee "$RESULTS/$1.log"
  local rc=${PIPESTATUS[0]}
  if (( rc != 0 )); then echo "run $1 failed (exit $rc)"; STATUS=1; fi
}
run ${MODEL}_b${B1}_bf16 "$B1" bfloat16
run ${MODEL}_b${B1}_fp32 "$B1" float32
run ${MODEL}_b${B2}_bf16 "$B2" bfloat16

shopt -s nullglob
jsons=("$RESULTS"/*.json)
if (( ${#jsons[@]} )); then
  "$PY" tools/bench_summary.py "${jsons[@]}" | tee "$RESULTS/summary.md"
fi
echo "total $((SECONDS - START)) s; results in $RESULTS"
exit $STATUS
