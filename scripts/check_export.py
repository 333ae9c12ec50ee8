#!/usr/bin/python3
"""Checks an idtune export from Python: the tuned TorchScript loads with torch.jit.load, keeps
the forward(x, t) signature, and, sampled here with an independent Python implementation of
the same sampler, its reward moved as the C++ run reported.

    /usr/bin/python3 scripts/check_export.py --tuned run/tuned.pt --base base.pt \
        --reward brightness --steps 64 [--expected-reward R --expected-base-reward R0]

Exit status 0 and a line "export OK" when every check passes.
"""
import argparse
import json
import math
import os
import sys

import torch

# Samples of the C++ and Python runs use different noise: a reported mean must lie within this
# many standard errors of the Python estimate.
STANDARD_ERRORS = 5.0


def alpha_bar(schedule, t):
    kind = schedule["kind"]
    if kind == "ou":
        return torch.exp(-2 * t)
    if kind == "vp-linear":
        lo, hi = schedule.get("beta_min", 0.1), schedule.get("beta_max", 20.0)
        return torch.exp(-lo * t - 0.5 * (hi - lo) * t * t)
    if kind == "cosine":
        s = schedule.get("cosine_s", 0.008)
        f = lambda u: torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        return f(t) / f(torch.zeros_like(t))
    raise SystemExit(f"check_export.py: schedule {kind} is not supported here (continuous only)")


def beta(schedule, t):
    """beta(t) = -d/dt log alpha_bar(t), by autograd (an independent route from the C++)."""
    with torch.enable_grad():
        t = t.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(-torch.log(alpha_bar(schedule, t)).sum(), t)
    return g.detach()


def score(model, card, x, t):
    out = model(x, t)
    sigma = torch.sqrt(1 - alpha_bar(card["schedule"], t)).view(-1, 1, 1, 1)
    alpha = torch.sqrt(alpha_bar(card["schedule"], t)).view(-1, 1, 1, 1)
    prediction = card.get("prediction", "score")
    if prediction == "score":
        return out
    if prediction == "epsilon":
        return -out / sigma
    return -(alpha * out + sigma * x) / sigma


def sample(model, card, n, steps, t_min, seed, spacing):
    """Euler-Maruyama on the reverse SDE dY = (beta/2 y + beta s) dt + sqrt(beta) dB."""
    torch.manual_seed(seed)
    schedule = card["schedule"]
    t_max = schedule.get("t_max", 1.0)
    y = torch.randn(n, *card["shape"])
    u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    grid = t_min + (t_max - t_min) * (u if spacing == "uniform" else u * u)
    with torch.no_grad():
        for k in range(steps):
            h = float(grid[k] - grid[k + 1])
            t = torch.full((n,), float(grid[k]))
            b = beta(schedule, t).view(-1, 1, 1, 1)
            y = y + h * (0.5 * b * y + b * score(model, card, y, t)) + torch.sqrt(h * b) * torch.randn_like(y)
    return y


def reward(spec, card, x):
    lo, hi = card.get("data_range", [-1.0, 1.0])
    u = (x - lo) / (hi - lo)
    if spec == "brightness":
        return u.flatten(1).mean(1)
    if spec.startswith("channel-mean:"):
        return u[:, int(spec.split(":")[1])].flatten(1).mean(1)
    if spec == "red":
        return u[:, 0].flatten(1).mean(1) - u[:, 1:].flatten(1).mean(1)
    raise SystemExit(f"check_export.py: reward {spec} is not supported here")


def load(path):
    model = torch.jit.load(path)
    model.eval()
    with open(os.path.splitext(path)[0] + ".json") as f:
        return model, json.load(f)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tuned", required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--reward", default="brightness")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--t-min", type=float, default=1e-3)
    p.add_argument("--spacing", choices=["uniform", "quadratic"], default="uniform")
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--expected-reward", type=float)
    p.add_argument("--expected-base-reward", type=float)
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    tuned, card = load(args.tuned)
    base, base_card = load(args.base)
    failures = []
    if "tuned_by" not in card.get("provenance", {}):
        failures.append("the tuned card has no provenance.tuned_by")
    x = torch.randn(2, *card["shape"])
    if tuple(tuned(x, torch.rand(2)).shape) != tuple(x.shape):
        failures.append("tuned forward(x, t) does not return x's shape")

    r_tuned = reward(args.reward, card, sample(tuned, card, args.n, args.steps, args.t_min, args.seed, args.spacing))
    r_base = reward(args.reward, base_card, sample(base, base_card, args.n, args.steps, args.t_min, args.seed, args.spacing))
    se_tuned, se_base = (r.std().item() / math.sqrt(args.n) for r in (r_tuned, r_base))
    print(f"python: reward tuned {r_tuned.mean():.4f} ± {se_tuned:.4f}, base {r_base.mean():.4f} ± {se_base:.4f}")
    for name, got, se, expected in (("tuned", r_tuned.mean().item(), se_tuned, args.expected_reward),
                                    ("base", r_base.mean().item(), se_base, args.expected_base_reward)):
        # Both sides are estimates of the same mean from n samples: allow for both errors.
        if expected is not None and abs(got - expected) > STANDARD_ERRORS * math.sqrt(2) * se:
            failures.append(f"{name} reward {got:.4f} (Python) vs {expected:.4f} (C++): more than "
                            f"{STANDARD_ERRORS} standard errors apart")
    if args.expected_reward is not None and args.expected_base_reward is not None:
        moved_cpp = args.expected_reward - args.expected_base_reward
        moved_py = (r_tuned.mean() - r_base.mean()).item()
        if moved_cpp * moved_py <= 0:
            failures.append(f"the reward moved by {moved_py:+.4f} in Python but {moved_cpp:+.4f} in C++")
    if failures:
        print("export FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"export OK: '{args.tuned}' loads in Python and its reward moved as reported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
