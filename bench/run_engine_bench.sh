#!/usr/bin/env bash
# Engine benchmark (docs/benchmarks.md, "Engine"): one command for both questions.
#   1. cost of a tuned sample-step over the sum of its parts (one bench_engine run each for
#      the default glibc allocator and with the heap retained);
#   2. peak RSS of the adjoint vs autograd through the sampler at K = 16, 64, 256, one
#      process per (method, K) since a process's peak RSS only ever grows.
# Build first: cmake --build build -j2 --target bench_engine
# Environment: BENCH_ENGINE (the binary, default build/bench_engine), BENCH_STEPS (the K
# list, default "16 64 256"). About 2 minutes on 2 cores; autograd at K = 256 needs ~18 GB.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${BENCH_ENGINE:-$root/build/bench_engine}
read -r -a steps <<<"${BENCH_STEPS:-16 64 256}"
if [[ ! -x $bin ]]; then
  echo "run_engine_bench.sh: $bin not found; build it: cmake --build build -j2 --target bench_engine" >&2
  exit 1
fi

# Timings are only as good as the machine is quiet: say how busy it was.
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo

echo "== 1. Tuned sample-step vs the sum of its parts"
"$bin" --timing
echo
echo "== 1b. Same, with glibc's heap retained between steps (no page faults)"
"$bin" --timing --retain-heap
echo

# A key's value in bench_engine's "key=value ..." memory line.
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

# Autograd grows by ~70 MB per step: cap each run's address space below the memory
# available now, so that a run too big fails on its own instead of waking the OOM killer.
avail_kib=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
cap_kib=$((avail_kib - 2 * 1024 * 1024))

echo "== 2. Peak RSS of one gradient: adjoint vs autograd through the sampler"
echo "   (tiny U-Net 1x28x28 width 32, float32, sde-euler, batch 64, beta = 0; MiB; heap retained"
echo "    as the idtune CLI runs (idtune::retain_freed_memory);"
echo "    'before' = RSS after model load + one warm-up step; address space capped at $((cap_kib / 1024)) MiB)"
printf '%-9s %5s %11s %10s %10s %8s %13s\n' method K "RSS before" "peak RSS" increase seconds "|grad|"
declare -A peak
for k in "${steps[@]}"; do
  for method in adjoint autograd; do
    if line=$( (ulimit -v "$cap_kib"; "$bin" --memory "$method" --steps "$k" --retain-heap) 2>&1 ); then
      peak[$method,$k]=$(field "$line" peak_mib)
      printf '%-9s %5s %11s %10s %10s %8s %13s\n' "$method" "$k" "$(field "$line" rss_before_mib)" \
        "${peak[$method,$k]}" "$(field "$line" increase_mib)" "$(field "$line" seconds)" \
        "$(field "$line" grad_norm)"
    else
      printf '%-9s %5s   failed (over the %d MiB cap?): %s\n' "$method" "$k" $((cap_kib / 1024)) \
        "$(tail -n1 <<<"$line")"
    fi
  done
done

# Peak RSS at the largest K over the smallest, per method.
ratio() {
  local a=${peak[$1,${steps[-1]}]:-} b=${peak[$1,${steps[0]}]:-}
  [[ -n $a && -n $b ]] && awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", a / b}' || echo "n/a"
}
echo
printf 'peak RSS K=%s / K=%s: adjoint %s (target <= 1.25), autograd %s\n' \
  "${steps[-1]}" "${steps[0]}" "$(ratio adjoint)" "$(ratio autograd)"
