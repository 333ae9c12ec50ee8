#!/usr/bin/python3
"""Plain-PyTorch reference of `idtune tune`'s queued Implicit Diffusion iteration (bench item 4).

    /usr/bin/python3 scripts/reference_tune.py --config configs/fashion_brightness.json \
        [--set key=value ...] [--threads N] [--out runs/bench/py/metrics.jsonl] [--check-adjoint]

The same algorithm as `idtune tune` with `algorithm.method` implicit (M = queue_slots) or nested
(M = 1), `gradient` adjoint, written the way a PyTorch user would write it:

* the model file is loaded with torch.jit.load (twice: θ, tuned; θ_ref, frozen for the KL);
* the sampler is the Gaussian chain Y_{k+1} = a_k Y_k + b_k s(Y_k, τ_k) + σ_k ξ_k of the config's
  sampler (ddpm or sde-euler on the model card's continuous schedule, uniform or quadratic
  spacing), the table computed in float64 as src/diffusion/sampler.cpp does; ε-prediction: s = −ε/σ(τ);
* a queue of M slots, each a [K+1, B, C, H, W] path; one outer iteration advances every slot
  K/M steps with ONE model call of M·B samples per step (under torch.no_grad), pops the slot
  that completed K steps, computes its gradient, takes an Adam step and pushes a fresh N(0, I)
  slot (warm start, the paper's Algorithm 3: the queue is filled with θ₀ first);
* the gradient is the discrete adjoint of spec §4: a_K = λ ∇R(Y_K); for k = K−1 … 0 one
  torch.autograd.grad of L_k = ⟨a_{k+1}, m_k(Y_k; θ)⟩ − β c_k(Y_k; θ) for (Y_k, θ), with
  c_k = ‖m_k(Y_k; θ) − m_k(Y_k; θ_ref)‖² / 2σ_k² (the reference's graph is input-only since its
  parameters do not require grad); G = Σ_k ∇_θ L_k / B is the ascent direction of
  E[λR − β KL];
* torch.optim.Adam on −G with the config's lr, betas, eps, weight decay, after
  torch.nn.utils.clip_grad_norm_ (clip_grad_norm; 0 = off).

Differences from idtune that are not the algorithm: the noise comes from one torch.Generator
(seeded by `seed`), not idtune's per-(slot, step) streams, so runs are not bit-identical; no
checkpoints, images or export. One line per iteration goes to --out (JSON: step, reward_mean,
reward_std, kl, loss, grad_norm, step_seconds) and to stdout every log_every iterations.
"""
import argparse
import collections
import json
import math
import os
import sys
import time

import torch


def fail(message):
    sys.exit(f"reference_tune.py: {message}")


# ---------------------------------------------------------------- configuration


def apply_set(config, assignment):
    """--set a.b=value, the value parsed as JSON when it is valid JSON (as idtune does)."""
    if "=" not in assignment:
        fail(f"--set '{assignment}': expected key=value")
    key, text = assignment.split("=", 1)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def load_config(path, assignments):
    with open(path) as f:
        config = json.load(f)
    for a in assignments:
        apply_set(config, a)
    algorithm = config.get("algorithm", {})
    method = algorithm.get("method", "implicit")
    if method not in ("implicit", "nested"):
        fail(f"algorithm.method '{method}': only implicit and nested are implemented here")
    if algorithm.get("gradient", "adjoint") != "adjoint":
        fail("algorithm.gradient: only the full adjoint is implemented here")
    if not algorithm.get("warm_start", True):
        fail("algorithm.warm_start = false is not implemented here")
    if config.get("reward", "brightness") != "brightness":
        fail("reward: only 'brightness' is implemented here")
    return config


# ---------------------------------------------------------------- schedule and sampler table


def alpha_bar(card, t):
    """ᾱ(t) of the model card's continuous schedule (spec §2)."""
    s = card["schedule"]
    if s["kind"] == "ou":
        return math.exp(-2 * t)
    if s["kind"] == "vp-linear":
        b0, b1 = s.get("beta_min", 0.1), s.get("beta_max", 20.0)
        return math.exp(-b0 * t - 0.5 * (b1 - b0) * t * t)
    fail(f"schedule '{s['kind']}' is not implemented here")


def beta_of(card, t):
    s = card["schedule"]
    if s["kind"] == "ou":
        return 2.0
    b0, b1 = s.get("beta_min", 0.1), s.get("beta_max", 20.0)
    return b0 + (b1 - b0) * t


def chain_table(card, sampler):
    """(τ_k, a_k, b_k, σ_k) for k < K, in float64 as src/diffusion/sampler.cpp computes them."""
    K, t_min = sampler.get("steps", 100), sampler.get("t_min", 1e-3)
    t_max = card["schedule"]["t_max"]
    quadratic = sampler.get("spacing", "uniform") == "quadratic"
    grid = [t_min + (t_max - t_min) * ((1 - k / K) ** 2 if quadratic else 1 - k / K)
            for k in range(K + 1)]
    rows = []
    for k in range(K):
        tau, h = grid[k], grid[k] - grid[k + 1]
        kind = sampler.get("kind", "sde-euler")
        if kind == "ddpm":  # m = (y + b s)/√(1−b), σ² = b(1−ᾱ')/(1−ᾱ) (posterior)
            abar, abar_next = alpha_bar(card, tau), alpha_bar(card, grid[k + 1])
            b = 1 - abar / abar_next
            var = b if sampler.get("ddpm_variance", "posterior") == "beta" else \
                b * (1 - abar_next) / (1 - abar)
            rows.append((tau, 1 / math.sqrt(1 - b), b / math.sqrt(1 - b), math.sqrt(var)))
        elif kind == "sde-euler":  # m = y + h(½β y + β s), σ = √(hβ)
            beta = beta_of(card, tau)
            rows.append((tau, 1 + 0.5 * h * beta, h * beta, math.sqrt(h * beta)))
        else:
            fail(f"sampler.kind '{kind}' is not implemented here")
    return [torch.tensor(column, dtype=torch.float64).float() for column in zip(*rows)]


class Chain:
    """The sampler as a Gaussian chain over a score model (ε-prediction converted to a score)."""

    def __init__(self, card, sampler):
        self.tau, self.a, self.b, self.sigma = chain_table(card, sampler)
        self.K = len(self.tau)
        if card["prediction"] != "epsilon" or card.get("time_input", "continuous") != "continuous":
            fail("only epsilon-prediction models with continuous time are implemented here")
        # σ(τ_k) = √(1 − ᾱ(τ_k)), for ε → score
        self.sigma_t = torch.tensor([math.sqrt(1 - alpha_bar(card, float(t))) for t in
                                     chain_table(card, sampler)[0].double()]).float()

    def mean(self, model, y, k):
        """m_k(y) for a batch whose samples sit at steps k (a LongTensor [N])."""
        score = -model(y, self.tau[k]) / self.sigma_t[k].view(-1, 1, 1, 1)  # s = −ε/σ(τ)
        return self.a[k].view(-1, 1, 1, 1) * y + self.b[k].view(-1, 1, 1, 1) * score


# ---------------------------------------------------------------- queue, adjoint, trainer


class Slot:
    def __init__(self, y0, K):
        self.path = torch.empty((K + 1,) + tuple(y0.shape))
        self.path[0] = y0
        self.done = 0  # sampling steps completed


class ReferenceTuner:
    def __init__(self, config):
        self.config = config
        model_path = config["model"]
        card_path = os.path.splitext(model_path)[0] + ".json"
        with open(card_path) as f:
            self.card = json.load(f)
        self.model = torch.jit.load(model_path).eval()  # θ
        self.reference = torch.jit.load(model_path).eval()  # θ_ref, frozen
        for p in self.reference.parameters():
            p.requires_grad_(False)
        self.params = [p for p in self.model.parameters() if p.is_floating_point()]
        for p in self.params:
            p.requires_grad_(True)
        self.chain = Chain(self.card, config.get("sampler", {}))
        algorithm = config.get("algorithm", {})
        self.M = 1 if algorithm.get("method", "implicit") == "nested" else \
            algorithm.get("queue_slots", 4)
        if self.chain.K % self.M:
            fail(f"queue_slots = {self.M} must divide K = {self.chain.K}")
        self.B = config.get("batch", 16)
        objective = config.get("objective", {})
        self.lam, self.beta = objective.get("lambda", 1.0), objective.get("beta", 0.0)
        o = config.get("optimiser", {})
        self.clip = o.get("clip_grad_norm", 0.0)
        self.optimiser = torch.optim.Adam(self.params, lr=o.get("lr", 1e-4),
                                          betas=tuple(o.get("betas", [0.9, 0.999])),
                                          eps=o.get("eps", 1e-8),
                                          weight_decay=o.get("weight_decay", 0.0))
        self.generator = torch.Generator().manual_seed(config.get("seed", 0))
        self.shape = (self.B,) + tuple(self.card["shape"])
        lo, hi = self.card["data_range"]
        self.reward = lambda x: ((x - lo) / (hi - lo)).mean((1, 2, 3))  # brightness
        self.queue = collections.deque()

    def noise(self):
        return torch.randn(self.shape, generator=self.generator)

    def push_fresh(self):
        self.queue.append(Slot(self.noise(), self.chain.K))

    @torch.no_grad()
    def advance(self):
        """Every slot advances K/M steps, the whole queue in one model call per step."""
        for _ in range(self.chain.K // self.M):
            y = torch.cat([s.path[s.done] for s in self.queue])
            k = torch.cat([torch.full((self.B,), s.done, dtype=torch.long) for s in self.queue])
            xi = torch.cat([self.noise() for _ in self.queue])
            y_next = self.chain.mean(self.model, y, k) + self.chain.sigma[k].view(-1, 1, 1, 1) * xi
            for s, y_s in zip(self.queue, y_next.split(self.B)):
                s.done += 1
                s.path[s.done] = y_s

    def warm_start(self):  # Algorithm 3: fill the queue with θ₀
        for _ in range(self.M - 1):
            self.push_fresh()
            self.advance()
        self.push_fresh()

    def adjoint(self, path):
        """Spec §4: exact gradient of E[λR(Y_K) − β Σ c_k] through the recorded path."""
        y_final = path[-1].clone().requires_grad_(True)
        reward = self.reward(y_final)
        (a,) = torch.autograd.grad(self.lam * reward.sum(), y_final)
        grad = [torch.zeros_like(p) for p in self.params]
        kl = torch.zeros(self.B)
        for k in range(self.chain.K - 1, -1, -1):
            y = path[k].detach().requires_grad_(True)
            index = torch.full((self.B,), k, dtype=torch.long)
            mean = self.chain.mean(self.model, y, index)
            lagrangian = (a * mean).sum()
            if self.beta > 0:
                mean_ref = self.chain.mean(self.reference, y, index)
                c = 0.5 * ((mean - mean_ref) / self.chain.sigma[k]).pow(2).flatten(1).sum(1)
                lagrangian = lagrangian - self.beta * c.sum()
                kl += c.detach()
            a, *g = torch.autograd.grad(lagrangian, [y] + self.params)
            for total, g_k in zip(grad, g):
                total.add_(g_k)
        return [g / self.B for g in grad], reward.detach(), kl

    def step(self):
        if not self.queue:
            self.warm_start()
        self.advance()  # 1. sampling
        completed = self.queue.popleft()  # 2. the completed slot's gradient, Adam on −G
        ascent, reward, kl = self.adjoint(completed.path)
        for p, g in zip(self.params, ascent):
            p.grad = -g
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip if self.clip > 0 else math.inf)
        self.optimiser.step()
        self.push_fresh()  # 3. a fresh slot enters
        r, c = reward.mean().item(), kl.mean().item()
        return {"reward_mean": r, "reward_std": reward.std().item(), "kl": c,
                "loss": -self.lam * r + self.beta * c, "grad_norm": norm.item()}


def check_adjoint(tuner):
    """The adjoint's gradient against autograd through the re-simulated chain (same Y_0, ξ).

    In float32: the shipped model builds its time embedding in float32, so it cannot run in
    float64; the tolerance is float32's."""
    c = tuner.chain
    with torch.no_grad():  # move θ off θ_ref so that the KL term has a gradient
        for p in tuner.params:
            p.add_(1e-3 * torch.randn_like(p))
    y0 = torch.randn((tuner.B,) + tuple(tuner.card["shape"]))
    xis = [torch.randn_like(y0) for _ in range(c.K)]
    y, kl, path = y0, 0, [y0]
    for k in range(c.K):  # unrolled, with the graph
        index = torch.full((tuner.B,), k, dtype=torch.long)
        mean = c.mean(tuner.model, y, index)
        if tuner.beta > 0:
            mean_ref = c.mean(tuner.reference, y, index)
            kl = kl + 0.5 * ((mean - mean_ref) / c.sigma[k]).pow(2).flatten(1).sum(1)
        y = mean + c.sigma[k] * xis[k]
        path.append(y.detach())
    objective = (tuner.lam * tuner.reward(y) - tuner.beta * kl).mean()
    autograd = torch.autograd.grad(objective, tuner.params)
    adjoint, _, _ = tuner.adjoint(torch.stack(path))
    num = max((a - b).abs().max().item() for a, b in zip(adjoint, autograd))
    den = max(b.abs().max().item() for b in autograd)
    print(f"adjoint vs autograd (float32, K={c.K}, B={tuner.B}, beta={tuner.beta}): "
          f"max |diff| / max |grad| = {num / den:.3e}")
    return num / den < 1e-4


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int,
                        default=int(os.environ.get("IDTUNE_NUM_THREADS", os.cpu_count())))
    parser.add_argument("--out", default=None, help="metrics JSONL (default: none)")
    parser.add_argument("--check-adjoint", action="store_true",
                        help="compare the adjoint with autograd through the chain, then exit")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config, args.set)
    tuner = ReferenceTuner(config)
    if args.check_adjoint:
        sys.exit(0 if check_adjoint(tuner) else 1)
    iterations = config.get("iterations", 100)
    log_every = config.get("output", {}).get("log_every", 10)
    out = open(args.out, "w") if args.out else None
    print(f"reference_tune.py: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"K={tuner.chain.K} M={tuner.M} B={tuner.B} lambda={tuner.lam} beta={tuner.beta}",
          flush=True)
    for i in range(iterations):
        t0 = time.perf_counter()
        row = tuner.step()
        row = {"step": i, **row, "step_seconds": time.perf_counter() - t0}
        if out:
            out.write(json.dumps(row) + "\n")
            out.flush()
        if log_every > 0 and ((i + 1) % log_every == 0 or i + 1 == iterations):
            print(f"[{i + 1:>6}/{iterations}] reward {row['reward_mean']:+.4f} ± "
                  f"{row['reward_std']:.4f}  KL {row['kl']:.4f}  |g| {row['grad_norm']:.3g}  "
                  f"{row['step_seconds']:.2f} s/update", flush=True)


if __name__ == "__main__":
    main()
