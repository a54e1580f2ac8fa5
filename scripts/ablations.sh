#!/usr/bin/env bash
# Table 3 style ablations of the motion generator at one equal, reduced budget (STEPS each), plus the
# audio-only lower bound (trained without text), all on the data and VAE of scripts/train_demo.sh.
# Runs two trainings at a time (one thread each); every run resumes if interrupted.
#   bash scripts/ablations.sh                 # STEPS=2000 by default
#   STEPS=4000 DEVICE=cuda bash scripts/ablations.sh
set -euo pipefail
cd "$(dirname "$0")/.."
IA="${IA:-.venv/bin/instructavatar}"
STEPS="${STEPS:-2000}"
DEVICE="${DEVICE:-cpu}"
CLIPS="${CLIPS:-32}"
VAE="${VAE:-runs/vae_face/state.pt}"           # the shipped decoder (scripts/train_demo.sh step 5)
declare -A FLAGS=(
  [full]=""
  [no_au_loss]="--no-au-loss"
  [single_branch]="--single-branch"
  [no_zero_gates]="--no-zero-gates"
  [no_keyframe_sub]="--no-keyframe-sub"
  [audio_only]="--no-text"
)
names=(full no_au_loss single_branch no_zero_gates no_keyframe_sub audio_only)
for ((i = 0; i < ${#names[@]}; i += 2)); do
  for name in "${names[@]:i:2}"; do
    # shellcheck disable=SC2086
    "$IA" train motion --config demo --data data/motion --run "runs/ablation_$name" --steps "$STEPS" \
        --threads 1 --device "$DEVICE" ${FLAGS[$name]} > "runs/ablation_$name.log" 2>&1 &
  done
  wait
done
runs=()
for name in "${names[@]}"; do
  [ "$name" = audio_only ] || runs+=(--run "$name=runs/ablation_$name")
done
"$IA" train quality ablations --clips "$CLIPS" --vae "$VAE" "${runs[@]}" --json runs/quality_ablations.json
"$IA" train quality main --clips "$CLIPS" --vae "$VAE" --audio-only runs/ablation_audio_only/state.pt \
    --json runs/quality_main_with_audio_only.json
