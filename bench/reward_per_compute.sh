#!/usr/bin/env bash
# Reward per unit of compute (issue 7, item 1; docs/benchmarks.md "Reward per unit of compute"):
# Implicit Diffusion (M = K and M = 4), the nested loop (M = 1), DRaFT (full backprop) and
# DRaFT-K (k = 1) on the default model and reward, the same λ, β, Adam and the same number of
# outer iterations (= the same sampling budget: every method samples K·B per-image steps per
# iteration), one `idtune tune` run each, one after the other, single-threaded. Then each
# tuned model is evaluated on fresh samples (`idtune eval`: reward and path KL to the base
# model, the same noise for every method) after 1, 2, 4, 8 and 32 iterations (the run is
# continued with --resume between evaluations), and bench/plot_reward_per_compute.py prints
# the table and writes the plot.
#
#   bench/reward_per_compute.sh          (about 8 minutes on 1 thread; smaller than the default
#                                         config: K = 16, B = 8, 32 iterations, see below)
#
# Environment: STEPS (K, 16), BATCH (8), EVAL_AT ("1 2 4 8 32": the last is the number of
# iterations), THREADS (1), EVAL_N (32),
# IDTUNE (build/idtune), PYTHON (/usr/bin/python3), OUT (runs/bench/reward_per_compute),
# PNG (docs/benchmarks/reward_per_compute.png).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
idtune=${IDTUNE:-build/idtune}
python=${PYTHON:-/usr/bin/python3}
K=${STEPS:-16}
B=${BATCH:-8}
threads=${THREADS:-1}
eval_n=${EVAL_N:-32}
read -r -a stages <<<"${EVAL_AT:-1 2 4 8 32}"  # evaluate θ after these many iterations
out=${OUT:-runs/bench/reward_per_compute}
png=${PNG:-docs/benchmarks/reward_per_compute.png}
config=configs/fashion_brightness.json
# Pinned so that every method runs the same objective and optimiser whatever the config says.
common=(--set sampler.kind=ddpm --set sampler.steps="$K" --set sampler.t_min=0.001
        --set sampler.spacing=quadratic --set batch="$B"
        --set objective.lambda=1.0 --set objective.beta=0.02 --set optimiser.lr=5e-5
        --set optimiser.clip_grad_norm=1.0 --set seed=0 --set algorithm.warm_start=true
        --set output.log_every=0 --set output.image_every=0 --set output.checkpoint_every=0
        --set output.grid_samples=1)
# name | overrides
methods=("implicit_M${K}|--set algorithm.method=implicit --set algorithm.queue_slots=$K"
         "implicit_M4|--set algorithm.method=implicit --set algorithm.queue_slots=4"
         "nested|--set algorithm.method=nested --set algorithm.queue_slots=1"
         "draft|--set algorithm.method=draft"
         "draft-k1|--set algorithm.method=draft-k --set algorithm.backprop_steps=1")

[[ -x $idtune ]] || { echo "reward_per_compute.sh: $idtune not found (cmake --build build --target idtune)" >&2; exit 1; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "config: $config ${common[*]}"
echo "iterations: ${stages[-1]}, evaluated after ${stages[*]}"
echo "threads: $threads; eval: idtune eval --n $eval_n --sampler ddpm --steps $K --spacing quadratic --seed 7"
rm -rf "$out"
mkdir -p "$out"
for entry in "${methods[@]}"; do
  name=${entry%%|*}
  read -r -a extra <<<"${entry#*|}"
  echo "$name: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  resume=()
  for stage in "${stages[@]}"; do
    # Each stage continues the run bit-identically (--resume) up to `stage` iterations, and
    # exports tuned.pt, which idtune eval samples afresh: θ's own reward and path KL.
    IDTUNE_NUM_THREADS=$threads "$idtune" tune --config $config "${common[@]}" "${extra[@]}" \
      --set iterations="$stage" --set output.run_dir="$out/$name" "${resume[@]}" \
      >>"$out/$name.log" 2>&1
    resume=(--resume)
    IDTUNE_NUM_THREADS=$threads "$idtune" eval --model "$out/$name/tuned.pt" \
      --reference models/fashion_unet.pt --n "$eval_n" --batch "$eval_n" --sampler ddpm \
      --steps "$K" --spacing quadratic --seed 7 >"$out/$name/eval_$stage.json" \
      2>>"$out/$name/eval.log"
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$python" bench/plot_reward_per_compute.py "$out" --steps "$K" --batch "$B" --png "$png"
