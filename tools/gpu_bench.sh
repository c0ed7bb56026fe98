#!/usr/bin/env bash
# BackMix training speed on one GPU (issue 7), from a bare JAX image, in under 5 minutes.
#
#   bash tools/gpu_bench.sh                  # JSON + logs under $OUT (default runs/gpu_bench)
#   BENCH_QUICK=1 bash tools/gpu_bench.sh    # seconds-long smoke run of the same path (CPU)
#
# What the image needs: tools/jax_image_env.sh. Data are synthetic CIFAR-shaped uint8 images
# (32x32x3, 6 classes) fed by the NumPy pipeline.
# Runs, most important first: WRN-40-4 batch 128 bfloat16, batch 128 float32, batch 512
# bfloat16. Each run is bounded by RUN_LIMIT seconds and none starts after BUDGET seconds.
set -uo pipefail
cd "$(dirname "$0")/.."

RESULTS=${OUT:-runs/gpu_bench}
BUDGET=${BENCH_BUDGET:-270}
RUN_LIMIT=${BENCH_RUN_LIMIT:-150}
source tools/jax_image_env.sh "$RESULTS"   # PY, wheels, environment.txt

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
