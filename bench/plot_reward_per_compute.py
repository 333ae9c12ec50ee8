#!/usr/bin/python3
"""Table + plot of bench/reward_per_compute.sh's runs (issue 7, item 1).

    /usr/bin/python3 bench/plot_reward_per_compute.py runs/bench/reward_per_compute \
        --steps 16 --batch 8 [--png docs/benchmarks/reward_per_compute.png]

Reads <dir>/<method>/metrics.jsonl (one line per outer iteration of `idtune tune`) and
<dir>/<method>/eval.json (`idtune eval` of the tuned model). Compute is counted three ways:

* sample-steps: per-image model evaluations of sampling. Every method samples K·B of them
  per outer iteration (idtune's IterationReport.sample_steps); Implicit Diffusion's warm start
  (Algorithm 3: filling the queue with θ₀) adds K·B·(M−1)/2 before the first update and is
  counted here. The gradient's backward work is NOT counted: the adjoint (implicit, nested)
  and DRaFT's backprop run K VJPs per update through θ's model (+ K input-only VJPs through
  the reference, β > 0), DRaFT-K one (+ one); wall time counts everything.
* model calls: sequential batched model evaluations of sampling (what parallel hardware
  pays for): K/M per update for the queue (one call of M·B samples per step), K for the
  others; the warm start adds (M−1)·K/M.
* wall time: the sum of Trainer::step() seconds (K·B / sample_steps_per_s).
"""
import argparse
import json
import os
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

WINDOW = 4  # moving average of the per-iteration batch reward


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def moving_average(values, window=WINDOW):
    return [statistics.fmean(values[max(0, i - window + 1):i + 1]) for i in range(len(values))]


def slots(name, K):
    if name.startswith("implicit_M"):
        return int(name[len("implicit_M"):])
    return 1


def curves(directory, name, K, B):
    rows = read_jsonl(os.path.join(directory, name, "metrics.jsonl"))
    M = slots(name, K)
    queue = name.startswith("implicit")
    warm_steps = K * B * (M - 1) // 2 if queue else 0
    warm_calls = (M - 1) * K // M if queue else 0
    calls_per_update = K // M if queue else K
    seconds = [K * B / r["sample_steps_per_s"] for r in rows]
    wall, total = [], 0.0
    for s in seconds:
        total += s
        wall.append(total)
    n = range(1, len(rows) + 1)
    return {
        "M": M,
        "updates": sum(r["updated"] for r in rows),
        "steps": [warm_steps + i * K * B for i in n],
        "calls": [warm_calls + i * calls_per_update for i in n],
        "wall": wall,
        "seconds": seconds,
        "reward": moving_average([r["reward_mean"] for r in rows]),
        "kl": moving_average([r["kl"] for r in rows]),
        "raw_reward": [r["reward_mean"] for r in rows],
        "eval": json.load(open(os.path.join(directory, name, "eval.json"))),
    }


def first_reaching(c, target):
    for i, r in enumerate(c["reward"]):
        if r >= target:
            return i
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--png", default=None)
    args = parser.parse_args()
    K, B = args.steps, args.batch
    names = [n for n in (f"implicit_M{K}", "implicit_M4", "nested", "draft", "draft-k1")
             if os.path.isfile(os.path.join(args.directory, n, "metrics.jsonl"))]
    data = {n: curves(args.directory, n, K, B) for n in names}

    # "Comparable reward": 80 % of the way from the untuned reward (mean first-iteration batch
    # reward over methods) to the nested loop's final (moving-average) batch reward.
    r0 = statistics.fmean(d["raw_reward"][0] for d in data.values())
    r_nested = data["nested"]["reward"][-1]
    target = r0 + 0.8 * (r_nested - r0)

    print(f"K = {K}, B = {B}; batch reward: moving average over {WINDOW} iterations; "
          f"target reward {target:.4f} = r0 + 0.8 (nested final - r0), r0 = {r0:.4f}")
    print(f"{'method':12s} {'M':>3s} {'upd':>4s} {'samp-steps':>10s} {'calls':>6s} "
          f"{'wall s':>7s} {'s/upd':>6s} {'reward':>7s} {'KL':>7s} {'eval R':>7s} "
          f"{'eval KL':>8s} | {'to target: steps':>16s} {'calls':>6s} {'wall s':>7s}")
    reached = {}
    for n, d in data.items():
        e = d["eval"]
        i = first_reaching(d, target)
        reached[n] = i
        to = (f"{d['steps'][i]:16d} {d['calls'][i]:6d} {d['wall'][i]:7.1f}" if i is not None
              else f"{'not reached':>16s} {'-':>6s} {'-':>7s}")
        print(f"{n:12s} {d['M']:3d} {d['updates']:4d} {d['steps'][-1]:10d} {d['calls'][-1]:6d} "
              f"{d['wall'][-1]:7.1f} {statistics.median(d['seconds'][2:]):6.2f} "
              f"{d['reward'][-1]:7.4f} {d['kl'][-1]:7.3f} {e['reward_mean']:7.4f} "
              f"{e.get('path_kl', float('nan')):8.3f} | {to}")
    base = data["nested"]
    print(f"untuned model (eval): reward {base['eval']['reference_reward_mean']:.4f}")
    print()
    print("ratios nested / method to the target reward (> 1: the method needs less)")
    for n in names:
        if n == "nested" or reached[n] is None or reached["nested"] is None:
            continue
        i, j = reached["nested"], reached[n]
        d = data[n]
        print(f"  {n:12s} sample-steps {base['steps'][i] / d['steps'][j]:6.3f}   "
              f"model calls {base['calls'][i] / d['calls'][j]:6.3f}   "
              f"wall time {base['wall'][i] / d['wall'][j]:6.3f}")

    if args.png:
        fig, axes = plt.subplots(2, 2, figsize=(10, 7))
        for n, d in data.items():
            for ax, x in ((axes[0, 0], "steps"), (axes[0, 1], "calls"), (axes[1, 0], "wall")):
                (line,) = ax.plot(d[x], d["reward"], label=n)
                ax.plot([d[x][-1]], [d["eval"]["reward_mean"]], "o", color=line.get_color())
            axes[1, 1].plot(d["steps"], d["kl"], label=n)
        for ax in axes[0, 0], axes[0, 1], axes[1, 0]:
            ax.axhline(target, color="grey", lw=0.8, ls="--")
            ax.set_ylabel(f"batch reward (moving avg {WINDOW}); dot: eval")
        axes[0, 0].set_xlabel("sample-steps (per-image model evaluations of sampling)")
        axes[0, 1].set_xlabel("sequential batched model calls of sampling")
        axes[0, 1].set_xscale("log")
        axes[1, 0].set_xlabel("wall time, s (1 thread)")
        axes[1, 1].set_xlabel("sample-steps")
        axes[1, 1].set_ylabel("path KL to the base model (moving avg)")
        axes[0, 0].legend(fontsize=8)
        fig.suptitle(f"brightness reward, fashion_unet, ddpm K={K}, B={B}, lambda=1, beta=0.02, "
                     f"Adam lr 5e-5", fontsize=10)
        fig.tight_layout()
        os.makedirs(os.path.dirname(args.png) or ".", exist_ok=True)
        fig.savefig(args.png, dpi=72)
        print(f"\nwrote {args.png} ({os.path.getsize(args.png) // 1024} KiB)")


if __name__ == "__main__":
    main()
