#!/usr/bin/python3
"""Golden values for idtune's C++ tests, computed independently with plain PyTorch in float64.

    /usr/bin/python3 scripts/golden_values.py [--out tests/fixtures/golden]

Writes into the output directory:
  golden_values.json   sampler tables (tau_k, a_k, b_k, sigma_k) for every allowed sampler x
                       schedule pair, and one adjoint gradient of J = lambda R(Y_K) - beta sum_k c_k
                       computed by autograd through the unrolled chain;
  tiny_eps.pt/.json    the tuned tiny epsilon-prediction model theta (TorchScript + model card);
  tiny_eps_ref.pt/.json  the reference model theta_ref (the same net at its initial weights).

Every formula is derived from shared/spec/implicit-diffusion.md ("spec") and docs/engine.md
("engine"); only conventions (time grid, DDPM index rounding, noise keying) follow the C++.
Deterministic: running it twice gives byte-identical files. Single-threaded, a few seconds.
"""
import argparse
import json
import math
import pathlib

import torch

MASK64 = (1 << 64) - 1

# ---------------------------------------------------------------------------------------------
# Schedules (spec section 2 table; engine "Schedules")
# ---------------------------------------------------------------------------------------------

OU_1 = {"kind": "ou", "t_max": 1.0}
OU_3 = {"kind": "ou", "t_max": 3.0}
VP_LINEAR = {"kind": "vp-linear", "t_max": 1.0, "beta_min": 0.1, "beta_max": 20.0}
# cosine at t_max = 1 is singular (idtune refuses it): alpha_bar(1) = cos^2(pi/2) = 0 and
# beta(1) = inf, so row 0 of every sampler is infinite (in doubles: tan(fl(pi/2)) ~ 1.6e16, and
# DDPM's 1 - b rounds to 0). The tables use t_max = 0.99, where beta(0.99) ~ 200.
COSINE = {"kind": "cosine", "t_max": 0.99, "cosine_s": 0.008}
DDPM_LINEAR = {"kind": "ddpm-discrete", "beta_start": 0.0001, "beta_end": 0.02,
               "num_train_steps": 1000}
DDPM_LIST = {"kind": "ddpm-discrete",
             "betas": [0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.2]}
CONTINUOUS = [OU_1, OU_3, VP_LINEAR, COSINE]
DISCRETE = [DDPM_LINEAR, DDPM_LIST]


def is_discrete(schedule):
    return schedule["kind"] == "ddpm-discrete"


def discrete_alpha_bars(schedule):
    """alpha_bar_i = prod_{j<=i} (1 - b_j), b from the list or linear(start, end, N) (spec 2)."""
    if "betas" in schedule:
        betas = torch.tensor(schedule["betas"], dtype=torch.float64)
    else:
        betas = torch.linspace(schedule["beta_start"], schedule["beta_end"],
                               schedule["num_train_steps"], dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).tolist()


def t_max(schedule):
    """Continuous: the card's t_max; discrete: the last training index N - 1 (engine)."""
    if is_discrete(schedule):
        return float(len(discrete_alpha_bars(schedule)) - 1)
    return schedule["t_max"]


def alpha_bar(schedule, t):
    """The signal fraction alpha_bar(t) of each schedule (spec 2 table)."""
    kind = schedule["kind"]
    if kind == "ou":
        return math.exp(-2 * t)
    if kind == "vp-linear":
        lo, hi = schedule["beta_min"], schedule["beta_max"]
        return math.exp(-lo * t - 0.5 * (hi - lo) * t * t)
    if kind == "cosine":
        s = schedule["cosine_s"]
        u = lambda time: (time + s) / (1 + s) * math.pi / 2
        return math.cos(u(t)) ** 2 / math.cos(u(0.0)) ** 2
    return discrete_alpha_bars(schedule)[int(t)]  # t is a training index here


def beta(schedule, t):
    """beta(t) = -d log alpha_bar / dt (spec 2), in closed form per schedule (engine table)."""
    kind = schedule["kind"]
    if kind == "ou":
        return 2.0
    if kind == "vp-linear":
        return schedule["beta_min"] + (schedule["beta_max"] - schedule["beta_min"]) * t
    if kind == "cosine":
        # log alpha_bar = 2 log cos(u) + const, du/dt = pi / (2 (1 + s)).
        s = schedule["cosine_s"]
        return math.pi * math.tan((t + s) / (1 + s) * math.pi / 2) / (1 + s)
    raise ValueError("ddpm-discrete has no continuous beta(t)")


# ---------------------------------------------------------------------------------------------
# Samplers as Gaussian-chain tables (spec 2 "Every sampler ... is a Gaussian Markov chain";
# engine "Samplers": m_k(y) = a_k y + b_k s(y, tau_k))
# ---------------------------------------------------------------------------------------------

def sampler_options(kind, steps, spacing="uniform", ddpm_variance="posterior", t_min=1e-3):
    """The sampler JSON object exactly as the C++ reads it (all five keys)."""
    return {"kind": kind, "steps": steps, "t_min": t_min, "ddpm_variance": ddpm_variance,
            "spacing": spacing}


def time_grid(schedule, sampler):
    """tau_0 = t_max > ... > tau_K (engine "Time grid").

    Continuous: uniform tau_k = t_max - k (t_max - t_min)/K or quadratic
    tau_k = t_min + (t_max - t_min)(1 - k/K)^2. Discrete: the index (N-1)(1 - k/K) rounded, halves
    up (the C++ uses std::round), in exact integer arithmetic: (2 (N-1)(K-k) + K) // (2K).
    Spacing and t_min do not apply there.
    """
    K, top = sampler["steps"], t_max(schedule)
    if is_discrete(schedule):
        last = int(top)
        return [float((2 * last * (K - k) + K) // (2 * K)) for k in range(K + 1)]
    lo = sampler["t_min"]
    if sampler["spacing"] == "uniform":
        return [top - k * (top - lo) / K for k in range(K + 1)]
    return [lo + (top - lo) * (1 - k / K) ** 2 for k in range(K + 1)]


def euler_row(schedule, tau, h, stochastic):
    """Euler(-Maruyama) on the reverse SDE / probability-flow ODE (spec 2):
    m = y + h (beta/2 y + beta s) [SDE] or y + h (beta/2 y + beta/2 s) [ODE]; sigma = sqrt(h beta)."""
    bt = beta(schedule, tau)
    return (1 + 0.5 * h * bt, h * bt if stochastic else 0.5 * h * bt,
            math.sqrt(h * bt) if stochastic else 0.0)


def ddpm_row(abar, abar_next, variance):
    """Ancestral DDPM step (spec 2): m = (y - b/sqrt(1-abar) eps)/sqrt(1-b), eps = -sqrt(1-abar) s,
    so m = (y + b s)/sqrt(1-b), with the respaced b = 1 - abar/abar'; sigma^2 = b (1-abar')/(1-abar)
    (posterior) or b."""
    b = 1 - abar / abar_next
    var = b * (1 - abar_next) / (1 - abar) if variance == "posterior" else b
    return 1 / math.sqrt(1 - b), b / math.sqrt(1 - b), math.sqrt(var)


def ddim_row(abar, abar_next):
    """DDIM, eta = 0 (spec 2): m = alpha' x0 + sigma' eps with eps = -sigma s and
    x0 = (y - sigma eps)/alpha = (y + sigma^2 s)/alpha; sigma_k = 0."""
    alpha, sigma = math.sqrt(abar), math.sqrt(1 - abar)
    alpha_next, sigma_next = math.sqrt(abar_next), math.sqrt(1 - abar_next)
    return alpha_next / alpha, alpha_next * sigma ** 2 / alpha - sigma_next * sigma, 0.0


def sampler_table(schedule, sampler):
    """(tau_k, a_k, b_k, sigma_k) for k = 0..K-1."""
    grid = time_grid(schedule, sampler)
    table = {"tau": [], "a": [], "b": [], "sigma": []}
    for k in range(sampler["steps"]):
        tau, tau_next = grid[k], grid[k + 1]
        kind = sampler["kind"]
        if kind in ("sde-euler", "ode-euler"):
            row = euler_row(schedule, tau, tau - tau_next, kind == "sde-euler")
        elif kind == "ddpm":
            row = ddpm_row(alpha_bar(schedule, tau), alpha_bar(schedule, tau_next),
                           sampler["ddpm_variance"])
        else:
            row = ddim_row(alpha_bar(schedule, tau), alpha_bar(schedule, tau_next))
        for key, value in zip(("tau", "a", "b", "sigma"), (tau,) + row):
            table[key].append(value)
    return table


def table_cases():
    """Every allowed (schedule, sampler) pair: K = 7, both spacings on continuous schedules,
    plus K = 10 once per sampler kind and two DDPM-respacing edge cases."""
    variants = [("sde-euler", "posterior"), ("ode-euler", "posterior"), ("ddpm", "posterior"),
                ("ddpm", "beta"), ("ddim", "posterior")]
    cases = []
    for schedule in CONTINUOUS:
        for spacing in ("uniform", "quadratic"):
            for kind, variance in variants:
                cases.append((schedule, sampler_options(kind, 7, spacing, variance)))
    for schedule in DISCRETE:  # Euler refuses a discrete schedule; spacing does not apply
        for kind, variance in variants[2:]:
            cases.append((schedule, sampler_options(kind, 7, "uniform", variance)))
    cases += [
        (VP_LINEAR, sampler_options("sde-euler", 10)),
        (COSINE, sampler_options("ode-euler", 10, "quadratic")),
        (DDPM_LINEAR, sampler_options("ddpm", 10)),
        (OU_3, sampler_options("ddim", 10)),
        # (N-1)(1 - k/K) with N - 1 = 9, K = 6 has halves: 7.5 -> 8, 4.5 -> 5, 1.5 -> 2.
        (DDPM_LIST, sampler_options("ddpm", 6)),
        # K = N - 1: every training index once.
        (DDPM_LIST, sampler_options("ddim", 9)),
    ]
    return cases


# ---------------------------------------------------------------------------------------------
# Counter-based noise (engine "Noise"; convention of src/core/noise.cpp)
# ---------------------------------------------------------------------------------------------

def splitmix64(z):
    """SplitMix64 finaliser on unsigned 64-bit integers."""
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def noise_key(seed, stream, step):
    """key = mix(mix(mix(seed) ^ stream) ^ (step + 1)), step = -1 for Y_0."""
    return splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ ((step + 1) & MASK64))


def noise(seed, stream, step, shape):
    """N(0, I) float64 from a CPU generator seeded with the key (keys >= 2^63 are accepted)."""
    generator = torch.Generator()
    generator.manual_seed(noise_key(seed, stream, step))
    return torch.randn(shape, generator=generator, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# The tiny score network and its card (spec 2 "Model contract"; docs/model-card.md)
# ---------------------------------------------------------------------------------------------

class Conv3x3(torch.nn.Module):
    """A 3x3 convolution with zero padding, written with raw parameters.

    torch.nn.Conv2d is avoided on purpose: TorchScript writes its __constants__ in Python-set
    order, which changes with PYTHONHASHSEED and would make the saved .pt files differ per run.
    """

    def __init__(self, c_in: int, c_out: int, generator: torch.Generator):
        super().__init__()
        self.weight = torch.nn.Parameter(init_normal((c_out, c_in, 3, 3), 9 * c_in, generator))
        self.bias = torch.nn.Parameter(init_normal((c_out,), 9 * c_in, generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(x, self.weight, self.bias, padding=1)


class Affine(torch.nn.Module):
    """y = x W^T + b (a Linear layer, raw parameters for the same reason as Conv3x3)."""

    def __init__(self, c_in: int, c_out: int, generator: torch.Generator):
        super().__init__()
        self.weight = torch.nn.Parameter(init_normal((c_out, c_in), c_in, generator))
        self.bias = torch.nn.Parameter(init_normal((c_out,), c_in, generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.weight, self.bias)


class TinyEps(torch.nn.Module):
    """eps(x, t) = x + conv(SiLU(conv(x) * (1 + Affine([sin t, cos t])))), all convs 3x3.

    The skip makes it a plausible epsilon-predictor for N(0, I)-like data (eps ~ x when sigma ~ 1),
    which keeps the coarse K = 6 Euler chain of the adjoint case O(1); without it the chain's
    states grow to ~1e4 and the KL to ~1e9.
    """

    def __init__(self, generator: torch.Generator, hidden: int = 8):
        super().__init__()
        self.conv1 = Conv3x3(1, hidden, generator)
        self.film = Affine(2, hidden, generator)
        self.conv2 = Conv3x3(hidden, 1, generator)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x)
        scale = 1 + self.film(torch.stack([torch.sin(t), torch.cos(t)], dim=1))
        h = h * scale.unsqueeze(-1).unsqueeze(-1)
        h = h * torch.sigmoid(h)  # SiLU
        return x + self.conv2(h)


ADJOINT_SCHEDULE = dict(VP_LINEAR)
CARD = {"shape": [1, 4, 4], "data_range": [-1.0, 1.0], "schedule": ADJOINT_SCHEDULE,
        "prediction": "epsilon", "time_input": "continuous",
        "provenance": {"trained_by": "scripts/golden_values.py"}}
INIT_GAIN = 0.7  # weights N(0, gain^2 / fan_in): an O(1) residual branch, a stable K = 6 chain
PERTURBATION = 0.05
PERTURBATION_SEED = 1


def init_normal(shape, fan_in, generator):
    """N(0, INIT_GAIN^2 / fan_in) float64 from the given generator."""
    return INIT_GAIN / math.sqrt(fan_in) * torch.randn(shape, generator=generator,
                                                        dtype=torch.float64)


def make_models():
    """theta_ref from seed 0; theta = theta_ref + 0.05 N(0, I) (seed PERTURBATION_SEED)."""
    init = torch.Generator()
    init.manual_seed(0)
    reference = TinyEps(init)
    init.manual_seed(0)
    tuned = TinyEps(init)
    perturbation = torch.Generator()
    perturbation.manual_seed(PERTURBATION_SEED)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(PERTURBATION * torch.randn(p.shape, generator=perturbation,
                                              dtype=torch.float64))
    return tuned, reference


def save_model(module, path, card):
    """TorchScript beside its JSON card (docs/model-card.md).

    The .pt bytes are reproducible for a given checkout path: torch.jit.save also records the
    absolute path of this script in its debug records (code/*.debug_pkl).
    """
    scripted = torch.jit.script(module)
    torch.jit.save(scripted, str(path))
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return scripted


# ---------------------------------------------------------------------------------------------
# The adjoint case: autograd through the unrolled chain (spec 3 and 4)
# ---------------------------------------------------------------------------------------------

def epsilon_score(model, schedule, x, t):
    """prediction "epsilon": s = -o / sigma(t), sigma = sqrt(1 - alpha_bar(t)) (spec 2)."""
    sigma = torch.sqrt(1 - torch.tensor([alpha_bar(schedule, float(v)) for v in t],
                                        dtype=torch.float64))
    return -model(x, t) / sigma.view(-1, 1, 1, 1)


def brightness(x, data_range):
    """R(x) = mean over C, H, W of (x - lo)/(hi - lo)."""
    lo, hi = data_range
    return ((x - lo) / (hi - lo)).mean(dim=(1, 2, 3))


def unrolled_objective(tuned, reference, schedule, sampler, batch, seed, stream, lam, kl_weight,
                       data_range):
    """Y_0 = noise(step -1), Y_{k+1} = m_k(Y_k; theta) + sigma_k xi_k (spec 2);
    c_k = ||m_k(theta) - m_k(theta_ref)||^2 / (2 sigma_k^2) summed over pixels (spec 3);
    J = lambda R(Y_K) - beta sum_k c_k per sample (spec 4)."""
    table = sampler_table(schedule, sampler)
    shape = [batch] + CARD["shape"]
    y = noise(seed, stream, -1, shape)
    kl = torch.zeros(batch, dtype=torch.float64)
    for k in range(sampler["steps"]):
        t = torch.full((batch,), table["tau"][k], dtype=torch.float64)
        a, b, sig = table["a"][k], table["b"][k], table["sigma"][k]
        mean = a * y + b * epsilon_score(tuned, schedule, y, t)
        mean_ref = a * y + b * epsilon_score(reference, schedule, y, t)
        kl = kl + 0.5 * ((mean - mean_ref) / sig).pow(2).flatten(1).sum(1)
        y = mean + sig * noise(seed, stream, k, shape)
    reward = brightness(y, data_range)
    return lam * reward - kl_weight * kl, reward, kl, y


def adjoint_case():
    """Gradient of the batch mean of J w.r.t. every parameter of theta, by autograd."""
    tuned, reference = make_models()
    for p in reference.parameters():
        p.requires_grad_(False)
    sampler = sampler_options("sde-euler", 6)
    case = {"model": "tiny_eps.pt", "reference": "tiny_eps_ref.pt", "sampler": sampler,
            "lambda": 1.3, "beta": 0.7, "reward": "brightness", "batch": 3, "seed": 11,
            "stream": 2}
    J, reward, kl, y = unrolled_objective(tuned, reference, ADJOINT_SCHEDULE, sampler,
                                          case["batch"], case["seed"], case["stream"],
                                          case["lambda"], case["beta"], CARD["data_range"])
    names = [name for name, _ in tuned.named_parameters()]
    grads = torch.autograd.grad(J.mean(), [p for _, p in tuned.named_parameters()])
    case["gradient"] = {n: g.flatten().tolist() for n, g in zip(names, grads)}
    case["reward_values"] = reward.tolist()
    case["kl"] = kl.tolist()
    case["final_state"] = y.detach().flatten().tolist()
    return case, tuned, reference


# ---------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/fixtures/golden", type=pathlib.Path)
    out = parser.parse_args().out
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)

    tables = [dict(schedule=s, sampler=o, **sampler_table(s, o)) for s, o in table_cases()]
    adjoint, tuned, reference = adjoint_case()
    scripted = save_model(tuned, out / "tiny_eps.pt", CARD)
    save_model(reference, out / "tiny_eps_ref.pt", CARD)
    script_names = [name for name, _ in scripted.named_parameters()]
    assert script_names == list(adjoint["gradient"]), (script_names, list(adjoint["gradient"]))

    golden = {"generated_by": "scripts/golden_values.py", "torch_version": torch.__version__,
              "tables": tables, "adjoint": adjoint}
    (out / "golden_values.json").write_text(json.dumps(golden, indent=1, allow_nan=False) + "\n")
    print(f"{len(tables)} tables, {sum(len(g) for g in adjoint['gradient'].values())} gradient "
          f"entries ({len(adjoint['gradient'])} parameters) -> {out}")


if __name__ == "__main__":
    main()
