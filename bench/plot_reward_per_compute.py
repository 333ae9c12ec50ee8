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


def read_eval(path):
    """The JSON object `idtune eval` prints after its progress lines."""
    with open(path) as f:
        text = f.read()
    return json.loads(text[text.index("\n{") + 1 if not text.startswith("{") else 0:])


def read_evals(run_dir):
    """{iterations: eval} of the eval_<iterations>.json files of a run."""
    out = {}
    for f in os.listdir(run_dir):
        if f.startswith("eval_") and f.endswith(".json"):
            out[int(f[5:-5])] = read_eval(os.path.join(run_dir, f))
    return dict(sorted(out.items()))


def eval_curve(d):
    """(x, reward, kl) of θ's own evaluations, x in steps/calls/wall; iteration 0: untuned."""
    first = next(iter(d["evals"].values()))
    pts = {"steps": [d["steps"][0] - d["steps_per_update"]],
           "calls": [d["calls"][0] - d["calls_per_update"]], "wall": [0.0],
           "reward": [first["reference_reward_mean"]], "kl": [0.0], "iteration": [0]}
    for it, e in d["evals"].items():
        for x in ("steps", "calls", "wall"):
            pts[x].append(d[x][it - 1])
        pts["reward"].append(e["reward_mean"])
        pts["kl"].append(e.get("path_kl", float("nan")))
        pts["iteration"].append(it)
    return pts


def interpolate_reaching(pts, target):
    """x (steps, calls, wall) where the piecewise-linear eval reward first reaches target."""
    r = pts["reward"]
    for i in range(1, len(r)):
        if r[i] >= target > r[i - 1]:
            f = (target - r[i - 1]) / (r[i] - r[i - 1])
            return {x: pts[x][i - 1] + f * (pts[x][i] - pts[x][i - 1]) for x in ("steps", "calls", "wall")}
    return None


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
        "steps_per_update": K * B,
        "calls_per_update": calls_per_update,
        "updates": sum(r["updated"] for r in rows),
        "steps": [warm_steps + i * K * B for i in n],
        "calls": [warm_calls + i * calls_per_update for i in n],
        "wall": wall,
        "seconds": seconds,
        "reward": moving_average([r["reward_mean"] for r in rows]),
        "kl": moving_average([r["kl"] for r in rows]),
        "raw_reward": [r["reward_mean"] for r in rows],
        "evals": read_evals(os.path.join(directory, name)),
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

    for d in data.values():
        d["ev"] = eval_curve(d)

    # "Comparable reward": 80 % of the way from the untuned model's reward to the nested
    # loop's final one, both by idtune eval (fresh samples of θ; the same noise everywhere).
    r0 = data["nested"]["ev"]["reward"][0]
    r_nested = data["nested"]["ev"]["reward"][-1]
    target = r0 + 0.8 * (r_nested - r0)

    print(f"K = {K}, B = {B}; reward and KL of theta by idtune eval (n fresh samples, same noise "
          f"for all) after {', '.join(map(str, next(iter(data.values()))['evals']))} iterations")
    print()
    print(f"{'method':12s} {'M':>3s} {'upd':>4s} {'samp-steps':>10s} {'calls':>6s} "
          f"{'wall s':>7s} {'s/upd':>6s} {'batch R':>8s} {'batch KL':>8s} {'eval R':>7s} "
          f"{'eval KL':>8s}")
    for n, d in data.items():
        ev = d["ev"]
        print(f"{n:12s} {d['M']:3d} {d['updates']:4d} {d['steps'][-1]:10d} {d['calls'][-1]:6d} "
              f"{d['wall'][-1]:7.1f} {statistics.median(d['seconds'][2:]):6.2f} "
              f"{d['reward'][-1]:8.4f} {d['kl'][-1]:8.3f} {ev['reward'][-1]:7.4f} "
              f"{ev['kl'][-1]:8.3f}")
    print(f"(batch R, batch KL: the completed batches' mean over the last {WINDOW} iterations; "
          f"untuned model: eval reward {r0:.4f})")
    print()
    print("eval reward (path KL) of theta after n iterations")
    iters = next(iter(data.values()))["ev"]["iteration"][1:]
    print(f"{'method':12s} " + " ".join(f"{'n=' + str(i):>15s}" for i in iters))
    for n, d in data.items():
        ev = d["ev"]
        print(f"{n:12s} " + " ".join(f"{r:7.4f} ({c:5.2f})" for r, c in
                                     zip(ev["reward"][1:], ev["kl"][1:])))
    print()
    print(f"to the target eval reward {target:.4f} (= untuned + 0.8 (nested final - untuned); "
          "linear between evaluations)")
    print(f"{'method':12s} {'samp-steps':>10s} {'calls':>7s} {'wall s':>7s} | nested / method: "
          f"{'samp-steps':>10s} {'calls':>6s} {'wall':>6s}")
    reach = {n: interpolate_reaching(d["ev"], target) for n, d in data.items()}
    for n, x in reach.items():
        if x is None:
            print(f"{n:12s} {'not reached':>10s}")
            continue
        ratio = (" ".join(f"{reach['nested'][k] / x[k]:{w}.3f}" for k, w in
                          (("steps", 10), ("calls", 6), ("wall", 6))) if reach["nested"] else "")
        print(f"{n:12s} {x['steps']:10.0f} {x['calls']:7.1f} {x['wall']:7.1f} | "
              f"{'':16s} {ratio}")

    if args.png:
        fig, axes = plt.subplots(2, 2, figsize=(10, 7))
        for n, d in data.items():
            ev = d["ev"]
            for ax, x in ((axes[0, 0], "steps"), (axes[0, 1], "calls"), (axes[1, 0], "wall")):
                style = "o--" if n == "draft" else "o-"  # draft's θ equals nested's here
                (line,) = ax.plot(ev[x], ev["reward"], style, label=n, ms=4)
                ax.plot(d[x], d["reward"], ":", color=line.get_color(), lw=1)
            axes[1, 1].plot(ev["steps"], ev["kl"], "o--" if n == "draft" else "o-", label=n, ms=4)
        for ax in axes[0, 0], axes[0, 1], axes[1, 0]:
            ax.axhline(target, color="grey", lw=0.8, ls="--")
            ax.set_ylabel("reward (o-: eval of theta; dotted: batch)")
        axes[0, 0].set_xlabel("sample-steps (per-image model evaluations of sampling)")
        axes[0, 1].set_xlabel("sequential batched model calls of sampling")
        axes[0, 1].set_xscale("symlog", linthresh=10)
        axes[0, 1].set_xlim(left=0)
        axes[1, 0].set_xlabel("wall time, s (1 thread)")
        axes[1, 1].set_xlabel("sample-steps")
        axes[1, 1].set_ylabel("path KL to the base model (eval)")
        axes[0, 0].legend(fontsize=8)
        fig.suptitle(f"brightness reward, fashion_unet, ddpm K={K}, B={B}, lambda=1, beta=0.02, "
                     f"Adam lr 5e-5", fontsize=10)
        fig.tight_layout()
        os.makedirs(os.path.dirname(args.png) or ".", exist_ok=True)
        fig.savefig(args.png, dpi=72)
        print(f"\nwrote {args.png} ({os.path.getsize(args.png) // 1024} KiB)")


if __name__ == "__main__":
    main()
