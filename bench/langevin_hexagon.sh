#!/usr/bin/env bash
# The hexagon experiment (docs/langevin.md; paper §5.1, App. C.1.1, Fig. 6 and 11) and the
# from-scratch runs (App. C.1.2): every method × 10 seeds through `idtune langevin`, one run at
# a time on one thread, into runs/langevin/; then scripts/plot_langevin.py draws docs/langevin/.
#
#   bench/langevin_hexagon.sh                 # everything (~20 min on one core)
#   LANGEVIN_SEEDS="0 1" bench/langevin_hexagon.sh   # fewer seeds
#   LANGEVIN_PARTS="hexagon" ...              # only the hexagon part (or "scratch")
#
# Budgets: every method runs 5000 outer steps, except the nested loops, which get 20,000
# sampling steps each (T = 10: 2000 outer steps; T = 100: 200 outer steps), 4× Implicit
# Diffusion's 5000 (docs/langevin.md says why).
# Build first: cmake --build build-langevin -j2 --target idtune (or set IDTUNE).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${IDTUNE:-$root/build-langevin/idtune}
[[ -x $bin ]] || bin=$root/build/idtune
if [[ ! -x $bin ]]; then
  echo "langevin_hexagon.sh: no idtune binary; build it: cmake --build build -j2 --target idtune" >&2
  exit 1
fi
read -r -a seeds <<<"${LANGEVIN_SEEDS:-0 1 2 3 4 5 6 7 8 9}"
parts=${LANGEVIN_PARTS:-hexagon scratch}
out=${LANGEVIN_RUNS:-$root/runs/langevin}
export IDTUNE_NUM_THREADS=1
python=/usr/bin/python3  # has matplotlib; the first python3 on PATH may not

# run NAME CONFIG [--set ...]: one run into $out/NAME, quiet except for its last line.
run() {
  local name=$1 config=$2
  shift 2
  rm -rf "${out:?}/$name"
  mkdir -p "$(dirname "$out/$name")"
  "$bin" langevin --config "$config" --set output.run_dir="$out/$name" \
    --set output.log_every=0 "$@" >"$out/$name.log" 2>&1 || {
    cat "$out/$name.log" >&2
    exit 1
  }
}

final_theta() { $python -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))['theta']))" "$1"; }

mkdir -p "$out"
start=$SECONDS
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
if [[ $parts == *hexagon* ]]; then
  hex=$root/configs/langevin/hexagon.json
  # θ₀ of the public code, and θ₀ of the paper's text.
  for variant in code text; do
    logits='[1.5,0,1.5,0,1.5,0]'
    [[ $variant == text ]] && logits='[1,0,1,0,1,0]'
    for seed in "${seeds[@]}"; do
      t0=$SECONDS
      common=(--set seed="$seed" --set potential.logits="$logits")
      d=hexagon-$variant
      run "$d/langevin/$seed" "$hex" "${common[@]}" --set algorithm.method=langevin
      run "$d/implicit/$seed" "$hex" "${common[@]}"
      run "$d/nested10/$seed" "$hex" "${common[@]}" --set algorithm.method=nested \
        --set algorithm.inner_steps=10 --set steps=2000
      run "$d/nested100/$seed" "$hex" "${common[@]}" --set algorithm.method=nested \
        --set algorithm.inner_steps=100 --set steps=200
      # Unrolling: lr η/γ = 0.5, as the paper's App. C.1.1 scales it.
      run "$d/unrolled/$seed" "$hex" "${common[@]}" --set algorithm.method=unrolled \
        --set optimiser.lr=0.5
      run "$d/guidance/$seed" "$hex" "${common[@]}" --set algorithm.method=guidance
      run "$d/post-implicit/$seed" "$hex" "${common[@]}" --set algorithm.method=langevin \
        --set theta0="$(final_theta "$out/$d/implicit/$seed/theta.json")"
      echo "hexagon θ₀=$variant seed $seed: $((SECONDS - t0)) s"
    done
  done
fi
if [[ $parts == *scratch* ]]; then
  for seed in 0 1; do
    run "scratch-weights/$seed" "$root/configs/langevin/scratch_weights.json" --set seed="$seed"
    run "scratch-full/$seed" "$root/configs/langevin/scratch_full.json" --set seed="$seed"
    echo "from scratch seed $seed done"
  done
fi
echo "all runs: $((SECONDS - start)) s"
$python "$root/scripts/plot_langevin.py" --runs "$out" --docs "$root/docs"
