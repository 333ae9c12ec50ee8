#!/usr/bin/env bash
# The reward/KL trade-off on the shipped Fashion-MNIST model (paper Fig. 7 analog):
# configs/fashion_brightness.json tuned with λ = 1 and β ∈ {0.1, 0.02, 0.005} (λ/β = 10, 50,
# 200), then each tuned model evaluated on the same noise: brightness, Girsanov path KL to the
# pretrained model, and FD (classifier features) to the pretrained model's samples and to the
# Fashion-MNIST test set. Writes runs/tradeoff/*/ and docs/tradeoff/ (table + grids).
#   bench/fashion_tradeoff.sh            # ~3 x 8 min on 2 cores; BETAS="..." to change the list
# Environment: IDTUNE (binary, default build/idtune), EVAL_SAMPLES (default 500).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
idtune=${IDTUNE:-build/idtune}
read -r -a betas <<<"${BETAS:-0.1 0.02 0.005}"
samples=${EVAL_SAMPLES:-500}
data=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
for beta in "${betas[@]}"; do
  run=runs/tradeoff/beta_$beta
  start=$(date +%s)
  "$idtune" tune --config configs/fashion_brightness.json --set objective.beta="$beta" \
    --set output.run_dir="$run" --set output.image_every=0 --set output.checkpoint_every=0
  "$idtune" eval --model "$run/tuned.pt" --reference models/fashion_unet.pt --reward brightness \
    --classifier models/fashion_classifier.pt --data "$data" --n "$samples" --batch 250 \
    --sampler ddpm --steps 32 --spacing quadratic --seed 1 >"$run/eval.json"
  echo "beta $beta: tune + eval in $(($(date +%s) - start)) s"
done
# The pretrained model on the same noise: its FD to the test set at this sample size.
base=runs/tradeoff/base_eval.json
if [[ ! -s $base ]]; then
  "$idtune" eval --model models/fashion_unet.pt --reward brightness \
    --classifier models/fashion_classifier.pt --data "$data" --n "$samples" --batch 250 \
    --sampler ddpm --steps 32 --spacing quadratic --seed 1 >"$base"
fi
/usr/bin/python3 bench/tradeoff_table.py runs/tradeoff docs/tradeoff "${betas[@]}"
