#!/usr/bin/env bash
# Reproduce the shipped demo checkpoint (instructavatar/assets/demo/) from nothing, on a 2-core CPU.
# Every step is resumable: rerun the script after an interruption and it continues where it stopped.
# The step counts are those of the shipped run (its VAE joint phase and motion run were stopped by wall
# time; --stop-at replays them exactly). Wall times measured on the 2-core machine: see the model card.
#   bash scripts/train_demo.sh            # uses .venv (bash scripts/quickstart.sh setup creates it)
#   DEVICE=cuda bash scripts/train_demo.sh   # the same steps on a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
IA="${IA:-.venv/bin/instructavatar}"
DEVICE="${DEVICE:-cpu}"
VAE_JOINT_STEPS="${VAE_JOINT_STEPS:-2000}"      # joint VAE training before the motion encoder is frozen
VAE_STEPS="${VAE_STEPS:-5600}"                  # total VAE steps (decoder continues with the encoder frozen)
MOTION_STEPS="${MOTION_STEPS:-8000}"            # motion generator schedule length
MOTION_STOP="${MOTION_STOP:-$MOTION_STEPS}"     # where the shipped run stopped (see the model card)
VAE_STOP="${VAE_STOP:-4400}"                 # where the shipped run stopped (wall time)
WARP_STEPS="${WARP_STEPS:-4000}"             # the warping decoder's fine-tune

# A new motion encoder's latents in a second data folder (the clips are shared by links), the latent probe on them,
# and the generator and the audio-only model fine-tuned on them, in parallel at one thread each.
#   relatent NAME VAE_STATE GENERATOR_FROM GENERATOR_STEPS AUDIO_ONLY_FROM AUDIO_ONLY_STEPS
relatent() {
    local name=$1 vae=$2 data="data/motion_$1" f b motion
    mkdir -p "$data"
    for f in data/motion/*; do b=$(basename "$f"); [ "$b" = latents.npz ] || ln -sfn "$(realpath "$f")" "$data/$b"; done
    "$IA" train latents --data "$data" --vae "$vae" --threads 2
    "$IA" train probe --data "$data" --out "runs/latent_probe_$name.safetensors" --steps 3000 --threads 2
    "$IA" train motion --config demo --data "$data" --run "runs/motion_$name" --init-from "$3" --steps "$4" \
        --threads 1 --device "$DEVICE" &
    motion=$!
    "$IA" train motion --config demo --data "$data" --run "runs/motion_audio_only_$name" --no-text --init-from "$5" \
        --steps "$6" --threads 1 --device "$DEVICE"
    wait "$motion"
}

# 1. 1500 train-split clips, their landmark images and instruction embeddings (~12 min, no VAE needed)
"$IA" train prepare --out data/motion --clips 1500 --seed 0
# 2. the VAE, all parts jointly, until the motion encoder is fixed (schedule spans 5000 steps)
"$IA" train vae --config demo --run runs/vae --steps 5000 --stop-at "$VAE_JOINT_STEPS" --threads 2 --device "$DEVICE" \
    --warp off
cp -n runs/vae/state.pt runs/vae_joint.pt || true
# 3. motion latents with the frozen motion encoder, and the latent probe (an evaluator of the generator alone)
"$IA" train latents --data data/motion --vae runs/vae_joint.pt --threads 2
"$IA" train probe --data data/motion --out runs/latent_probe.safetensors --steps 3000 --threads 1
# 4. in parallel: the motion generator, and the VAE decoder with the motion encoder frozen
"$IA" train motion --config demo --data data/motion --run runs/motion --steps "$MOTION_STEPS" \
    --stop-at "$MOTION_STOP" --threads 1 --device "$DEVICE" &
motion=$!
"$IA" train vae --config demo --run runs/vae --steps "$VAE_STEPS" --stop-at "$VAE_STOP" --threads 1 \
    --freeze-motion --device "$DEVICE" --warp off
wait "$motion"
# 5. the decoder (and appearance encoder) again, reconstruction weighted x4 around the facial features; the
#    shipped run was planned for 3200 steps and shortened to 2000 at step 1400 (the two lines replay that)
"$IA" train vae --config demo --run runs/vae_face --init-from runs/vae/state.pt --steps 3200 --stop-at 1400 \
    --lr 5e-4 --freeze-motion --face-weight 3 --threads 1 --device "$DEVICE" --warp off
"$IA" train vae --config demo --run runs/vae_face --steps 2000 --lr 5e-4 --freeze-motion --face-weight 3 \
    --threads 1 --device "$DEVICE" --warp off
# 6. the warping decoder (vae.warp): flow head, skip and blend mask start at zero on top of the plain decoder,
#    the flow is supervised at the landmarks (the shipped run started from the fp16 copy of these weights,
#    the previous checkpoint: the same weights up to rounding)
"$IA" train vae --config demo --run runs/vae_warp --init-from runs/vae_face/state.pt --steps "$WARP_STEPS" \
    --lr 5e-4 --freeze-motion --face-weight 3 --eval-every 250 --threads 2 --device "$DEVICE" --detail off
# 7. the motion encoder trained along with the warp decoder again (800 steps), then with the AU read-out: a linear
#    head that reads the world's AU intensities from the motion latent (training only), face weight 4
"$IA" train vae --config demo --run runs/exp_warp_joint --init-from runs/vae_warp/state.pt --steps 800 \
    --lr 5e-4 --face-weight 3 --eval-every 200 --threads 1 --device "$DEVICE" --detail off
"$IA" train vae --config demo --run runs/vae_au --init-from runs/exp_warp_joint/state.pt --steps 2600 \
    --lr 5e-4 --face-weight 4 --au-weight 1 --eval-every 400 --threads 2 --device "$DEVICE" --detail off
# 8. the audio-only lower bound (no text; 2000 steps on the first latents), then the motion latents of the new encoder (a second data folder: the parts are shared), the probe on them, and
#    the generator and the audio-only lower bound fine-tuned on them (3000 steps each, in parallel)
"$IA" train motion --config demo --data data/motion --run runs/motion_audio_only --no-text --steps 2000 --threads 1 \
    --device "$DEVICE"
relatent au runs/vae_au/state.pt runs/motion/state.pt 3000 runs/motion_audio_only/state.pt 3000
# 9. the motion encoder reads the landmark coordinates (vae.landmark_points): distilled from the image encoder of
#    runs/vae_au (800 steps), then trained with the whole VAE, the AU read-out and face weight 4 (stopped at 1200 of
#    a 2500-step schedule), then 1500 steps with the pixels the AUs change weighted +8 (--expression-weight); its
#    latents, the probe, and the generator (3000 steps) and audio-only model (9000: both at 14000 in all) on them
"$IA" train vae --config demo --run runs/vae_pts --init-from runs/vae_au/state.pt --distill-steps 800 --steps 2500 \
    --stop-at 1200 --lr 5e-4 --face-weight 4 --au-weight 1 --eval-every 250 --threads 2 --device "$DEVICE" --detail off
"$IA" train vae --config demo --run runs/vae_pts2 --init-from runs/vae_pts/state.pt --steps 1500 --lr 5e-4 \
    --face-weight 4 --au-weight 1 --expression-weight 8 --eval-every 250 --threads 2 --device "$DEVICE" --detail off
relatent pts runs/vae_pts2/state.pt runs/motion_au/state.pt 3000 runs/motion_audio_only_au/state.pt 9000
# 10. both 6000 steps further on the same latents (20000 steps each in all), in parallel
"$IA" train motion --config demo --data data/motion_pts --run runs/motion_pts2 --init-from runs/motion_pts/state.pt \
    --steps 6000 --threads 1 --device "$DEVICE" &
motion=$!
"$IA" train motion --config demo --data data/motion_pts --run runs/motion_audio_only_pts2 --no-text \
    --init-from runs/motion_audio_only_pts/state.pt --steps 6000 --threads 1 --device "$DEVICE"
wait "$motion"
# 11. one fp16 safetensors file (+ the fingerprint the tests compare with), the probe beside it
# the decoder's detail head, added last; the latent space is kept, so the generator stays as it is
"$IA" train vae --config demo --run runs/vae_detail --init-from runs/vae_pts2/state.pt --steps 1500 --lr 5e-4 \
    --face-weight 4 --expression-weight 16 --keep-latents --eval-every 250 --threads 2 --device "$DEVICE"
# 12. the decoder's perceptual AU loss: a training-only AU critic (its own architecture and seed; the evaluators are
#     never a training signal), then 1200 decoder steps with it, the latent space kept (the shipped run started from
#     the fp16 copy of runs/vae_detail, the previous checkpoint: the same weights up to rounding)
"$IA" train critic --out runs/au_critic.safetensors --frames 40000 --steps 5000 --threads 1
"$IA" train vae --config demo --run runs/vae_critic --init-from runs/vae_detail/state.pt --steps 1200 --lr 5e-4 \
    --face-weight 4 --expression-weight 16 --keep-latents --au-critic runs/au_critic.safetensors --au-critic-weight 0.5 \
    --eval-every 200 --threads 1 --device "$DEVICE"
"$IA" train package --vae runs/vae_critic/state.pt --motion runs/motion_pts2/state.pt
cp runs/latent_probe_pts.safetensors instructavatar/assets/demo/latent_probe.safetensors
# 13. the audio-only lower bound of the quality tables, shipped beside the checkpoint: 20000 steps without text from
#     scratch on the shipped motion encoder's latents (the same budget as the generator), then its generator alone
"$IA" train motion --config demo --data data/motion_pts --run runs/motion_audio_only_ship --no-text --steps 20000 \
    --save-every 500 --threads 1 --device "$DEVICE"
# the idle-blink cue (engine/blinks.py): both generators fine-tuned 10000 steps with it, equal budgets
"$IA" train motion --config demo --data data/motion_pts --run runs/motion_blink --init-from runs/motion_pts2/state.pt \
    --steps 10000 --lr 3e-4 --seed 1 --threads 1 --device "$DEVICE" &
motion=$!
"$IA" train motion --config demo --data data/motion_pts --run runs/motion_blink_ao --no-text \
    --init-from runs/motion_audio_only_ship/state.pt --steps 10000 --lr 3e-4 --seed 1 --threads 1 --device "$DEVICE"
wait "$motion"
"$IA" train package --vae runs/vae_critic/state.pt --motion runs/motion_blink/state.pt
"$IA" train package --motion-only runs/motion_blink_ao/state.pt
echo "done: instructavatar/assets/demo/; quality tables: $IA train quality main|vae|paraphrase|steps|streaming"
