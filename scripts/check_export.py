#!/usr/bin/python3
"""Checks a model idtune can load, from Python, with code independent of the C++: an export of
scripts/export_model.py, or a model `idtune tune` wrote and its base.

    /usr/bin/python3 scripts/check_export.py --model runs/byom/denoiser.pt [--reward R] [--steps 20 --n 64]
    /usr/bin/python3 scripts/check_export.py --tuned run/tuned.pt --base base.pt \
        --reward brightness --steps 64 [--expected-reward R --expected-base-reward R0]
    /usr/bin/python3 scripts/check_export.py --model runs/fam/class.pt --classes 0 1 2 --guidance 3

For every model it loads (torch.jit.load + the JSON card beside it):
  card        the card is valid as idtune reads it (docs/model-card.md): known keys, ranges, a
              discrete schedule's ᾱ table (named beta schedule, explicit betas or alphas_cumprod), a
              condition's labels or shape and its null condition (a tensor's null_file: loads, has
              the shape)
  forward     forward(x, t) at the first, middle and last time of the schedule, t fed as idtune
              feeds it (time_scale · t, or the rounded index as int64/float), returns
              [B, output_channels, H, W], finite; a conditional model's forward(x, t, c) with
              labels 0, 1 (or random tensors) and the null condition
  guidance    --guidance w ≠ 0 (conditional models with a null condition): (1 + w) out(c) − w out(∅)
              is finite and differs from out(c)
  gradient    one vector-Jacobian product of the prediction (the first C channels) w.r.t. x and
              every parameter, with a label (or tensor) and the null condition: what tuning needs
              (inference-only kernels fail here)
  decoder     a latent model's decoder: loads, decoder(z / scale_factor) is [B, *image_shape],
              finite, differentiable in z; a warning when its images leave data_range
  reward      --reward (brightness, channel-mean:K, red, or a TorchScript file x -> [B]): one
              finite value per image, differentiable
  sampling    samples drawn with an independent Python sampler (reverse-SDE Euler-Maruyama for
              continuous schedules, DDPM ancestral with idtune's respacing for ddpm-discrete),
              converted from the card's prediction (score, epsilon, v, sample), decoded when
              there is a decoder: finite, and their mean reward. A conditional model's samples
              take the --classes in turn (default: every class; the reward per class with
              --classes) or random tensors, guided with --guidance w as idtune's
              sampler.guidance_scale guides them
With --tuned/--base also: the tuned card records provenance.tuned_by, and the rewards match what
the C++ run reported (--expected-reward, --expected-base-reward) within 5 standard errors and
moved the same way.

Exit status 0 and a line "export OK" when every check passes, 1 when one fails, 2 on bad usage.
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

PREDICTIONS = ("score", "epsilon", "v", "sample")
SCHEDULES = ("ou", "vp-linear", "cosine", "ddpm-discrete")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
CONDITION_KINDS = ("class", "tensor")


# ---- the card, as idtune reads it (src/diffusion/model_card.cpp, schedule.cpp) ----

class CardError(ValueError):
    """A card idtune would refuse; the message names the JSON path."""


class Reader:
    """Reads one JSON object, remembering the keys read, like idtune's JsonReader."""

    def __init__(self, obj, path):
        if not isinstance(obj, dict):
            raise CardError(f"{path or '/'}: expected a JSON object")
        self.obj, self.path, self.known = obj, path, []

    def at(self, key):
        return f"{self.path}/{key}"

    def get(self, key, default=None):
        self.known.append(key)
        return self.obj.get(key, default)

    def number(self, key, default, lo, hi, open_low=False, integer=False):
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            kind = "an integer" if integer else "a number"
            raise CardError(f"{self.at(key)}: expected {kind}, got {json.dumps(value)}")
        if not ((value > lo if open_low else value >= lo) and value <= hi):
            bracket = "(" if open_low else "["
            raise CardError(f"{self.at(key)}: {value} is out of range, expected {bracket}{lo}, {hi}]")
        return value

    def name(self, key, default, names):
        value = self.get(key, default)
        if value not in names:
            raise CardError(f"{self.at(key)}: {json.dumps(value)} is not one of {', '.join(names)}")
        return value

    def shape(self, key):
        value = self.get(key)
        sizes_ok = isinstance(value, list) and all(isinstance(d, int) and 1 <= d <= 65536 for d in value)
        if not (sizes_ok and len(value) == 3):
            raise CardError(f"{self.at(key)}: expected [C, H, W] with every size in [1, 65536], "
                            f"got {json.dumps(value)}")
        return value

    def finish(self):
        for key in self.obj:
            if key not in self.known:
                raise CardError(f"{self.at(key)}: unknown key (known keys here: {', '.join(self.known)})")


def parse_schedule(obj, path):
    r = Reader(obj, path)
    s = {"kind": r.name("kind", "ou", SCHEDULES)}
    if s["kind"] == "ou":
        s["t_max"] = r.number("t_max", 1.0, 0.0, 100.0, open_low=True)
    elif s["kind"] == "vp-linear":
        s["t_max"] = r.number("t_max", 1.0, 0.0, 1.0, open_low=True)
        s["beta_min"] = r.number("beta_min", 0.1, 0.0, 1e3, open_low=True)
        s["beta_max"] = r.number("beta_max", 20.0, s["beta_min"], 1e4)
    elif s["kind"] == "cosine":
        if "t_max" not in obj:
            raise CardError(f"{r.at('t_max')}: required for the cosine schedule (0.99 is usual)")
        s["t_max"] = r.number("t_max", None, 0.0, 1.0, open_low=True)
        if s["t_max"] >= 1:
            raise CardError(f"{r.at('t_max')}: {s['t_max']} must lie in (0, 1): the cosine schedule's "
                            "signal vanishes at t = 1")
        s["cosine_s"] = r.number("cosine_s", 0.008, 0.0, 1.0, open_low=True)
    else:
        for key in ("betas", "alphas_cumprod"):
            value = r.get(key)
            if value is not None:
                numbers = isinstance(value, list) and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                if not numbers:
                    raise CardError(f"{r.at(key)}: expected a list of numbers")
                s[key] = value
        if "betas" in s and "alphas_cumprod" in s:
            raise CardError(f"{r.at('betas')}: give betas or alphas_cumprod, not both")
        if "betas" not in s and "alphas_cumprod" not in s:
            s["beta_schedule"] = r.name("beta_schedule", "linear", BETA_SCHEDULES)
            s["beta_start"] = r.number("beta_start", 1e-4, 0.0, 1.0, open_low=True)
            s["beta_end"] = r.number("beta_end", 0.02, s["beta_start"], 1.0)
            s["num_train_steps"] = r.number("num_train_steps", 1000, 2, 100000, integer=True)
    r.finish()
    if s["kind"] == "ddpm-discrete":
        discrete_alpha_bar(s, path)  # validates the table
    return s


def parse_condition(obj, path):
    """A conditional model's third input: int64 labels (class) or a float tensor [B, shape…] (tensor)."""
    r = Reader(obj, path)
    c = {"kind": r.name("kind", "class", CONDITION_KINDS)}
    if c["kind"] == "class":
        if "num_classes" not in obj:
            raise CardError(f"{r.at('num_classes')}: required for a class condition")
        c["num_classes"] = r.number("num_classes", None, 1, 1000000, integer=True)
        c["null_class"] = r.number("null_class", -1, -1, c["num_classes"], integer=True)
    else:
        shape = r.get("shape")
        if not (isinstance(shape, list) and 1 <= len(shape) <= 4 and
                all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 1000000 for d in shape)):
            raise CardError(f"{r.at('shape')}: expected the shape of one condition, 1 to 4 sizes in [1, 1000000], "
                            f"got {json.dumps(shape)}")
        c["shape"] = shape
        c["null_file"] = r.get("null_file", "")
        if not isinstance(c["null_file"], str):
            raise CardError(f"{r.at('null_file')}: expected a file name, got {json.dumps(c['null_file'])}")
    r.finish()
    return c


def parse_card(card, source):
    """The card with every default filled in; raises CardError naming the JSON path."""
    r = Reader(card, "")
    c = {"shape": r.shape("shape")}
    lo_hi = r.get("data_range", [-1.0, 1.0])
    if not (isinstance(lo_hi, list) and len(lo_hi) == 2 and all(isinstance(v, (int, float)) for v in lo_hi)
            and lo_hi[0] < lo_hi[1]):
        raise CardError(f"/data_range: expected [low, high] with low < high, got {json.dumps(lo_hi)}")
    c["data_range"] = [float(v) for v in lo_hi]
    if "schedule" not in card:
        raise CardError("/schedule: missing required object")
    c["schedule"] = parse_schedule(r.get("schedule"), "/schedule")
    c["prediction"] = r.name("prediction", "score", PREDICTIONS)
    c["output_channels"] = r.number("output_channels", c["shape"][0], c["shape"][0], 65536, integer=True)
    c["time_input"] = r.name("time_input", "continuous", ("continuous", "discrete"))
    c["time_scale"] = r.number("time_scale", 1.0, 0.0, 1e9, open_low=True)
    c["time_dtype"] = r.name("time_dtype", "float", ("float", "long"))
    if "decoder" in card:
        d = Reader(r.get("decoder"), "/decoder")
        file = d.get("file")
        if not isinstance(file, str) or not file:
            raise CardError("/decoder/file: must name a TorchScript file")
        c["decoder"] = {"file": file, "scale_factor": d.number("scale_factor", 1.0, 0.0, 1e6, open_low=True),
                        "image_shape": d.shape("image_shape")}
        d.finish()
    if "condition" in card:
        c["condition"] = parse_condition(r.get("condition"), "/condition")
    c["provenance"] = r.get("provenance", {})
    r.finish()
    discrete = c["schedule"]["kind"] == "ddpm-discrete"
    if discrete != (c["time_input"] == "discrete"):
        raise CardError(f"/time_input: \"{c['time_input']}\" does not fit schedule \"{c['schedule']['kind']}\": a "
                        "ddpm-discrete schedule takes \"discrete\" (step indices), every other \"continuous\"")
    if not discrete and c["time_dtype"] != "float":
        raise CardError("/time_dtype: continuous time must be \"float\"")
    if discrete and c["time_scale"] != 1:
        raise CardError("/time_scale: applies to continuous time only (a discrete model receives the step index)")
    return c


def named_betas(s):
    """diffusers' DDPMScheduler formulas, float64."""
    n, b0, b1 = s["num_train_steps"], s["beta_start"], s["beta_end"]
    kind = s["beta_schedule"]
    if kind == "linear":
        return torch.linspace(b0, b1, n, dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace(b0 ** 0.5, b1 ** 0.5, n, dtype=torch.float64) ** 2
    if kind == "squaredcos_cap_v2":
        f = lambda u: torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        t = torch.arange(n, dtype=torch.float64) / n
        return (1 - f(t + 1.0 / n) / f(t)).clamp(max=0.999)
    return torch.sigmoid(torch.linspace(-6, 6, n, dtype=torch.float64)) * (b1 - b0) + b0


def discrete_alpha_bar(s, path="/schedule"):
    """ᾱ_0 … ᾱ_{N−1} of a ddpm-discrete schedule, float64; raises CardError if idtune would refuse it."""
    if "alphas_cumprod" in s:
        abar = torch.tensor(s["alphas_cumprod"], dtype=torch.float64)
        if abar.numel() < 2:
            raise CardError(f"{path}/alphas_cumprod: needs at least 2 values")
        if not ((abar > 0).all() and (abar <= 1).all() and (abar[1:] < abar[:-1]).all()):
            raise CardError(f"{path}/alphas_cumprod: must decrease strictly within (0, 1]")
        return abar
    betas = torch.tensor(s["betas"], dtype=torch.float64) if "betas" in s else named_betas(s)
    if betas.numel() < 2:
        raise CardError(f"{path}/betas: needs at least 2 values")
    if not ((betas > 0).all() and (betas < 1).all()):
        raise CardError(f"{path}: every beta must lie in (0, 1)")
    return torch.cumprod(1 - betas, 0)


def t_max(schedule):
    if schedule["kind"] == "ddpm-discrete":
        return float(discrete_alpha_bar(schedule).numel() - 1)
    return schedule["t_max"]


def alpha_bar(schedule, t):
    kind = schedule["kind"]
    if kind == "ou":
        return torch.exp(-2 * t)
    if kind == "vp-linear":
        lo, hi = schedule["beta_min"], schedule["beta_max"]
        return torch.exp(-lo * t - 0.5 * (hi - lo) * t * t)
    if kind == "cosine":
        s = schedule["cosine_s"]
        f = lambda u: torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
        return f(t) / f(torch.zeros_like(t))
    table = discrete_alpha_bar(schedule)
    return table[t.round().long().clamp(0, table.numel() - 1)].to(t.dtype)


def beta(schedule, t):
    """beta(t) = -d/dt log alpha_bar(t), by autograd (an independent route from the C++)."""
    with torch.enable_grad():
        t = t.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(-torch.log(alpha_bar(schedule, t)).sum(), t)
    return g.detach()


# ---- a loaded model ----

class Model:
    """A TorchScript network, its parsed card, (latent models) its decoder and (tensor-conditional models)
    its null condition, called as idtune calls them."""

    def __init__(self, path):
        self.path = path
        self.module = torch.jit.load(path)
        self.module.eval()
        card_path = os.path.splitext(path)[0] + ".json"
        with open(card_path) as f:
            self.raw_card = json.load(f)
        self.card = parse_card(self.raw_card, card_path)
        self.schedule = self.card["schedule"]
        folder = os.path.dirname(os.path.abspath(card_path))  # a relative file is relative to the card's folder
        self.decoder = None
        if "decoder" in self.card:
            file = self.card["decoder"]["file"]
            self.decoder_path = file if os.path.isabs(file) else os.path.join(folder, file)
            self.decoder = torch.jit.load(self.decoder_path)
            self.decoder.eval()
        self.condition = self.card.get("condition")
        self.null_tensor = None
        if self.condition and self.condition.get("null_file"):
            file = self.condition["null_file"]
            value = torch.load(file if os.path.isabs(file) else os.path.join(folder, file), map_location="cpu")
            if not (isinstance(value, torch.Tensor) and value.is_floating_point() and
                    list(value.shape) == self.condition["shape"]):
                got = f"{str(value.dtype)[6:]} {list(value.shape)}" if isinstance(value, torch.Tensor) else \
                    type(value).__name__
                raise CardError(f"/condition/null_file: '{file}' must hold a floating tensor "
                                f"{self.condition['shape']}, got {got}")
            self.null_tensor = value.float()

    @property
    def channels(self):
        return self.card["shape"][0]

    def network_time(self, t):
        if self.card["time_input"] == "discrete":
            return t.round().to(torch.long if self.card["time_dtype"] == "long" else t.dtype)
        return t * self.card["time_scale"]

    @property
    def has_null(self):
        if self.condition is None:
            return False
        return self.condition["null_class"] >= 0 if self.condition["kind"] == "class" else self.null_tensor is not None

    def null_condition(self, n):
        if self.condition["kind"] == "class":
            return torch.full((n,), self.condition["null_class"], dtype=torch.long)
        return self.null_tensor.expand(n, *self.condition["shape"])

    @property
    def forward_name(self):
        return "forward(x, t, c)" if self.condition else "forward(x, t)"

    def raw_output(self, x, t, c=None):
        return self.module(x, self.network_time(t), *(() if c is None else (c,)))

    def output(self, x, t, c=None, w=0.0):
        """The prediction (the first C channels); guided, (1 + w) out(x, t, c) − w out(x, t, ∅) from one batched
        call. Every prediction converts to the score affinely in the output, so this guides the score as
        idtune's ScoreModel::guided_score does."""
        if w == 0:
            return self.raw_output(x, t, c)[:, : self.channels]
        n = x.shape[0]
        both = self.raw_output(torch.cat([x, x]), torch.cat([t, t]),
                               torch.cat([c, self.null_condition(n).to(c.dtype)]))[:, : self.channels]
        return (1 + w) * both[:n] - w * both[n:]

    def epsilon(self, x, t, c=None, w=0.0):
        o = self.output(x, t, c, w)
        a = alpha_bar(self.schedule, t).view(-1, 1, 1, 1).to(x.dtype)
        alpha, sigma = a.sqrt(), (1 - a).sqrt()
        prediction = self.card["prediction"]
        if prediction == "epsilon":
            return o
        if prediction == "score":
            return -sigma * o
        if prediction == "v":  # v = αε − σx₀, x = αx₀ + σε
            return alpha * o + sigma * x
        return (x - alpha * o) / sigma  # sample: o = x̂₀

    def score(self, x, t, c=None, w=0.0):
        sigma = (1 - alpha_bar(self.schedule, t)).sqrt().view(-1, 1, 1, 1).to(x.dtype)
        return -self.epsilon(x, t, c, w) / sigma

    def images(self, samples):
        if self.decoder is None:
            return samples
        return self.decoder(samples / self.card["decoder"]["scale_factor"])

    def image_shape(self):
        return self.card["decoder"]["image_shape"] if self.decoder is not None else self.card["shape"]


# ---- samplers ----

def sample_sde(model, n, steps, t_min, seed, spacing, c, w):
    """Euler-Maruyama on the reverse SDE dY = (beta/2 y + beta s) dt + sqrt(beta) dB; s guided with w."""
    torch.manual_seed(seed)
    schedule = model.schedule
    y = torch.randn(n, *model.card["shape"])
    u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    grid = t_min + (schedule["t_max"] - t_min) * (u if spacing == "uniform" else u * u)
    with torch.no_grad():
        for k in range(steps):
            h = float(grid[k] - grid[k + 1])
            t = torch.full((n,), float(grid[k]))
            b = beta(schedule, t).view(-1, 1, 1, 1)
            y = y + h * (0.5 * b * y + b * model.score(y, t, c, w)) + torch.sqrt(h * b) * torch.randn_like(y)
    return y


def ddpm_grid(n_last, steps):
    """idtune's respacing: K+1 indices from N−1 down to 0, i_k = round(N_last (K − k) / K), halves up."""
    return [(2 * n_last * (steps - k) + steps) // (2 * steps) for k in range(steps + 1)]


def sample_ddpm(model, n, steps, seed, c, w):
    """DDPM ancestral steps between respaced indices, posterior variance (idtune's default); ε guided with w."""
    torch.manual_seed(seed)
    table = discrete_alpha_bar(model.schedule)
    if steps > table.numel() - 1:
        raise SystemExit(f"check_export.py: --steps {steps} is more than the {table.numel()} training steps allow")
    grid = ddpm_grid(table.numel() - 1, steps)
    y = torch.randn(n, *model.card["shape"])
    with torch.no_grad():
        for k in range(steps):
            abar, abar_next = float(table[grid[k]]), float(table[grid[k + 1]])
            b = 1 - abar / abar_next
            eps = model.epsilon(y, torch.full((n,), float(grid[k])), c, w)
            mean = (y - b / math.sqrt(1 - abar) * eps) / math.sqrt(1 - b)
            y = mean + math.sqrt(b * (1 - abar_next) / (1 - abar)) * torch.randn_like(y)
    return y


def sample(model, args, c):
    """args.n samples, the i-th with condition c[i] (a conditional model), guided with --guidance."""
    if model.schedule["kind"] == "ddpm-discrete":
        return sample_ddpm(model, args.n, args.steps, args.seed, c, args.guidance)
    return sample_sde(model, args.n, args.steps, args.t_min, args.seed, args.spacing, c, args.guidance)


def sampling_conditions(model, args):
    """One condition per sample: the --classes (default: every class) in turn, or random tensors."""
    cond = model.condition
    if cond is None:
        return None
    if cond["kind"] == "class":
        labels = torch.tensor(args.classes or range(cond["num_classes"]))
        return labels[torch.arange(args.n) % labels.numel()]
    return torch.randn(args.n, *cond["shape"], generator=torch.Generator().manual_seed(args.seed))


# ---- rewards ----

def load_reward(spec, data_range):
    """A callable images -> [B]: a built-in reward, or a TorchScript file."""
    if spec.endswith(".pt"):
        if not os.path.isfile(spec):
            raise SystemExit(f"check_export.py: reward file '{spec}' does not exist")
        module = torch.jit.load(spec)
        module.eval()
        return module
    lo, hi = data_range

    def unit(x):
        return (x - lo) / (hi - lo)
    if spec == "brightness":
        return lambda x: unit(x).flatten(1).mean(1)
    if spec.startswith("channel-mean:"):
        return lambda x: unit(x)[:, int(spec.split(":")[1])].flatten(1).mean(1)
    if spec == "red":
        return lambda x: unit(x)[:, 0].flatten(1).mean(1) - unit(x)[:, 1:].flatten(1).mean(1)
    raise SystemExit(f"check_export.py: reward {spec} is not supported here "
                     "(brightness, channel-mean:K, red, or a TorchScript file .pt)")


# ---- checks ----

def first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines and "failed in the TorchScript interpreter" in lines[0]:
        return lines[-1]  # the interpreter's own error comes last
    return lines[0] if lines else type(error).__name__


def probe_times(model, n):
    """First, middle and last time of the schedule (continuous: t_min … t_max)."""
    top = t_max(model.schedule)
    low = 0.0 if model.schedule["kind"] == "ddpm-discrete" else min(1e-3, top / 2)
    return torch.tensor([low, (low + top) / 2, top] * n)[:n]


def probe_conditions(model, n, null=True):
    """n conditions for the checks: labels 0, 1, … or random tensors, the last one the null condition when the
    card has one (and null); None for an unconditional model."""
    cond = model.condition
    if cond is None:
        return None
    if cond["kind"] == "class":
        labels = [k for k in range(min(cond["num_classes"], n + 1)) if k != cond["null_class"]] or [0]
        c = torch.tensor(labels)[torch.arange(n) % len(labels)]
    else:
        c = torch.randn(n, *cond["shape"])
    if null and model.has_null:
        c[-1] = model.null_condition(1)[0]
    return c


def check_forward(model, failures):
    x = torch.randn(3, *model.card["shape"])
    t = probe_times(model, 3)
    c = probe_conditions(model, 3)
    expected = (3, model.card["output_channels"], *model.card["shape"][1:])
    try:
        with torch.no_grad():
            out = model.raw_output(x, t, c)
    except RuntimeError as e:
        failures.append(f"{model.path}: {model.forward_name} failed: {first_line(e)}")
        return
    if tuple(out.shape) != expected:
        failures.append(f"{model.path}: {model.forward_name} returned shape {list(out.shape)}, "
                        f"expected {list(expected)}")
    elif not torch.isfinite(out).all():
        failures.append(f"{model.path}: {model.forward_name} is not finite at t = {t.tolist()}")


def check_guidance(model, w, failures):
    """(1 + w) out(c) − w out(∅) for conditions that are not the null one: finite, and not out(c)."""
    x = torch.randn(3, *model.card["shape"])
    t = probe_times(model, 3)
    c = probe_conditions(model, 3, null=False)
    try:
        with torch.no_grad():
            plain, guided = model.output(x, t, c), model.output(x, t, c, w)
    except RuntimeError as e:
        failures.append(f"{model.path}: guidance w = {w:g} failed: {first_line(e)}")
        return
    if not torch.isfinite(guided).all():
        failures.append(f"{model.path}: the guided output (w = {w:g}) is not finite")
    elif torch.allclose(guided, plain, rtol=0, atol=1e-4 * max(plain.abs().max().item(), 1e-12)):
        failures.append(f"{model.path}: guidance w = {w:g} changes nothing: the output does not depend on the "
                        "condition")


def check_gradient(name, function, inputs, failures):
    """One vector-Jacobian product of function() w.r.t. inputs; the first must get a gradient."""
    for p in inputs:
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            out = function()
            grads = torch.autograd.grad(out, inputs, torch.randn_like(out), allow_unused=True)
    except RuntimeError as e:
        failures.append(f"{name} cannot be differentiated: {first_line(e)}")
        return
    if grads[0] is None:
        failures.append(f"{name}: the output does not depend on its input")
    elif not all(torch.isfinite(g).all() for g in grads if g is not None):
        failures.append(f"{name}: the gradient is not finite")


def check_model(model, reward, failures, guidance=0.0):
    check_forward(model, failures)
    if guidance != 0:
        check_guidance(model, guidance, failures)
    x = torch.randn(2, *model.card["shape"])
    t = probe_times(model, 2)
    c = probe_conditions(model, 2)
    params = [p for p in model.module.parameters() if p.is_floating_point()]
    check_gradient(f"{model.path}: the prediction", lambda: model.output(x, t, c), [x] + params, failures)
    if model.decoder is not None:
        z = torch.randn(2, *model.card["shape"])
        with torch.no_grad():
            images = model.images(z)
        if list(images.shape) != [2] + model.image_shape():
            failures.append(f"{model.decoder_path}: decoded shape {list(images.shape)}, "
                            f"expected {[2] + model.image_shape()}")
        elif not torch.isfinite(images).all():
            failures.append(f"{model.decoder_path}: decoded images are not finite")
        check_gradient(f"{model.decoder_path}: the decoder", lambda: model.images(z), [z], failures)
    lo, hi = model.card["data_range"]
    images = lo + (hi - lo) * torch.rand(3, *model.image_shape())
    try:
        with torch.no_grad():
            r = reward(images)
    except RuntimeError as e:
        failures.append(f"reward: fails on images {[3] + model.image_shape()}: {first_line(e)}")
        return
    if tuple(r.shape) != (3,) or not torch.isfinite(r).all():
        failures.append(f"reward: returned shape {list(r.shape)} (finite: {bool(torch.isfinite(r).all())}) "
                        "for 3 images, expected [3], finite")
    else:
        check_gradient("reward", lambda: reward(images).sum().view(1), [images], failures)


def sampled_reward(model, reward, args, failures, c):
    samples = sample(model, args, c)
    with torch.no_grad():
        images = model.images(samples)
        r = reward(images)
    if not torch.isfinite(images).all() or not torch.isfinite(r).all():
        failures.append(f"{model.path}: samples or their rewards are not finite")
    lo, hi = model.card["data_range"]
    inside = ((images >= lo) & (images <= hi)).float().mean().item()
    return r, inside


def load(path, failures):
    if not os.path.isfile(path):
        raise SystemExit(f"check_export.py: '{path}' does not exist")
    try:
        return Model(path)
    except CardError as e:
        failures.append(f"{os.path.splitext(path)[0]}.json: {e}")
    except (RuntimeError, OSError, ValueError) as e:
        failures.append(f"{path}: cannot be loaded: {first_line(e)}")
    return None


def usage(message):
    print(f"check_export.py: {message}", file=sys.stderr)
    sys.exit(2)


def check_usage(model, args):
    """--classes and --guidance against the model's card: exit status 2 when they do not fit."""
    cond = model.condition
    if args.classes and (cond is None or cond["kind"] != "class"):
        usage(f"--classes needs a class-conditional model; '{model.path}' "
              f"{'has no condition' if cond is None else 'takes tensor conditions ' + str(cond['shape'])}")
    wrong = [k for k in args.classes or [] if not 0 <= k < cond["num_classes"]]
    if wrong:
        usage(f"--classes: label {wrong[0]} is out of range: '{model.path}' has {cond['num_classes']} classes "
              f"(0..{cond['num_classes'] - 1})")
    if args.guidance != 0 and not model.has_null:
        usage(f"--guidance {args.guidance:g} needs a conditional model whose card has a null condition "
              f"(condition.null_class or condition.null_file); '{model.path}' has "
              f"{'no condition' if cond is None else 'none'}")


def per_class(r, c, classes):
    return ", ".join(f"{k}: {r[c == k].mean():.4f}" for k in sorted(set(classes)))


def report(failures, message):
    if failures:
        print("export FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(message)
    return 0


def check_one(args):
    failures = []
    model = load(args.model, failures)
    if model is None:
        return report(failures, "")
    check_usage(model, args)
    reward = load_reward(args.reward, model.card["data_range"])
    check_model(model, reward, failures, args.guidance)
    if failures:  # sampling would only repeat them
        return report(failures, "")
    c = sampling_conditions(model, args)
    r, inside = sampled_reward(model, reward, args, failures, c)
    card = model.card
    guided = f", guidance {args.guidance:g}" if args.guidance else ""
    print(f"python: {card['schedule']['kind']} {card['prediction']}, {args.n} samples in {args.steps} steps{guided}: "
          f"reward {r.mean():.4f} ± {r.std().item() / math.sqrt(args.n):.4f}, {100 * inside:.0f}% of pixels in "
          "data_range")
    if args.classes:
        print(f"python: reward per class {per_class(r, c, args.classes)}")
    return report(failures, f"export OK: '{args.model}' loads, runs, differentiates and samples in Python")


def kind_of(condition):
    """A card's condition without its null file's name (a tuned card may name its own copy)."""
    return None if condition is None else {k: v for k, v in condition.items() if k != "null_file"}


def check_tuned(args):
    failures = []
    tuned, base = load(args.tuned, failures), load(args.base, failures)
    if tuned is None or base is None:
        return report(failures, "")
    if "tuned_by" not in tuned.card.get("provenance", {}):
        failures.append("the tuned card has no provenance.tuned_by")
    if kind_of(tuned.condition) != kind_of(base.condition):
        failures.append(f"the tuned card's condition {kind_of(tuned.condition)} differs from the base's "
                        f"{kind_of(base.condition)}")
        return report(failures, "")
    for model in (tuned, base):
        check_usage(model, args)
    reward = load_reward(args.reward, tuned.card["data_range"])
    for model in (tuned, base):
        check_model(model, reward, failures, args.guidance)
    if failures:  # sampling would only repeat them
        return report(failures, "")
    c = sampling_conditions(tuned, args)  # the same conditions (and noise) for both
    r_tuned, _ = sampled_reward(tuned, reward, args, failures, c)
    r_base, _ = sampled_reward(base, reward, args, failures, c)
    se_tuned, se_base = (r.std().item() / math.sqrt(args.n) for r in (r_tuned, r_base))
    print(f"python: reward tuned {r_tuned.mean():.4f} ± {se_tuned:.4f}, base {r_base.mean():.4f} ± {se_base:.4f}")
    if args.classes:
        print(f"python: reward per class, tuned {per_class(r_tuned, c, args.classes)}; base "
              f"{per_class(r_base, c, args.classes)}")
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
    return report(failures, f"export OK: '{args.tuned}' loads in Python and its reward moved as reported")


class Parser(argparse.ArgumentParser):
    def error(self, message):
        usage(message)


def main():
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="an exported model to check on its own")
    p.add_argument("--tuned", help="a model idtune tuned (with --base)")
    p.add_argument("--base", help="the model it was tuned from")
    p.add_argument("--reward", default="brightness", help="brightness, channel-mean:K, red, or FILE.pt")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--t-min", type=float, default=1e-3)
    p.add_argument("--spacing", choices=["uniform", "quadratic"], default="uniform")
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=int(os.environ.get("IDTUNE_NUM_THREADS", 0)) or os.cpu_count() or 1)
    p.add_argument("--classes", type=int, nargs="+", metavar="K", help="class-conditional models: the labels "
                   "the samples take in turn (default: every class); the reward per class is printed")
    p.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance w (conditional models "
                   "with a null condition): checked, and used in sampling, like sampler.guidance_scale")
    p.add_argument("--expected-reward", type=float)
    p.add_argument("--expected-base-reward", type=float)
    args = p.parse_args()
    if (args.model is None) == (args.tuned is None) or (args.tuned is not None) != (args.base is not None):
        p.error("give --model PATH, or --tuned PATH with --base PATH")
    if args.steps < 1 or args.n < 2:
        p.error(f"--steps must be >= 1 and --n >= 2, got {args.steps} and {args.n}")
    if not math.isfinite(args.guidance):
        p.error(f"--guidance must be finite, got {args.guidance}")
    torch.set_num_threads(args.threads)
    return check_one(args) if args.model else check_tuned(args)


if __name__ == "__main__":
    sys.exit(main())
