#!/usr/bin/python3
"""Exports a PyTorch diffusion model to what idtune loads: a TorchScript file and its model card.

From a Python file that defines the network, the class (or a function that builds it) and a
checkpoint:

    /usr/bin/python3 scripts/export_model.py --module my_unet.py --class UNet \
        --state-dict checkpoint.pt [--state-dict-key ema] [--init-kwargs '{"ch": 64}'] \
        --shape 1 28 28 --data-range -1 1 --schedule ou --t-max 3 --prediction epsilon \
        --out models/my_unet.pt

--class may name a function that builds the module (and loads its weights: then no --state-dict);
--submodule model exports an attribute of what it built (a wrapper's network). The checkpoint may
be a state dict, a dict holding one (--state-dict-key), with a prefix to strip (--state-dict-prefix
module.), loaded into what --class built or else into --submodule.

The exported module has forward(x [B, C, H, W], t [B]) -> [B, output_channels, H, W] (a
conditional one: forward(x, t, c), below). The network's forward may take (x, t) or (sample,
timestep) positionally, plus fixed keyword arguments (--extra-kwargs '{"return_dict": false}'),
and return a tensor, a tuple or list (its first element), a dict (--output-key, default
"sample") or an object with `.sample` (diffusers): a small wrapper returns the tensor. It is
scripted (torch.jit.script); when scripting fails, one line says why and it is traced instead
(--trace: trace straight away). Tracing runs with autograd on and x and the parameters requiring
grad, so that inference-only fused kernels (e.g. nn.MultiheadAttention's
aten::_native_multi_head_attention, which has no derivative) are not recorded; a traced graph
that still holds one is refused.

Before anything is written: the exported module's output is compared with the eager module's
on random inputs at random times (two batch sizes), and one vector-Jacobian product w.r.t. x and
every parameter checks that idtune can differentiate it. Errors are one line, exit status 2.

Card options (docs/model-card.md):
  --schedule ou | vp-linear | cosine | ddpm-discrete   (cosine needs --t-max < 1)
  ddpm-discrete: --beta-schedule linear | scaled_linear | squaredcos_cap_v2 | sigmoid with
      --beta-start --beta-end --num-train-steps (diffusers' formulas); or --betas-from FILE,
      --alphas-cumprod-from FILE (a torch.save'd 1-D tensor), or --alphas-cumprod-attr NAME
      (a buffer of the built object, e.g. a lucidrains-style GaussianDiffusion's alphas_cumprod;
      export its network with --submodule model)
  --prediction score | epsilon | v | sample (x0)    --output-channels N (> C: extra channels, e.g.
  a learned variance, are ignored)    --time-dtype float | long (default: long for ddpm-discrete)
  --time-scale s (continuous: the network receives s·t)
  --decoder FILE.pt --scale-factor f --image-shape C H W: a latent model's TorchScript decoder,
      images = decoder(latent / f); copied beside the card as <out stem>_decoder.pt

Conditional models (the card's "condition"): the exported module has forward(x, t, c), c int64
labels [B] or a float tensor [B, D1, …]:
  --condition class --num-classes N [--null-class K]   labels 0 … N−1; K, the label of "no
      condition" that classifier-free guidance needs, in [0, N] (default N: the extra label
      that training dropped labels to)
  --condition tensor --condition-shape D1 [D2 …] [--null-condition FILE]   FILE: a torch.save'd
      tensor [D1, D2, …] (e.g. the text encoder's states of the empty prompt), copied beside
      the card as <out stem>_null_condition.pt; without it the model cannot be guided
  --condition-arg NAME   forward takes c as NAME (guided-diffusion's y, diffusers' class_labels
      or encoder_hidden_states); default: its third positional argument. The third argument
      is passed positionally whatever its name (a script can bind it); any other by keyword
      (traced)
The comparison and the VJP then run on random conditions (labels 0 … N−1, random tensors) and
the null one.
"""
import argparse
import importlib.util
import inspect
import json
import os
import re
import shutil
import sys
import warnings
from typing import Optional

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_export as card_rules  # noqa: E402  (the card's rules, as idtune reads them)

# Scripted and eager graphs run the same kernels; tracing or fused ops may reorder sums.
RELATIVE_TOLERANCE = 1e-4
# Fused inference kernels (torch 1.13) that nn.MultiheadAttention / nn.TransformerEncoderLayer
# take when autograd is off; none has a derivative.
INFERENCE_ONLY_OPS = ("aten::_native_multi_head_attention", "aten::_transformer_encoder_layer_fwd",
                      "aten::_transformer_decoder_only_layer_fwd", "aten::_native_decoder_only_multi_head_attention",
                      "aten::_nested_tensor_from_mask")
# lucidrains' GaussianDiffusion.objective -> the card's prediction.
OBJECTIVES = {"pred_noise": "epsilon", "pred_v": "v", "pred_x0": "sample"}
TRACE_HINT = "add type annotations, or let the script trace it"


class Refused(Exception):
    """A user mistake or an unexportable model: one line, exit status 2."""


def first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines and "failed in the TorchScript interpreter" in lines[0]:
        return lines[-1]  # the interpreter's own error comes last, after the TorchScript traceback
    return lines[0] if lines else type(error).__name__


def describe(error):
    line = first_line(error)
    return line if line.startswith(type(error).__name__) else f"{type(error).__name__}: {line}"


# ---- the network ----

def load_callable(path, name):
    if not os.path.isfile(path):
        raise Refused(f"module file '{path}' does not exist")
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's file: any error, reported in one line
        raise Refused(f"importing '{path}' failed: {describe(e)}")
    if not callable(getattr(module, name, None)):
        found = [n for n in dir(module) if isinstance(getattr(module, n), type) and
                 getattr(getattr(module, n), "__module__", "") == module.__name__]
        raise Refused(f"'{path}' defines no class '{name}' (classes: {', '.join(found) or 'none'})")
    return getattr(module, name)


def json_object(text, flag):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise Refused(f"{flag} {text!r} is not valid JSON ({e.msg} at character {e.pos}); expected an object "
                      "such as '{\"ch\": 64}'")
    if not isinstance(value, dict):
        raise Refused(f"{flag} {text!r} is not a JSON object; expected e.g. '{{\"ch\": 64}}'")
    return value


def build(args):
    factory = load_callable(args.module, args.class_name)
    kwargs = json_object(args.init_kwargs, "--init-kwargs")
    try:
        obj = factory(**kwargs)
    except Exception as e:
        raise Refused(f"{args.class_name}(**{json.dumps(kwargs)}) failed: {describe(e)}")
    if not isinstance(obj, nn.Module):
        raise Refused(f"{args.class_name}(...) returned {type(obj).__name__}, expected a torch.nn.Module")
    return obj


def read_state_dict(args):
    if not os.path.isfile(args.state_dict):
        raise Refused(f"checkpoint '{args.state_dict}' does not exist")
    try:
        state = torch.load(args.state_dict, map_location="cpu")
    except Exception as e:
        raise Refused(f"checkpoint '{args.state_dict}' cannot be read by torch.load: {describe(e)}")
    if args.state_dict_key:
        if not isinstance(state, dict) or args.state_dict_key not in state:
            keys = short_list(map(str, state)) if isinstance(state, dict) else type(state).__name__
            plain = isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
            raise Refused(f"checkpoint has no key '{args.state_dict_key}' (keys: {keys})"
                          + ("; it is a state dict itself: drop --state-dict-key" if plain else ""))
        state = state[args.state_dict_key]
    if isinstance(state, nn.Module):  # torch.save(model) rather than its state dict
        state = state.state_dict()
    if not isinstance(state, dict):
        raise Refused(f"checkpoint '{args.state_dict}' holds {type(state).__name__}, expected a state dict")
    if args.state_dict_prefix:
        prefix = args.state_dict_prefix
        kept = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not kept:
            heads = sorted({k.split(".")[0] + "." for k in state})[:8]
            raise Refused(f"no key of the state dict starts with '{prefix}' (prefixes: {', '.join(heads)})")
        state = kept
    return state


def short_list(names, n=4):
    names = list(names)
    return ", ".join(names[:n]) + (f" … ({len(names)} in all)" if len(names) > n else "")


def fits(module, state):
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes that differ
        lines = [line.strip() for line in str(e).splitlines() if "size mismatch" in line]
        return lines[0] if lines else first_line(e)
    if missing or unexpected:
        return f"missing {short_list(missing) or 'none'}; unexpected {short_list(unexpected) or 'none'}"
    return None


def load_weights(obj, args):
    """Loads the checkpoint into the built object, or else into --submodule; returns the network."""
    network = submodule(obj, args.submodule)
    if args.state_dict is None:
        print(f"export_model.py: no --state-dict: exporting the weights {args.class_name}(...) built")
        return network
    state = read_state_dict(args)
    problem = fits(obj, state)
    if problem and network is not obj and fits(network, state) is None:
        problem = None
    if problem:
        hint = " (try --state-dict-prefix module.)" if all(k.startswith("module.") for k in state) else ""
        raise Refused(f"state dict does not fit {args.class_name}: {problem}{hint}")
    return network


def submodule(obj, path):
    for name in filter(None, (path or "").split(".")):
        child = getattr(obj, name, None)
        if not isinstance(child, nn.Module):
            children = ", ".join(n for n, _ in obj.named_children())
            raise Refused(f"--submodule {path}: {type(obj).__name__} has no submodule '{name}' "
                          f"(children: {children})")
        obj = child
    return obj


# ---- the schedule ----

def load_saved(path, flag):
    """What torch.save wrote to the file a flag names."""
    if not os.path.isfile(path):
        raise Refused(f"{flag} '{path}' does not exist")
    try:
        return torch.load(path, map_location="cpu")
    except Exception as e:
        raise Refused(f"{flag} '{path}' cannot be read by torch.load: {describe(e)}")


def read_table(path, flag):
    return as_table(load_saved(path, flag), f"{flag} '{path}'")


def as_table(value, what):
    if isinstance(value, dict):
        raise Refused(f"{what} is a dict (keys: {short_list(map(str, value))}), expected a 1-D tensor")
    try:
        table = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise Refused(f"{what} is a {type(value).__name__}, expected a 1-D tensor")
    if table.dim() != 1:
        raise Refused(f"{what} has shape {list(table.shape)}, expected a 1-D tensor")
    return [float(v) for v in table]


def schedule_card(args, obj):
    if args.schedule == "ou":
        return {"kind": "ou", "t_max": args.t_max}
    if args.schedule == "vp-linear":
        return {"kind": "vp-linear", "t_max": args.t_max, "beta_min": args.beta_min, "beta_max": args.beta_max}
    if args.schedule == "cosine":
        return {"kind": "cosine", "t_max": args.t_max, "cosine_s": args.cosine_s}
    if args.betas_from:
        return {"kind": "ddpm-discrete", "betas": read_table(args.betas_from, "--betas-from")}
    if args.alphas_cumprod_from:
        table = read_table(args.alphas_cumprod_from, "--alphas-cumprod-from")
        return {"kind": "ddpm-discrete", "alphas_cumprod": table}
    if args.alphas_cumprod_attr:
        value = getattr(obj, args.alphas_cumprod_attr, None)
        if value is None:
            raise Refused(f"--alphas-cumprod-attr: {type(obj).__name__} has no attribute "
                          f"'{args.alphas_cumprod_attr}'")
        table = as_table(value, f"{type(obj).__name__}.{args.alphas_cumprod_attr}")
        return {"kind": "ddpm-discrete", "alphas_cumprod": table}
    return {"kind": "ddpm-discrete", "beta_schedule": args.beta_schedule, "beta_start": args.beta_start,
            "beta_end": args.beta_end, "num_train_steps": args.num_train_steps}


def check_schedule(schedule, obj, args):
    """The card's rules, and agreement with a schedule the model object carries."""
    try:
        card_rules.parse_schedule(schedule, "/schedule")
    except card_rules.CardError as e:
        raise Refused(f"the schedule would be refused by idtune: {e}")
    held = getattr(obj, "alphas_cumprod", None)
    if schedule["kind"] != "ddpm-discrete" or "alphas_cumprod" in schedule or not isinstance(held, torch.Tensor):
        return
    ours = card_rules.discrete_alpha_bar(schedule)
    given = f"--beta-schedule {schedule['beta_schedule']}" if "beta_schedule" in schedule else "--betas-from"
    if held.shape != ours.shape:
        raise Refused(f"{type(obj).__name__}.alphas_cumprod has {held.numel()} steps, {given} {ours.numel()}; "
                      "read the model's own with --alphas-cumprod-attr alphas_cumprod")
    gap = (held.double() - ours).abs().max().item()
    if gap > 1e-4:
        raise Refused(f"{type(obj).__name__}.alphas_cumprod differs from {given} by up to {gap:.3g}; "
                      "read the model's own with --alphas-cumprod-attr alphas_cumprod")


def check_objective(obj, prediction):
    objective = getattr(obj, "objective", None)
    if isinstance(objective, str) and objective in OBJECTIVES and OBJECTIVES[objective] != prediction:
        raise Refused(f"{type(obj).__name__}.objective is '{objective}' (prediction {OBJECTIVES[objective]}), "
                      f"but --prediction {prediction}")


# ---- the condition ----

def read_null_condition(args):
    """The tensor --null-condition names: one condition [D1, …], floating, finite (or None)."""
    if args.null_condition is None:
        return None
    what = f"--null-condition '{args.null_condition}'"
    value = load_saved(args.null_condition, "--null-condition")
    expected = list(args.condition_shape)
    if not isinstance(value, torch.Tensor):
        raise Refused(f"{what} holds {type(value).__name__}, expected one tensor {expected} "
                      "(torch.save(tensor, path))")
    if list(value.shape) != expected:
        batched = list(value.shape) == [1] + expected
        raise Refused(f"{what} has shape {list(value.shape)}, expected {expected} (--condition-shape)"
                      + ("; save one condition without the batch dimension (tensor[0])" if batched else ""))
    if not value.is_floating_point():
        raise Refused(f"{what} holds {str(value.dtype)[6:]} values, expected a floating tensor: the network's "
                      "input for no condition (e.g. the text encoder's states of the empty prompt, not its tokens)")
    if not torch.isfinite(value).all():
        raise Refused(f"{what} holds values that are not finite")
    return value.detach().float()


def forward_parameters(model):
    """The parameters of the network's forward, or None when Python cannot tell."""
    try:
        return list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None


def condition_keyword(model, args):
    """How forward takes c: None (its third positional argument) or the keyword --condition-arg names."""
    name, params = args.condition_arg, forward_parameters(model)
    if params is None:
        return name
    P = inspect.Parameter
    positional = [p.name for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    listing = f"forward({', '.join(p.name for p in params)})"
    if name is None:
        if len(positional) >= 3 or any(p.kind == P.VAR_POSITIONAL for p in params):
            return None
        keywords = [p.name for p in params if p.kind == P.KEYWORD_ONLY and p.default in (P.empty, None)]
        raise Refused(f"{listing} takes no third argument for the condition: name its parameter with --condition-arg "
                      f"NAME{f' (keyword-only: {short_list(keywords)})' if keywords else ''}")
    if name in positional[:2]:
        raise Refused(f"--condition-arg {name}: {listing} takes x and t as its first two arguments; name the "
                      "condition's parameter")
    if name in args.extra_kwargs:
        raise Refused(f"--condition-arg {name}: --extra-kwargs fixes it already")
    if positional[2:3] == [name]:
        return None  # the third argument: passed positionally, so that a script can bind it
    if any(p.name == name and p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY) for p in params) or \
            any(p.kind == P.VAR_KEYWORD for p in params):
        return name
    raise Refused(f"--condition-arg {name}: {listing} has no parameter '{name}'")


def condition_hint(model, args, error):
    """Why a call may have failed: a condition nobody supplies, or a label the network cannot embed."""
    if args.condition == "class" and "index out of range" in str(error):
        return (f" (the probe labels were 0 … {args.num_classes - 1} and the null label {args.null_class}: does the "
                f"network embed {args.null_class + 1} labels? see --num-classes and --null-class)")
    if args.condition:
        return ""
    P = inspect.Parameter
    params = (forward_parameters(model) or [])[2:]
    waiting = [p.name for p in params if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY) and
               p.name not in args.extra_kwargs and (p.default is P.empty or p.default is None)]
    if not waiting:
        return ""
    third = params[0].kind == P.POSITIONAL_OR_KEYWORD and params[0].name == waiting[0]
    return (f"; forward also takes {short_list(waiting)}: for a conditional network give --condition class "
            "--num-classes N or --condition tensor --condition-shape D…" +
            ("" if third else f", and --condition-arg {waiting[0]}"))


def random_conditions(args, n):
    """n probe conditions, the last one the null condition when there is one; None without a condition."""
    if args.condition == "class":
        c = torch.randint(0, args.num_classes, (n,))
        c[-1] = args.null_class
        return c
    if args.condition == "tensor":
        c = torch.randn(n, *args.condition_shape)
        if args.null_tensor is not None:
            c[-1] = args.null_tensor
        return c
    return None


def condition_card(args):
    if args.condition == "class":
        return {"kind": "class", "num_classes": args.num_classes, "null_class": args.null_class}
    card = {"kind": "tensor", "shape": list(args.condition_shape)}
    if args.null_condition:
        card["null_file"] = companion(args.out, "_null_condition.pt")
    return card


# ---- probing, wrapping, exporting ----

def random_times(args, steps, n):
    if args.schedule == "ddpm-discrete":
        t = torch.randint(0, steps, (n,))
        return t if args.time_dtype == "long" else t.float()
    return (torch.rand(n) * 0.98 + 0.01) * args.t_max * args.time_scale


def inputs(args, steps, n):
    """x, t and (a conditional model) c for n probe samples."""
    return torch.randn(n, *args.shape), random_times(args, steps, n), random_conditions(args, n)


def operands(x, t, c):
    """The exported module's arguments: (x, t), or (x, t, c)."""
    return (x, t) if c is None else (x, t, c)


def signature(x, t, c, keyword=None):
    def arg(name, v):
        return f"{name} {list(v.shape)} {str(v.dtype)[6:]}"
    conditioned = "" if c is None else f", {arg(keyword or 'c', c)}"
    return f"forward({arg('x', x)}, {arg('t', t)}{conditioned})"


def call(model, x, t, c, kwargs, keyword):
    """The network called as the export calls it: c third, or as the keyword argument `keyword`."""
    if c is None:
        return model(x, t, **kwargs)
    if keyword:
        return model(x, t, **kwargs, **{keyword: c})
    return model(x, t, c, **kwargs)


def select(out, key):
    """The prediction tensor in whatever forward returned, and how it was found."""
    if isinstance(out, torch.Tensor):
        return out, "tensor"
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0], "first"
    if isinstance(out, dict):
        if not isinstance(out.get(key), torch.Tensor):
            raise Refused(f"forward returned a dict without a tensor under '{key}' "
                          f"(keys: {', '.join(map(str, out))}); name the key with --output-key")
        return out[key], "key"
    if isinstance(getattr(out, "sample", None), torch.Tensor):
        return out.sample, "sample"
    raise Refused(f"forward returned {type(out).__name__}, expected a tensor, a tuple or list starting with one, "
                  "a dict (--output-key) or an object with .sample")


def run_eager(model, x, t, c, args):
    try:
        with torch.no_grad():
            out = call(model, x, t, c, args.extra_kwargs, args.condition_keyword)
    except Refused:
        raise
    except Exception as e:
        integer_time = "Long" in str(e) and t.is_floating_point()
        hint = " (an integer-time network needs --time-dtype long)" if integer_time else condition_hint(model, args, e)
        raise Refused(f"{signature(x, t, c, args.condition_keyword)} failed: {describe(e)}{hint}")
    return select(out, args.output_key)


class Selected(nn.Module):
    """A scriptable wrapper: the network called with (x, t) or (x, t, c), the prediction taken from its
    output (`output`); TwoInputs or ThreeInputs gives it its forward."""

    conditional: torch.jit.Final[bool]

    def __init__(self, model, conditional: bool, key: str):
        super().__init__()
        self.model = model
        self.conditional = conditional
        self.key = key

    def network(self, x, t, c: Optional[torch.Tensor]):
        if self.conditional:  # a constant: a script compiles only the branch taken
            assert c is not None
            return self.model(x, t, c)
        return self.model(x, t)


class FirstOutput(Selected):
    def output(self, x, t, c: Optional[torch.Tensor]):
        return self.network(x, t, c)[0]


class KeyOutput(Selected):
    def output(self, x, t, c: Optional[torch.Tensor]):
        return self.network(x, t, c)[self.key]


class SampleOutput(Selected):
    def output(self, x, t, c: Optional[torch.Tensor]):
        return self.network(x, t, c).sample


class TwoInputs:
    def forward(self, x, t):
        return self.output(x, t, None)


class ThreeInputs:
    def forward(self, x, t, c):
        return self.output(x, t, c)


class TracedCall(nn.Module):
    """Any output, fixed keyword arguments, c by keyword: only for tracing."""

    def __init__(self, model, args):
        super().__init__()
        self.model = model
        self.kwargs = args.extra_kwargs
        self.keyword = args.condition_keyword
        self.key = args.output_key

    def forward(self, x, t, c=None):
        return select(call(self.model, x, t, c, self.kwargs, self.keyword), self.key)[0]


def scriptable_wrapper(model, how, args):
    if how == "tensor":
        return model
    kind = {"first": FirstOutput, "key": KeyOutput, "sample": SampleOutput}[how]
    arity = ThreeInputs if args.condition else TwoInputs
    return type(kind.__name__, (arity, kind), {})(model, args.condition is not None, args.output_key)


def script_failure(error):
    """One line from a TorchScript error: its most telling sentence, and the code it points at."""
    raw = str(error).splitlines()
    lines = [line.strip() for line in raw if line.strip()]
    reason = next((line for line in lines if "not annotated" in line), None) or \
        next((line for line in lines if line.endswith((".", ":")) and not line.startswith("File")), None) or \
        (lines[0] if lines else type(error).__name__)
    where = [m for line in lines for m in re.findall(r'File "([^"]+)", line (\d+)', line)]
    if not where:
        return reason
    marks = [i for i, line in enumerate(raw) if "<--- HERE" in line and i > 0]
    code = f": {raw[marks[-1] - 1].strip()}" if marks else ""
    return f"{reason.rstrip(':')} ({os.path.basename(where[-1][0])}:{where[-1][1]}{code})"


def requiring_grad(module):
    """Sets requires_grad on every floating-point parameter (idtune does the same on load)."""
    for p in module.parameters():
        if p.is_floating_point():
            p.requires_grad_(True)
    return module


def trace(module, x, t, c):
    """Traced with autograd on and x and the parameters requiring grad: no inference-only kernels."""
    requiring_grad(module)
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings: the comparison on a second batch size decides
        # check_trace re-runs the trace under no_grad, where the fused kernels would appear: off.
        traced = torch.jit.trace(module, operands(x.clone().requires_grad_(True), t, c), check_trace=False)
    ops = sorted({kind for kind in graph_ops(traced.inlined_graph) if kind in INFERENCE_ONLY_OPS})
    if ops:
        raise Refused(f"the traced graph holds {', '.join(ops)}, an inference-only kernel without a derivative, "
                      "although it was traced with autograd on: does forward run under torch.no_grad()?")
    return traced


def graph_ops(block):
    for node in block.nodes():
        yield node.kind()
        for inner in node.blocks():
            yield from graph_ops(inner)


def export(model, args, steps, how):
    """Scripted, or traced when scripting fails (or --trace, --extra-kwargs, c by keyword); returns (module, method)."""
    x, t, c = inputs(args, steps, 4)
    kwargs, keyword = args.extra_kwargs, args.condition_keyword
    if not args.trace and (kwargs or keyword):
        bound = ([f"fixed keyword arguments {json.dumps(kwargs)}"] if kwargs else []) + \
            ([f"the condition as keyword argument '{keyword}'"] if keyword else [])
        print(f"export_model.py: {' and '.join(bound)}: tracing (a script cannot bind keyword arguments)")
    elif not args.trace:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's own notes about its modules' constants
                scripted = torch.jit.script(scriptable_wrapper(model, how, args))
            with torch.no_grad():
                scripted(*operands(x, t, c))
            return scripted, "scripted"
        except Exception as e:  # any TorchScript failure: fall back to tracing
            print(f"export_model.py: torch.jit.script failed: {script_failure(e)}; {TRACE_HINT}: tracing instead")
    try:
        wrapped = TracedCall(model, args) if kwargs or keyword or how != "tensor" else model
        return trace(wrapped, x, t, c), "traced"
    except Refused:
        raise
    except Exception as e:
        raise Refused(f"torch.jit.trace failed: {describe(e)}")


def compare(model, exported, args, steps):
    """Exported vs eager on fresh inputs, at batch sizes 4 and 3 (a trace must generalise)."""
    for n in (4, 3):
        x, t, c = inputs(args, steps, n)
        eager, _ = run_eager(model, x, t, c, args)
        try:
            with torch.no_grad():
                got = exported(*operands(x, t, c))
        except Exception as e:
            raise Refused(f"the exported module fails on {signature(x, t, c)} (a trace fixes Python branches and "
                          f"sizes): {describe(e)}")
        error = (eager - got).abs().max().item() / max(eager.abs().max().item(), 1e-12)
        if tuple(got.shape) != tuple(eager.shape) or not error <= RELATIVE_TOLERANCE:
            raise Refused(f"the exported module differs from the eager one (relative error {error:.2e} > "
                          f"{RELATIVE_TOLERANCE} at batch size {n}); nothing written")


def check_condition_used(exported, args, steps):
    """A warning when the output is the same for every condition at one x and t (guidance would do nothing)."""
    x, t, c = inputs(args, steps, 4)
    if all(torch.equal(c[i], c[0]) for i in range(1, 4)):
        return
    with torch.no_grad():
        out = exported(x[:1].expand_as(x).contiguous(), t[:1].expand_as(t).contiguous(), c)
    tolerance = 1e-5 * max(out.abs().max().item(), 1e-12)
    if all(torch.allclose(out[i], out[0], rtol=0, atol=tolerance) for i in range(1, 4)):
        where = f"keyword argument '{args.condition_keyword}'" if args.condition_keyword else "third argument"
        print(f"export_model.py: warning: the output does not depend on the condition (passed as the {where}): is "
              "that the network's condition? guidance would change nothing")


def check_output(out, x, args):
    expected = [x.shape[0], args.output_channels or args.shape[0], *args.shape[1:]]
    if list(out.shape) == expected:
        if not torch.isfinite(out).all():
            raise Refused("forward returned values that are not finite on random inputs")
        return
    hint = ""
    more = out.dim() == 4 and out.shape[1] > args.shape[0] and list(out.shape[2:]) == args.shape[1:]
    if more and not args.output_channels:
        hint = (f" (more channels than the input: give --output-channels {out.shape[1]} if the first "
                f"{args.shape[0]} are the prediction, e.g. with a learned variance)")
    raise Refused(f"forward returned shape {tuple(out.shape)}, expected {tuple(expected)}{hint}")


def probe_gradient(exported, args, steps):
    """One VJP of the prediction (first C channels) w.r.t. x and every parameter (a random and the null condition)."""
    x, t, c = inputs(args, steps, 2)
    x.requires_grad_(True)
    params = [p for p in requiring_grad(exported).parameters() if p.is_floating_point()]
    try:
        with torch.enable_grad():
            out = exported(*operands(x, t, c))[:, : args.shape[0]]
            grads = torch.autograd.grad(out, [x] + params, torch.randn_like(out), allow_unused=True)
    except RuntimeError as e:
        op = re.search(r"derivative for (\S+) is not implemented", str(e))
        if op and op.group(1) in INFERENCE_ONLY_OPS:
            raise Refused(f"the exported module cannot be differentiated: the derivative for {op.group(1)} is not "
                          "implemented; it is the fused inference kernel of nn.MultiheadAttention: call the module "
                          "rather than the kernel, and not under torch.no_grad()")
        if op:
            raise Refused(f"the exported module cannot be differentiated: the derivative for {op.group(1)} is not "
                          f"implemented in torch {torch.__version__.split('+')[0]}; replace that op in the network")
        raise Refused(f"the exported module cannot be differentiated: {first_line(e)} (does forward run under "
                      "torch.no_grad() or detach its result?)")
    if grads[0] is None:
        raise Refused("the prediction does not depend on x")
    named = [n for n, p in exported.named_parameters() if p.is_floating_point()]
    idle = [n for n, g in zip(named, grads[1:]) if g is None]
    if idle:
        print(f"export_model.py: warning: {len(idle)} of {len(named)} parameters get no gradient "
              f"({short_list(idle, 2)}): tuning leaves them as they are (unused, or under torch.no_grad()?)")
    if not all(torch.isfinite(g).all() for g in grads if g is not None):
        raise Refused("the gradient of the prediction is not finite")


# ---- the decoder ----

def check_decoder(args):
    if not os.path.isfile(args.decoder):
        raise Refused(f"decoder '{args.decoder}' does not exist")
    try:
        decoder = torch.jit.load(args.decoder)
    except Exception as e:
        raise Refused(f"decoder '{args.decoder}' is not a TorchScript file ({first_line(e)}); save it with "
                      "torch.jit.script(decoder).save(path)")
    decoder.eval()
    z = torch.randn(3, *args.shape, requires_grad=True)
    try:
        with torch.enable_grad():
            images = decoder(z / args.scale_factor)
            (grad,) = torch.autograd.grad(images, z, torch.randn_like(images))
    except Exception as e:
        raise Refused(f"decoder(z [3, {', '.join(map(str, args.shape))}] / {args.scale_factor}) failed or cannot be "
                      f"differentiated: {describe(e)}")
    if list(images.shape) != [3, *args.image_shape]:
        raise Refused(f"the decoder returned shape {list(images.shape)} for latents {[3, *args.shape]}, expected "
                      f"{[3, *args.image_shape]} (--image-shape)")
    if not (torch.isfinite(images).all() and torch.isfinite(grad).all()):
        raise Refused("the decoder's images or their gradient are not finite")
    lo, hi = args.data_range
    inside = ((images >= lo) & (images <= hi)).float().mean().item()
    if inside < 0.99:
        print(f"export_model.py: warning: only {100 * inside:.0f}% of the decoded pixels lie in --data-range "
              f"{lo:g} {hi:g} (random latents)")


# ---- the command line ----

class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Refused(message)


def parse_args(argv):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--module", required=True, help="Python file defining the network")
    p.add_argument("--class", dest="class_name", required=True, help="class, or function returning the module")
    p.add_argument("--init-kwargs", default="{}", help="JSON keyword arguments of the constructor")
    p.add_argument("--state-dict", help="torch.save'd state dict (or dict holding one); without it, the weights "
                   "--class built (a function that loads a checkpoint itself)")
    p.add_argument("--state-dict-key", default="", help="key of the state dict inside the checkpoint")
    p.add_argument("--state-dict-prefix", default="", help="keep only keys with this prefix, removed (e.g. module.)")
    p.add_argument("--submodule", default="", help="export this attribute of the built object (e.g. model)")
    p.add_argument("--out", required=True, help="output .pt (the card is written beside it as .json)")
    p.add_argument("--shape", type=int, nargs=3, required=True, metavar=("C", "H", "W"))
    p.add_argument("--data-range", type=float, nargs=2, default=[-1.0, 1.0])
    p.add_argument("--schedule", choices=card_rules.SCHEDULES, required=True)
    p.add_argument("--t-max", type=float, help="ou, vp-linear: default 1; cosine: required, < 1")
    p.add_argument("--beta-min", type=float, default=0.1)
    p.add_argument("--beta-max", type=float, default=20.0)
    p.add_argument("--cosine-s", type=float, default=0.008)
    p.add_argument("--beta-schedule", choices=card_rules.BETA_SCHEDULES)
    p.add_argument("--beta-start", type=float)
    p.add_argument("--beta-end", type=float)
    p.add_argument("--num-train-steps", type=int)
    p.add_argument("--betas-from", help="torch.save'd 1-D tensor of betas")
    p.add_argument("--alphas-cumprod-from", help="torch.save'd 1-D tensor of alphas_cumprod")
    p.add_argument("--alphas-cumprod-attr", help="attribute of the built object holding alphas_cumprod")
    p.add_argument("--prediction", choices=card_rules.PREDICTIONS, required=True)
    p.add_argument("--output-channels", type=int, help="channels of the output (default C)")
    p.add_argument("--output-key", default="sample", help="key of the prediction when forward returns a dict")
    p.add_argument("--extra-kwargs", default="{}", help="JSON keyword arguments fixed in every call")
    p.add_argument("--time-dtype", choices=["float", "long"])
    p.add_argument("--time-scale", type=float, default=1.0, help="continuous: the network receives time_scale * t")
    p.add_argument("--decoder", help="TorchScript decoder of a latent model")
    p.add_argument("--scale-factor", type=float, help="latent scale: images = decoder(latent / scale_factor)")
    p.add_argument("--image-shape", type=int, nargs=3, metavar=("C", "H", "W"), help="shape of decoded images")
    p.add_argument("--condition", choices=["class", "tensor"], help="a conditional network: forward(x, t, c)")
    p.add_argument("--num-classes", type=int, help="class: labels 0 … N-1")
    p.add_argument("--null-class", type=int, help="class: the label of no condition, in [0, N] (default N)")
    p.add_argument("--condition-shape", type=int, nargs="+", metavar="D", help="tensor: the shape of one condition")
    p.add_argument("--null-condition", help="tensor: torch.save'd condition [D…] of no condition (copied beside "
                   "the card)")
    p.add_argument("--condition-arg", metavar="NAME", help="forward's parameter for c, passed by keyword unless it is "
                   "the third (default: the third positional argument)")
    p.add_argument("--trace", action="store_true", help="torch.jit.trace without trying torch.jit.script")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe inputs")
    return check_args(p.parse_args(argv))


def check_args(a):
    if any(d < 1 for d in a.shape):
        raise Refused(f"--shape {' '.join(map(str, a.shape))}: every size must be >= 1")
    if a.data_range[0] >= a.data_range[1]:
        raise Refused("--data-range must be LOW HIGH with LOW < HIGH")
    discrete = a.schedule == "ddpm-discrete"
    discrete_flags = [f for f, v in (("--beta-schedule", a.beta_schedule), ("--beta-start", a.beta_start),
                                     ("--beta-end", a.beta_end), ("--num-train-steps", a.num_train_steps),
                                     ("--betas-from", a.betas_from), ("--alphas-cumprod-from", a.alphas_cumprod_from),
                                     ("--alphas-cumprod-attr", a.alphas_cumprod_attr)) if v is not None]
    if not discrete and discrete_flags:
        raise Refused(f"{discrete_flags[0]} needs --schedule ddpm-discrete, got --schedule {a.schedule}")
    tables = [f for f in discrete_flags if f in ("--betas-from", "--alphas-cumprod-from", "--alphas-cumprod-attr")]
    if len(tables) > 1 or (tables and len(discrete_flags) > 1):
        other = [f for f in discrete_flags if f != tables[0]][0]
        raise Refused(f"{tables[0]} gives the whole schedule: drop {other}")
    a.beta_schedule = a.beta_schedule or "linear"
    a.beta_start = 1e-4 if a.beta_start is None else a.beta_start
    a.beta_end = 0.02 if a.beta_end is None else a.beta_end
    a.num_train_steps = 1000 if a.num_train_steps is None else a.num_train_steps
    if discrete and not tables and not 0 < a.beta_start <= a.beta_end <= 1:
        raise Refused(f"--beta-start {a.beta_start:g} --beta-end {a.beta_end:g}: expected 0 < start <= end <= 1")
    if discrete and not tables and not 2 <= a.num_train_steps <= 100000:
        raise Refused(f"--num-train-steps {a.num_train_steps}: expected 2 … 100000")
    if a.schedule == "cosine" and (a.t_max is None or not 0 < a.t_max < 1):
        raise Refused(f"--schedule cosine needs --t-max in (0, 1) (0.99 is usual: the signal vanishes at t = 1), got "
                      f"{'none' if a.t_max is None else f'{a.t_max:g}'}")
    limit = {"ou": 100.0, "vp-linear": 1.0}.get(a.schedule)
    if a.t_max is not None and limit and not 0 < a.t_max <= limit:
        raise Refused(f"--t-max {a.t_max:g}: expected (0, {limit:g}] for --schedule {a.schedule}")
    if a.t_max is not None and discrete:
        raise Refused("--t-max is for continuous schedules: ddpm-discrete runs over its training steps")
    a.t_max = 1.0 if a.t_max is None else a.t_max
    a.time_dtype = a.time_dtype or ("long" if discrete else "float")
    if not discrete and a.time_dtype == "long":
        raise Refused(f"--time-dtype long needs --schedule ddpm-discrete (integer step indices), got {a.schedule}")
    if not a.time_scale > 0 or (discrete and a.time_scale != 1):
        raise Refused(f"--time-scale {a.time_scale:g}: expected > 0, and only with a continuous schedule "
                      "(a discrete network receives the step index)")
    if a.output_channels is not None and a.output_channels < a.shape[0]:
        raise Refused(f"--output-channels {a.output_channels}: expected >= C = {a.shape[0]}")
    latent_flags = [f for f, v in (("--scale-factor", a.scale_factor), ("--image-shape", a.image_shape))
                    if v is not None]
    if a.decoder is None and latent_flags:
        raise Refused(f"{latent_flags[0]} needs --decoder")
    if a.decoder is not None and a.image_shape is None:
        raise Refused("--decoder needs --image-shape C H W (the shape of the decoded images)")
    a.extra_kwargs = json_object(a.extra_kwargs, "--extra-kwargs")
    a.scale_factor = 1.0 if a.scale_factor is None else a.scale_factor
    if not a.scale_factor > 0:
        raise Refused(f"--scale-factor {a.scale_factor:g}: expected > 0")
    return check_condition_args(a)


def check_condition_args(a):
    flags = (("--num-classes", a.num_classes, "class"), ("--null-class", a.null_class, "class"),
             ("--condition-shape", a.condition_shape, "tensor"), ("--null-condition", a.null_condition, "tensor"),
             ("--condition-arg", a.condition_arg, None))
    for flag, value, kind in flags:
        if value is not None and a.condition is None:
            raise Refused(f"{flag} needs --condition {kind or 'class or --condition tensor'}")
        if value is not None and kind and kind != a.condition:
            what = "int64 labels [B]" if a.condition == "class" else "float tensors [B, D…]"
            raise Refused(f"{flag} is for --condition {kind}; --condition {a.condition} feeds {what}")
    if a.condition == "class":
        if a.num_classes is None or not 1 <= a.num_classes <= 1000000:
            raise Refused(f"--condition class needs --num-classes N in [1, 1000000]"
                          f"{'' if a.num_classes is None else f', got {a.num_classes}'}")
        a.null_class = a.num_classes if a.null_class is None else a.null_class
        if not 0 <= a.null_class <= a.num_classes:
            raise Refused(f"--null-class {a.null_class}: expected a label in [0, {a.num_classes}] ({a.num_classes}, "
                          "the default, is the usual extra label that training dropped labels to)")
    if a.condition == "tensor" and (not a.condition_shape or len(a.condition_shape) > 4 or
                                    not all(1 <= d <= 1000000 for d in a.condition_shape)):
        got = f", got {' '.join(map(str, a.condition_shape))}" if a.condition_shape else ""
        raise Refused(f"--condition tensor needs --condition-shape D1 [D2 …], the shape of one condition (e.g. 77 "
                      f"768): 1 to 4 sizes, each in [1, 1000000]{got}")
    if a.condition_arg is not None and not a.condition_arg.isidentifier():
        raise Refused(f"--condition-arg {a.condition_arg!r}: expected the name of forward's parameter")
    return a


def card_for(args, schedule, method, n_params):
    discrete = args.schedule == "ddpm-discrete"
    card = {"shape": args.shape, "data_range": args.data_range, "schedule": schedule, "prediction": args.prediction,
            "output_channels": args.output_channels or args.shape[0],
            "time_input": "discrete" if discrete else "continuous", "time_scale": args.time_scale,
            "time_dtype": args.time_dtype}
    if args.decoder:
        card["decoder"] = {"file": companion(args.out, "_decoder.pt"), "scale_factor": args.scale_factor,
                           "image_shape": args.image_shape}
    if args.condition:
        card["condition"] = condition_card(args)
    card["provenance"] = {"exported_by": "scripts/export_model.py", "module": os.path.basename(args.module),
                          "class": args.class_name, "state_dict": os.path.basename(args.state_dict or ""),
                          "traced": method == "traced", "parameters": n_params}
    if args.submodule:
        card["provenance"]["submodule"] = args.submodule
    try:
        card_rules.parse_card(card, args.out)
    except card_rules.CardError as e:
        raise Refused(f"the card would be refused by idtune: {e}")
    return card


def companion(out, suffix):
    """A file the card names, beside it: dir/stem.pt -> stem<suffix> (idtune's ScoreModel::save writes a
    decoder as stem_decoder.pt)."""
    return os.path.splitext(os.path.basename(out))[0] + suffix


def companions(card, args):
    """(source, name beside the card) of each file the card names: the decoder, the null condition."""
    files = [(args.decoder, card["decoder"]["file"])] if args.decoder else []
    if "null_file" in card.get("condition", {}):
        files.append((args.null_condition, card["condition"]["null_file"]))
    return files


def write(exported, card, args):
    folder = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    for source, name in companions(card, args):
        target = os.path.join(folder, name)
        if os.path.abspath(source) != target:
            shutil.copyfile(source, target + ".tmp")
            os.replace(target + ".tmp", target)
    exported.save(args.out + ".tmp")
    os.replace(args.out + ".tmp", args.out)
    card_path = os.path.splitext(args.out)[0] + ".json"
    with open(card_path + ".tmp", "w") as f:
        json.dump(card, f, indent=2)
    os.replace(card_path + ".tmp", card_path)
    return card_path


def run(argv):
    args = parse_args(argv)
    args.null_tensor = read_null_condition(args) if args.condition == "tensor" else None
    torch.manual_seed(args.seed)
    obj = build(args)
    model = load_weights(obj, args)
    args.condition_keyword = condition_keyword(model, args) if args.condition else None
    schedule = schedule_card(args, obj)
    check_schedule(schedule, obj, args)
    check_objective(obj, args.prediction)
    steps = card_rules.discrete_alpha_bar(schedule).numel() if args.schedule == "ddpm-discrete" else 0
    model.eval()
    x, t, c = inputs(args, steps, 4)
    out, how = run_eager(model, x, t, c, args)
    check_output(out, x, args)
    exported, method = export(model, args, steps, how)
    compare(model, exported, args, steps)
    if args.condition:
        check_condition_used(exported, args, steps)
    probe_gradient(exported, args, steps)
    if args.decoder:
        check_decoder(args)
    n_params = sum(p.numel() for p in model.parameters())
    card = card_for(args, schedule, method, n_params)
    if args.condition == "tensor" and args.null_tensor is None:
        print("export_model.py: note: no --null-condition: idtune cannot guide this model (sampler.guidance_scale "
              "needs the null condition)")
    card_path = write(exported, card, args)
    extra = "".join(f" and {name}" for _, name in companions(card, args))
    print(f"wrote {args.out} ({method}, {n_params} parameters), {card_path}{extra}")


def main():
    torch.set_num_threads(int(os.environ.get("IDTUNE_NUM_THREADS", 0)) or torch.get_num_threads())
    try:
        run(sys.argv[1:])
    except Refused as e:
        print(f"export_model.py: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
