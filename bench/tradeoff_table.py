#!/usr/bin/python3
"""Table and figure of bench/fashion_tradeoff.sh: one row and one grid per β.

    /usr/bin/python3 bench/tradeoff_table.py runs/tradeoff docs/tradeoff 0.1 0.02 0.005
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    runs, out, betas = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.makedirs(out, exist_ok=True)
    rows = []
    for beta in betas:
        with open(os.path.join(runs, f"beta_{beta}", "eval.json")) as f:
            rows.append((beta, json.load(f)))
    with open(os.path.join(runs, "base_eval.json")) as f:
        base = json.load(f)
    lines = ["| λ | β | λ/β | brightness | path KL (± s.e.) | FD to pretrained | FD to test set |",
             "| --- | --- | --- | --- | --- | --- | --- |",
             f"| pretrained | | | {base['reward_mean']:.3f} | 0 | 0 | {base['fd_to_data']:.2f} |"]
    for beta, r in rows:
        lines.append(f"| 1 | {beta} | {1 / float(beta):.0f} | {r['reward_mean']:.3f} | "
                     f"{r['path_kl']:.2f} ± {r['path_kl_stderr']:.2f} | {r['fd_to_reference']:.2f} | "
                     f"{r['fd_to_data']:.2f} |")
    table = "\n".join(lines) + "\n"
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table)
    print(table)

    panels = [("pretrained", os.path.join(runs, f"beta_{betas[0]}", "samples", "before.png"))]
    panels += [(f"β = {beta} (λ/β = {1 / float(beta):.0f})",
                os.path.join(runs, f"beta_{beta}", "samples", "after.png")) for beta in betas]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.5))
    for ax, (title, path) in zip(axes, panels):
        ax.imshow(mpimg.imread(path), cmap="gray")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "grids.png"), dpi=90)
    print(f"wrote {out}/table.md and {out}/grids.png")


if __name__ == "__main__":
    main()
