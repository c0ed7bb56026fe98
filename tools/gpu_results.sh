#!/usr/bin/env bash
# CIFAR-10, 5 trials, with and without BackMix, on one GPU (issue 9's GPU part), from a bare
# JAX image, trial by trial inside a time budget.
#
#   bash tools/gpu_results.sh                      # results under $OUT (default runs/gpu_results)
#   RESULTS_QUICK=1 bash tools/gpu_results.sh      # minutes-long smoke run of the same path (CPU)
#
# Data: the CIFAR-10 JPEG npz (18.5 MB). The device machine gets only the repository, so copy
# it into .carry/ (git-ignored) and name that folder in the device call's carry:
#   mkdir -p .carry && cp ../shared/data/cifar10_jpeg_bytes.npz .carry/
# Settings (environment): RESULTS_DATA (npz path; default .carry/..., then ../shared/data/...),
# RESULTS_EPOCHS (default 20), RESULTS_MODEL (classifier32), RESULTS_DTYPE (bfloat16),
# RESULTS_BATCH (128), RESULTS_BUDGET (seconds after which no new trial starts; 360).
# Recipe: ARPL's (SGD 0.1, momentum 0.9, wd 1e-4, inputs in [0,1], flip + pad-4 crop) with a
# cosine decay over the shortened run, since ARPL's x0.1 steps at epochs 30/60/90/120 assume
# 100 epochs. Each trial trains BackMix on and off from the same seed, then the table of all
# finished trials is rewritten: a run cut short by the budget still leaves a usable table.
set -uo pipefail
cd "$(dirname "$0")/.."

RESULTS=${OUT:-runs/gpu_results}
source tools/jax_image_env.sh "$RESULTS"   # PY, wheels, environment.txt

DATA=${RESULTS_DATA:-}
if [[ -z "$DATA" ]]; then
  for candidate in .carry/cifar10_jpeg_bytes.npz ../shared/data/cifar10_jpeg_bytes.npz; do
    [[ -f "$candidate" ]] && { DATA=$candidate; break; }
  done
fi
[[ -n "$DATA" && -f "$DATA" ]] || { echo "error: no CIFAR-10 npz (set RESULTS_DATA or copy it into .carry/)"; exit 1; }

EPOCHS=${RESULTS_EPOCHS:-20}; MODEL=${RESULTS_MODEL:-classifier32}
DTYPE=${RESULTS_DTYPE:-bfloat16}; BATCH=${RESULTS_BATCH:-128}
BUDGET=${RESULTS_BUDGET:-360}; LAST_TRIAL=4
QUICK=()
if [[ -n "${RESULTS_QUICK:-}" ]]; then  # 2 known classes (10,000 images), 1 epoch, 1 trial
  EPOCHS=1; MODEL=cnn_small; DTYPE=float32; BUDGET=0; LAST_TRIAL=0
  QUICK=(--config.known_classes="(0,1)")
fi
WORK=${RESULTS_WORKDIR:-/tmp/backmix_gpu_results}   # checkpoints stay off $OUT
ARGS=(--config configs/cifar10.py --workdir "$WORK" --train --baseline
      --config.data.source="npz:$DATA" --config.data.backend=numpy
      --config.model="$MODEL" --config.dtype="$DTYPE" --config.batch_size="$BATCH"
      --config.num_epochs="$EPOCHS" --config.optimizer.schedule=cosine --config.seed=0
      ${QUICK[@]+"${QUICK[@]}"})
echo "data $DATA | $MODEL $DTYPE batch $BATCH | $EPOCHS epochs | budget ${BUDGET}s | work $WORK"

START=$SECONDS
STATUS=0
for ((t = 0; t <= LAST_TRIAL; t++)); do
  if (( t > 0 && SECONDS - START > BUDGET )); then
    echo "stop before trial $t: ${BUDGET}s budget spent"; STATUS=1; break
  fi
  echo "== trial $t ($((SECONDS - START)) s so far)"
  # --trials 0-t trains only trial t's two runs; the finished ones are collected as they are.
  "$PY" -m experiments.trials "${ARGS[@]}" --trials "0-$t" 2>&1 | tee -a "$RESULTS/log.txt"
  rc=${PIPESTATUS[0]}
  if (( rc != 0 )); then echo "trial $t failed (exit $rc)"; STATUS=1; break; fi
  cp "$WORK"/trials.md "$WORK"/trials.json "$RESULTS"/ 2>/dev/null
  cp "$WORK"/roc_overlay.png "$WORK"/oscr_overlay.png "$RESULTS"/ 2>/dev/null
done
[[ -f "$RESULTS/trials.md" ]] && cat "$RESULTS/trials.md"
echo "total $((SECONDS - START)) s; results in $RESULTS"
exit $STATUS
