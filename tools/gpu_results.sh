#!/usr/bin/env bash
# The CIFAR-10 paper table (issue 22) on one accelerator, as sweeps (docs/sweeps.md): ARPL
# protocol, 5 trials x (BackMix released = bank mode, baseline), classifier32, ARPL recipe
# (100 epochs, batch 64, SGD 0.1 x0.1 at 30/60/90), softmax + MLS, bfloat16 compute.
#
#   bash tools/gpu_results.sh                      # results under $OUT (default runs/gpu_results)
#   RESULTS_QUICK=1 bash tools/gpu_results.sh      # minutes-long smoke run of the same path (CPU)
#
# Data: the CIFAR-10 JPEG npz (18.5 MB). The device machine gets only the repository, so copy
# it into .carry/ (git-ignored) and name that folder in the device call's carry:
#   mkdir -p .carry && cp ../shared/data/cifar10_jpeg_bytes.npz .carry/
# Settings (environment): RESULTS_DATA (npz path; default .carry/..., then ../shared/data/...),
# RESULTS_EPOCHS (default 100), RESULTS_MODEL (classifier32), RESULTS_DTYPE (bfloat16),
# RESULTS_BATCH (64), RESULTS_BUDGET (seconds for all training; 480).
# Order, so a short budget still leaves a table: sweep 1 = trial 0 BackMix on and off (2 runs);
# sweep 2 = trials 1-4 on and off (8 runs) in what is left of the budget. A sweep cut by the
# budget gets SIGTERM, saves every run's checkpoint and stops; the table is then written from
# every finished run (rerunning the script resumes the rest). Not yet timed on an accelerator:
# 10 runs x 100 epochs x 468 steps x 64 images = 30 M images, so 9 minutes needs ~55,000 img/s
# aggregate (the released PyTorch loop: 3,110 img/s on one H100); expect trial 0 and part of
# the rest unless the sweep reaches that (docs/sweeps.md).
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

EPOCHS=${RESULTS_EPOCHS:-100}; MODEL=${RESULTS_MODEL:-classifier32}
DTYPE=${RESULTS_DTYPE:-bfloat16}; BATCH=${RESULTS_BATCH:-64}
BUDGET=${RESULTS_BUDGET:-480}; REST=1-4
QUICK=()
if [[ -n "${RESULTS_QUICK:-}" ]]; then  # 2 known classes (10,000 images), 1 epoch, trials 0-1
  EPOCHS=1; MODEL=cnn_small; DTYPE=float32; BUDGET=${RESULTS_BUDGET:-900}; REST=1
  QUICK=(--config.known_classes="(0,1)")
fi
WORK=${RESULTS_WORKDIR:-/tmp/backmix_gpu_results}   # checkpoints stay off $OUT
ARGS=(--config configs/cifar10.py --workdir "$WORK" --train --baseline
      --config.data.source="npz:$DATA" --config.data.backend=numpy
      --config.model="$MODEL" --config.dtype="$DTYPE" --config.batch_size="$BATCH"
      --config.num_epochs="$EPOCHS" --config.backmix.cam_source=bank --config.seed=0
      --sweep ${QUICK[@]+"${QUICK[@]}"})
echo "data $DATA | $MODEL $DTYPE batch $BATCH | $EPOCHS epochs | budget ${BUDGET}s | work $WORK"

START=$SECONDS
STATUS=0
sweep() {  # trials spec; trains them as one sweep within what is left of the budget
  local left=$((BUDGET - (SECONDS - START)))
  if (( left <= 10 )); then echo "skip trials $1: ${BUDGET}s budget spent"; STATUS=1; return; fi
  echo "== sweep of trials $1, on and off ($((SECONDS - START)) s so far, ${left} s left)"
  # SIGTERM at the budget: every run saves its checkpoint and the command exits 0.
  timeout --signal=TERM --kill-after=60 "$left" "$PY" -m experiments.trials "${ARGS[@]}" \
      --trials "$1" 2>&1 | tee -a "$RESULTS/log.txt"
  local rc=${PIPESTATUS[0]}
  if (( rc != 0 )); then echo "sweep of trials $1 failed (exit $rc)"; STATUS=1; fi
}
sweep 0
sweep "$REST"
# The table of every finished run (collect only: --train and --sweep left out).
COLLECT=()
for a in "${ARGS[@]}"; do [[ "$a" == --train || "$a" == --sweep ]] || COLLECT+=("$a"); done
"$PY" -m experiments.trials "${COLLECT[@]}" --trials "0-${REST#*-}" 2>&1 | tail -n 40 \
    | tee -a "$RESULTS/log.txt"
cp "$WORK"/trials.md "$WORK"/trials.json "$RESULTS"/ 2>/dev/null
cp "$WORK"/roc_overlay.png "$WORK"/oscr_overlay.png "$RESULTS"/ 2>/dev/null
[[ -f "$RESULTS/trials.md" ]] && cat "$RESULTS/trials.md"
echo "total $((SECONDS - START)) s; results in $RESULTS"
exit $STATUS
