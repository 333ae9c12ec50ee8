#!/usr/bin/python3
"""Plots a tuning run's reward and KL against iterations (metrics.jsonl -> PNG).

    /usr/bin/python3 scripts/plot_metrics.py runs/fashion_brightness [--out curves.png]

Reads <run_dir>/metrics.jsonl (one line per iteration, written by `idtune tune`) and writes
<run_dir>/curves.png: the mean reward of the batch completed at each iteration (with ± one
standard deviation of the batch, and a moving average) and the path KL to the pretrained model.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path):
    if not os.path.isfile(path):
        sys.exit(f"plot_metrics.py: '{path}' does not exist (is the argument a run directory?)")
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"plot_metrics.py: {path}:{number}: not JSON ({e})")
    if not rows:
        sys.exit(f"plot_metrics.py: '{path}' has no lines yet")
    return rows


def moving_average(values, window):
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", help="PNG to write (default <run_dir>/curves.png)")
    parser.add_argument("--window", type=int, default=10, help="moving-average window (iterations)")
    args = parser.parse_args()
    rows = read_metrics(os.path.join(args.run_dir, "metrics.jsonl"))
    steps = [r["step"] for r in rows]
    reward = [r["reward_mean"] for r in rows]
    spread = [r["reward_std"] for r in rows]
    kl = [float("nan") if r["kl"] is None else r["kl"] for r in rows]  # null: beta = 0

    fig, (ax_r, ax_kl) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_r.fill_between(steps, [m - s for m, s in zip(reward, spread)],
                      [m + s for m, s in zip(reward, spread)], alpha=0.15, color="C0", lw=0)
    ax_r.plot(steps, reward, color="C0", alpha=0.35, lw=1, label="batch mean")
    ax_r.plot(steps, moving_average(reward, args.window), color="C0", lw=2,
              label=f"moving average ({args.window})")
    ax_r.set_xlabel("iteration")
    ax_r.set_ylabel("reward")
    ax_r.set_title("reward of the completed batch")
    ax_r.legend(loc="best", fontsize=8)
    ax_kl.plot(steps, kl, color="C3", alpha=0.35, lw=1)
    ax_kl.plot(steps, moving_average(kl, args.window), color="C3", lw=2)
    ax_kl.set_xlabel("iteration")
    ax_kl.set_ylabel("KL (Girsanov, per sample)")
    ax_kl.set_title("KL to the pretrained model")
    for ax in (ax_r, ax_kl):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = args.out or os.path.join(args.run_dir, "curves.png")
    fig.savefig(out + ".tmp.png", dpi=100)
    os.replace(out + ".tmp.png", out)
    print(f"plot_metrics.py: wrote {out}")


if __name__ == "__main__":
    main()
