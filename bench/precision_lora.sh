#!/usr/bin/env bash
# Mixed precision and LoRA (issue 15; docs/benchmarks.md "Precision and LoRA"): time per
# θ-update, peak memory, θ's size and the reward and path KL after N updates of `idtune tune`
# on the shipped default model and config, in fp32 and bf16, with all weights tuned and with
# LoRA rank 4, against scripts/reference_tune.py (plain PyTorch, fp32: what a user would write).
#
#   bench/precision_lora.sh          (about 15 minutes with the defaults, on an idle machine)
#
# Interleaved, ROUNDS times: the five runs below, each ITERATIONS outer iterations, the first
# WARMUP not timed. Per-update time: idtune's from metrics.jsonl (the seconds of
# Trainer::step()), Python's from its own timer. Reward and KL: mean ± standard deviation of
# the last 8 iterations' batch values (runs are seeded: rounds repeat them bit for bit, so the
# spread is the batches', and "equal" means within the fp32 run's).
# Environment: ITERATIONS (24), WARMUP (2), ROUNDS (2), THREADS (2), IDTUNE (build/idtune),
# PYTHON (/usr/bin/python3), OUT (runs/bench/precision_lora).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
idtune=${IDTUNE:-build/idtune}
python=${PYTHON:-/usr/bin/python3}
iterations=${ITERATIONS:-24}
warmup=${WARMUP:-2}
rounds=${ROUNDS:-2}
threads=${THREADS:-2}
out=${OUT:-runs/bench/precision_lora}
config=configs/fashion_brightness.json
sets=(--set sampler.steps=32 --set batch=16 --set algorithm.method=implicit
      --set algorithm.queue_slots=4 --set objective.lambda=1.0 --set objective.beta=0.02
      --set optimiser.lr=5e-5 --set optimiser.clip_grad_norm=1.0 --set seed=0
      --set iterations="$iterations" --set output.log_every=0 --set output.image_every=0
      --set output.checkpoint_every=0 --set output.grids=false)
declare -A extra=(
  [fp32]=""
  [bf16]="--set precision=bf16"
  [lora4_fp32]="--set lora.rank=4 --set optimiser.lr=5e-4"
  [lora4_bf16]="--set lora.rank=4 --set optimiser.lr=5e-4 --set precision=bf16"
)
runs=(fp32 bf16 lora4_fp32 lora4_bf16)
[[ -x $idtune ]] || { echo "precision_lora.sh: $idtune not found" >&2; exit 1; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg) at start; threads $threads"
rm -rf "$out"
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for name in "${runs[@]}"; do
    # shellcheck disable=SC2086
    IDTUNE_NUM_THREADS=$threads /usr/bin/time -f "%M" -o "$out/${name}_$r.rss" \
      "$idtune" tune --config $config "${sets[@]}" ${extra[$name]} \
      --set output.run_dir="$out/${name}_$r" >"$out/${name}_$r.log" 2>&1
  done
  /usr/bin/time -f "%M" -o "$out/python_$r.rss" "$python" scripts/reference_tune.py \
    --config $config "${sets[@]}" --threads "$threads" --out "$out/python_$r.jsonl" \
    >"$out/python_$r.log" 2>&1
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

"$python" - "$out" "$rounds" "$warmup" "${runs[@]}" <<'PY'
import json, re, statistics, sys
out, rounds, warmup, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f]
def rss_mb(path):
    return int(open(path).read().split()[-1]) / 1024
table = {}
for name in runs + ["python"]:
    sec, reward, kl, rss, values = [], [], [], [], None
    for r in range(1, rounds + 1):
        if name == "python":
            m = rows(f"{out}/python_{r}.jsonl")
            sec += [x["step_seconds"] for x in m[warmup:]]
        else:
            m = rows(f"{out}/{name}_{r}/metrics.jsonl")
            sec += [x["sample_steps"] / x["sample_steps_per_s"] if "sample_steps" in x
                    else 512 / x["sample_steps_per_s"] for x in m[warmup:]]
            log = open(f"{out}/{name}_{r}.log").read()
            values = int(re.search(r"θ: (\d+) values", log).group(1))
        reward += [x["reward_mean"] for x in m[-8:]]
        kl += [x["kl"] for x in m[-8:] if x.get("kl") is not None]
        rss.append(rss_mb(f"{out}/{name}_{r}.rss"))
    table[name] = dict(sec=statistics.median(sec), reward=reward, kl=kl, rss=max(rss), values=values)
base = table["fp32"]
def spread(v):
    return f"{statistics.mean(v):.4f}" + (f" ± {statistics.stdev(v):.4f}" if len(v) > 1 else "")
print(f"| run | s per θ-update | θ-updates/s vs fp32 | reward (last 8 iterations) | KL (last 8) | θ values | Adam state | peak RSS MB |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for name, row in table.items():
    adam = f"{2 * row['values'] * 4 / 2**20:.2f} MiB ({row['values'] / base['values']:.1%})" if row["values"] else "—"
    print(f"| {name} | {row['sec']:.3f} | {base['sec'] / row['sec']:.2f}× | {spread(row['reward'])} | "
          f"{spread(row['kl'])} | {row['values'] or '—'} | {adam} | {row['rss']:.0f} |")
best = min((n for n in runs if n.startswith(("fp32", "bf16"))), key=lambda n: table[n]["sec"])
print(f"\nidtune at its best full-weight setting ({best}) vs reference_tune.py (fp32): "
      f"{table['python']['sec'] / table[best]['sec']:.2f}× per θ-update")
PY
