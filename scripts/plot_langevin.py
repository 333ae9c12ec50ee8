#!/usr/bin/python3
"""Figures and the results table of docs/langevin.md from the runs of bench/langevin_hexagon.sh.

The hexagon experiment (paper §5.1, App. C.1.1, Fig. 6 and 11): mean reward and the
log-likelihood of the particles under π*(θ₀), mean over seeds with min/max bands, against outer
steps and against sampling steps (gradient evaluations); the mixture weights of Implicit
Diffusion; the final particles. The from-scratch runs (App. C.1.2): distance of θ to the target.

    /usr/bin/python3 scripts/plot_langevin.py --runs runs/langevin --docs docs

Writes docs/langevin/*.png and replaces the part of docs/langevin.md between the markers
<!-- results:begin --> and <!-- results:end -->.
"""

import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# Method directory, legend label, colour (the order of the paper's Fig. 6 list).
METHODS = [
    ("langevin", "Langevin θ₀ (no reward)", "tab:gray"),
    ("implicit", "Implicit Diffusion", "tab:red"),
    ("nested10", "nested loop, T = 10", "tab:blue"),
    ("nested100", "nested loop, T = 100", "tab:cyan"),
    ("unrolled", "unrolled last step", "tab:green"),
    ("guidance", "guidance V − R_smooth", "tab:purple"),
    ("post-implicit", "Langevin θ_ID (post)", "tab:orange"),
]
VARIANTS = [("code", "θ₀ = (1.5, 0, 1.5, 0, 1.5, 0) (public code)"),
            ("text", "θ₀ = (1, 0, 1, 0, 1, 0) (paper's text)")]


def read_metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def load_method(directory):
    """{key: array [seeds, steps]} for one method (runs of equal length)."""
    runs = sorted(p for p in directory.iterdir() if (p / "theta.json").exists())  # finished
    metrics = [read_metrics(r / "metrics.jsonl") for r in runs]
    keys = ["step", "sampling_steps", "reward_mean", "log_likelihood_ref"]
    out = {k: np.array([[line[k] for line in m] for m in metrics], dtype=float) for k in keys}
    out["weights"] = np.array([[line["weights"] for line in m] for m in metrics], dtype=float)
    out["seeds"] = len(runs)
    return out


def band(ax, x, values, label, colour):
    ax.plot(x, values.mean(0), color=colour, label=label, lw=1.2)
    ax.fill_between(x, values.min(0), values.max(0), color=colour, alpha=0.2, lw=0)


def plot_curves(data, variant, title, x_key, xlabel, file):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, label, colour in METHODS:
        if name not in data:
            continue
        d = data[name]
        x = d[x_key][0] + 1 if x_key == "step" else d[x_key][0]
        band(axes[0], x, d["reward_mean"], label, colour)
        band(axes[1], x, d["log_likelihood_ref"], label, colour)
    axes[0].set_ylabel("mean reward E[R(X)]")
    axes[1].set_ylabel("mean log-likelihood under π*(θ₀)")
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"hexagon, {title}: mean over {data['implicit']['seeds']} seeds, min/max bands",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(file, dpi=80)
    plt.close(fig)


def plot_weights(data, title, file):
    d = data["implicit"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    x = d["step"][0] + 1
    for i in range(d["weights"].shape[2]):
        band(ax, x, d["weights"][:, :, i], f"well {i} ({60 * i}°)", f"C{i}")
    ax.set_xscale("log")
    ax.set_xlabel("outer step")
    ax.set_ylabel("softmax(θ)")
    ax.set_title(f"Implicit Diffusion's mixture weights, {title}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(file, dpi=80)
    plt.close(fig)


def plot_particles(runs, variant, title, file):
    fig, axes = plt.subplots(1, len(METHODS), figsize=(2.3 * len(METHODS), 2.6))
    for ax, (name, label, colour) in zip(axes, METHODS):
        path = runs / f"hexagon-{variant}" / name / "0" / "particles.csv"
        if path.exists():
            x = np.loadtxt(path, delimiter=",")
            ax.scatter(x[:, 0], x[:, 1], s=1, color=colour)
        ax.add_patch(plt.Circle((4, 3.8), np.sqrt(20), fill=False, ls=":", color="k"))
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlim(-7, 7)
        ax.set_ylim(-7, 7)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label, fontsize=7)
    fig.suptitle(f"final particles (seed 0), {title}; dotted: reward's scale around (4, 3.8)",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(file, dpi=70)
    plt.close(fig)


def final_table(data):
    rows = ["| method | outer steps | sampling steps | mean reward | log-lik. under π*(θ₀) | "
            "weights softmax(θ) (mean over seeds) |",
            "| --- | ---: | ---: | --- | --- | --- |"]
    for name, label, _ in METHODS:
        if name not in data:
            continue
        d = data[name]
        r, ll = d["reward_mean"][:, -1], d["log_likelihood_ref"][:, -1]
        w = d["weights"][:, -1].mean(0)
        rows.append(
            f"| {label} | {int(d['step'][0, -1]) + 1} | {int(d['sampling_steps'][0, -1])} | "
            f"{r.mean():.3f} [{r.min():.3f}, {r.max():.3f}] | "
            f"{ll.mean():.2f} [{ll.min():.2f}, {ll.max():.2f}] | "
            f"({', '.join(f'{v:.3f}' for v in w)}) |")
    return "\n".join(rows)


def scratch(runs, out):
    """Distance of θ to the target over steps, both from-scratch variants."""
    parts = [("scratch-weights", "7 wells, weights only"),
             ("scratch-full", "2 components, weights + means + covariances")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    lines = []
    for ax, (name, title) in zip(axes, parts):
        directory = runs / name
        if not directory.exists():
            continue
        metrics = [read_metrics(p / "metrics.jsonl") for p in sorted(directory.iterdir())
                   if (p / "theta.json").exists()]
        if not metrics:
            continue
        dist = np.array([[m["target_distance"] for m in run] for run in metrics])
        x = np.arange(1, dist.shape[1] + 1)
        band(ax, x, dist, "Implicit Diffusion (KL to the target)", "tab:red")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("outer step")
        ax.set_ylabel("‖canonical(θ) − canonical(θ*)‖")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        final = metrics[0][-1]
        lines.append(f"| {title} | {len(metrics)} | {dist[:, 0].mean():.3f} | "
                     f"{dist[:, -1].mean():.3f} [{dist[:, -1].min():.3f}, {dist[:, -1].max():.3f}] "
                     f"| ({', '.join(f'{v:.3f}' for v in final['weights'])}) |")
    fig.tight_layout()
    fig.savefig(out / "scratch.png", dpi=80)
    plt.close(fig)
    header = ["| run | seeds | distance at start | final distance [min, max] | "
              "final weights (seed 0) |", "| --- | ---: | ---: | --- | --- |"]
    return "\n".join(header + lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/langevin", type=pathlib.Path)
    parser.add_argument("--docs", default="docs", type=pathlib.Path)
    args = parser.parse_args()
    out = args.docs / "langevin"
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    for variant, title in VARIANTS:
        base = args.runs / f"hexagon-{variant}"
        if not base.exists():
            continue
        data = {name: load_method(base / name) for name, _, _ in METHODS if (base / name).exists()}
        plot_curves(data, variant, title, "step", "outer step", out / f"hexagon_{variant}_steps.png")
        plot_curves(data, variant, title, "sampling_steps",
                    "sampling steps (gradient evaluations ∇ₓV)", out / f"hexagon_{variant}_evals.png")
        plot_weights(data, title, out / f"hexagon_{variant}_weights.png")
        plot_particles(args.runs, variant, title, out / f"hexagon_{variant}_particles.png")
        sections.append(f"#### {title}\n\nFinal values (last step; mean over seeds, [min, max]):\n\n"
                        + final_table(data))
    sections.append("#### From scratch (App. C.1.2)\n\n" + scratch(args.runs, out))
    doc = args.docs / "langevin.md"
    text = doc.read_text()
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    doc.write_text(head + begin + "\n\n" + "\n\n".join(sections) + "\n\n" + end + tail)
    print(f"wrote {out}/*.png and the results in {doc}")


if __name__ == "__main__":
    main()
