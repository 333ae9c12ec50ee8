#!/usr/bin/env bash
# C++ against Python (issue 7, item 4; docs/benchmarks.md "C++ against Python"): time per
# θ-update of `idtune tune` and of scripts/reference_tune.py (plain PyTorch, the same queued
# iteration with the same discrete adjoint) on the same model, config, batch, K, M, λ, β, Adam.
#
#   bench/cpp_vs_python.sh            (about 6 minutes on 1 thread)
#
# Runs, interleaved, ROUNDS times: idtune, python, python with glibc's heap retained (the
# mallopt settings idtune::retain_freed_memory() makes, through glibc's environment tunables).
# Each run does ITERATIONS outer iterations; the first WARMUP are not timed (the warm start
# fills the queue in iteration 0, and TorchScript's profiling executor re-optimises the graph
# for each new input shape in the first calls). Per-update time: idtune's from metrics.jsonl
# (sample_steps / sample_steps_per_s = the seconds of Trainer::step()), Python's from
# time.perf_counter() around its step(). Both single-threaded (THREADS, default 1).
# Environment: ITERATIONS (6), WARMUP (2), ROUNDS (2), THREADS (1), IDTUNE (build/idtune),
# PYTHON (/usr/bin/python3), OUT (runs/bench/cpp_vs_python).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
idtune=${IDTUNE:-build/idtune}
python=${PYTHON:-/usr/bin/python3}
iterations=${ITERATIONS:-6}
warmup=${WARMUP:-2}
rounds=${ROUNDS:-2}
threads=${THREADS:-1}
out=${OUT:-runs/bench/cpp_vs_python}
config=configs/fashion_brightness.json
# Pinned so that both sides run the same objective and optimiser whatever the config file says.
sets=(--set sampler.steps=32 --set batch=16 --set algorithm.method=implicit
      --set algorithm.queue_slots=4 --set objective.lambda=1.0 --set objective.beta=0.02
      --set optimiser.lr=5e-5 --set optimiser.clip_grad_norm=1.0 --set seed=0
      --set iterations="$iterations" --set output.log_every=0 --set output.image_every=0
      --set output.checkpoint_every=0)

[[ -x $idtune ]] || { echo "cpp_vs_python.sh: $idtune not found (cmake --build build --target idtune)" >&2; exit 1; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "config: $config ${sets[*]}"
echo "threads: $threads (IDTUNE_NUM_THREADS / torch.set_num_threads); $iterations iterations" \
  "per run, the first $warmup not timed; $rounds rounds of (idtune, python, python+heap)"
rm -rf "$out"
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  echo "round $r: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  IDTUNE_NUM_THREADS=$threads "$idtune" tune --config $config "${sets[@]}" \
    --set output.run_dir="$out/cpp_$r" >"$out/cpp_$r.log" 2>&1
  "$python" scripts/reference_tune.py --config $config "${sets[@]}" --threads "$threads" \
    --out "$out/py_$r.jsonl" >"$out/py_$r.log" 2>&1
  MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 \
    "$python" scripts/reference_tune.py --config $config "${sets[@]}" --threads "$threads" \
    --out "$out/pyheap_$r.jsonl" >"$out/pyheap_$r.log" 2>&1
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

"$python" - "$out" "$rounds" "$warmup" <<'EOF'
import json, statistics, sys
out, rounds, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f]
def cpp_seconds(r):  # Trainer::step() seconds; K·B = 512 sample-steps per update here
    return [row["sample_steps_per_s"] and 512 / row["sample_steps_per_s"] for row in r]
series = {"idtune tune (C++)": [], "reference_tune.py": [], "reference_tune.py, heap retained": []}
rewards = {k: [] for k in series}
for r in range(1, rounds + 1):
    c, p, h = rows(f"{out}/cpp_{r}/metrics.jsonl"), rows(f"{out}/py_{r}.jsonl"), rows(f"{out}/pyheap_{r}.jsonl")
    for name, sec, rr in (("idtune tune (C++)", cpp_seconds(c), c),
                          ("reference_tune.py", [x["step_seconds"] for x in p], p),
                          ("reference_tune.py, heap retained", [x["step_seconds"] for x in h], h)):
        series[name] += sec[warmup:]
        rewards[name].append(" ".join(f"{x['reward_mean']:.3f}" for x in rr))
print()
print("seconds per theta-update (K=32, B=16, M=4, beta=0.02; warm-up iterations excluded)")
print(f"{'implementation':34s} {'n':>3s} {'median':>8s} {'min':>8s} {'max':>8s}")
for name, s in series.items():
    print(f"{name:34s} {len(s):3d} {statistics.median(s):8.3f} {min(s):8.3f} {max(s):8.3f}")
cpp = statistics.median(series["idtune tune (C++)"])
print()
for name in list(series)[1:]:
    print(f"speed-up C++ over {name}: {statistics.median(series[name]) / cpp:.3f}  (target >= 1.0)")
print()
print("reward_mean per iteration (one line per run; different noise streams, same settings)")
for name, lines in rewards.items():
    for line in lines:
        print(f"  {name:34s} {line}")
EOF
