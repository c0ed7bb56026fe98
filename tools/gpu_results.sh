#!/usr/bin/env bash
# CIFAR-10 tables on one accelerator, as sweeps (docs/sweeps.md), ARPL protocol, softmax + MLS,
# bfloat16 compute, BackMix released (bank mode) against BackMix off:
#   RESULTS_TABLE=paper (default): 5 trials x on/off, classifier32, ARPL recipe (100 epochs,
#     batch 64, SGD 0.1 x0.1 at 30/60/90): the paper's CIFAR-10 row (issue 22).
#   RESULTS_TABLE=study: trial 0 x on/off under the ARPL recipe and under Vaze et al.'s
#     (configs/cifar10.py:vaze: classifier32, 600 epochs, batch 128, RandAugment N1 M6, cosine
#     with warm restarts): the four arms of the converged-budget study (issue 25).
#
#   bash tools/gpu_results.sh                      # results under $OUT (default runs/gpu_results)
#   RESULTS_TABLE=study bash tools/gpu_results.sh
#   RESULTS_QUICK=1 bash tools/gpu_results.sh      # minutes-long smoke run of the same path (CPU)
#
# Data: the CIFAR-10 JPEG npz (18.5 MB). The device machine gets only the repository, so copy
# it into .carry/ (git-ignored) and name that folder in the device call's carry:
#   mkdir -p .carry && cp ../shared/data/cifar10_jpeg_bytes.npz .carry/
# Settings (environment): RESULTS_DATA (npz path; default .carry/..., then ../shared/data/...),
# RESULTS_EPOCHS (ARPL recipe, default 100), RESULTS_VAZE_EPOCHS (study, default 600),
# RESULTS_MODEL (classifier32), RESULTS_DTYPE (bfloat16), RESULTS_BATCH (ARPL recipe, 64),
# RESULTS_BUDGET (seconds for all training; 480).
# Order, so a short budget still leaves a table: paper: sweep 1 = trial 0 on and off (2 runs),
# sweep 2 = trials 1-4 on and off (8 runs); study: sweep 1 = the ARPL recipe's pair, sweep 2
# = the Vaze recipe's pair. A sweep cut by the budget gets SIGTERM, saves every run's
# checkpoint and stops; the table is then written from every finished run (rerunning the
# script resumes the rest). Not yet timed on an accelerator: the paper table is 10 runs x 100
# epochs x 468 steps x 64 images = 30 M images, so 9 minutes needs ~55,000 img/s aggregate
# (the released PyTorch loop: 3,110 img/s on one H100); the study is 6 M images for the ARPL
# pair and 36 M for the Vaze pair (docs/sweeps.md).
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

TABLE=${RESULTS_TABLE:-paper}
[[ "$TABLE" == paper || "$TABLE" == study ]] || { echo "error: RESULTS_TABLE is paper or study, not $TABLE"; exit 1; }
EPOCHS=${RESULTS_EPOCHS:-100}; VAZE_EPOCHS=${RESULTS_VAZE_EPOCHS:-600}; MODEL=${RESULTS_MODEL:-classifier32}
DTYPE=${RESULTS_DTYPE:-bfloat16}; BATCH=${RESULTS_BATCH:-64}
BUDGET=${RESULTS_BUDGET:-480}; REST=1-4
QUICK=(); QUICK_VAZE=()
if [[ -n "${RESULTS_QUICK:-}" ]]; then  # 2 known classes (10,000 images), 1 epoch, trials 0-1
  EPOCHS=1; VAZE_EPOCHS=1; MODEL=cnn_small; DTYPE=float32; BUDGET=${RESULTS_BUDGET:-900}; REST=1
  QUICK=(--config.known_classes="(0,1)")
  QUICK_VAZE=(--config.optimizer.restarts=0 --config.optimizer.warmup_epochs=0)  # 1 epoch: one cycle
fi
WORK=${RESULTS_WORKDIR:-/tmp/backmix_gpu_results}   # checkpoints stay off $OUT
# What every sweep shares; each table puts its config (recipe), workdir, batch and epochs first.
COMMON=(--train --baseline --config.data.source="npz:$DATA" --config.data.backend=numpy
        --config.model="$MODEL" --config.dtype="$DTYPE" --config.backmix.cam_source=bank
        --config.seed=0 --sweep ${QUICK[@]+"${QUICK[@]}"})
ARPL=(--config configs/cifar10.py --config.batch_size="$BATCH" --config.num_epochs="$EPOCHS")
VAZE=(--config configs/cifar10.py:vaze --config.num_epochs="$VAZE_EPOCHS" ${QUICK_VAZE[@]+"${QUICK_VAZE[@]}"})
echo "table $TABLE | data $DATA | $MODEL $DTYPE | budget ${BUDGET}s | work $WORK"

START=$SECONDS
STATUS=0
sweep() {  # trials spec, then the run's flags; trains them as one sweep within what is left
  local trials=$1; shift
  local left=$((BUDGET - (SECONDS - START)))
  if (( left <= 10 )); then echo "skip trials $trials: ${BUDGET}s budget spent"; STATUS=1; return; fi
  echo "== sweep of trials $trials, on and off, $* ($((SECONDS - START)) s so far, ${left} s left)"
  # SIGTERM at the budget: every run saves its checkpoint and the command exits 0.
  # --config comes before any --config.<field> override (ml_collections' rule).
  timeout --signal=TERM --kill-after=60 "$left" "$PY" -m experiments.trials "$@" \
      "${COMMON[@]}" --trials "$trials" 2>&1 | tee -a "$RESULTS/log.txt"
  local rc=${PIPESTATUS[0]}
  if (( rc != 0 )); then echo "sweep of trials $trials failed (exit $rc)"; STATUS=1; fi
}
collect() {  # trials spec, name, then the run's flags: the table of every finished run
  local trials=$1 name=$2; shift 2
  local flags=()
  for a in "${COMMON[@]}"; do [[ "$a" == --train || "$a" == --sweep ]] || flags+=("$a"); done
  "$PY" -m experiments.trials "$@" "${flags[@]}" --trials "$trials" 2>&1 | tail -n 40 \
      | tee -a "$RESULTS/log.txt"
  local dir=${*: -1}   # the workdir is the last flag's value
  for f in trials.md trials.json roc_overlay.png oscr_overlay.png; do
    [[ -f "$dir/$f" ]] && cp "$dir/$f" "$RESULTS/${name}_$f"
  done
  [[ -f "$RESULTS/${name}_trials.md" ]] && cat "$RESULTS/${name}_trials.md"
}
if [[ "$TABLE" == paper ]]; then
  sweep 0 "${ARPL[@]}" --workdir "$WORK"
  sweep "$REST" "${ARPL[@]}" --workdir "$WORK"
  collect "0-${REST#*-}" paper "${ARPL[@]}" --workdir "$WORK"
else
  sweep 0 "${ARPL[@]}" --workdir "$WORK/study_arpl"
  sweep 0 "${VAZE[@]}" --workdir "$WORK/study_vaze"
  collect 0 study_arpl "${ARPL[@]}" --workdir "$WORK/study_arpl"
  collect 0 study_vaze "${VAZE[@]}" --workdir "$WORK/study_vaze"
fi
echo "total $((SECONDS - START)) s; results in $RESULTS"
exit $STATUS
