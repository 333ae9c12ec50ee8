#!/usr/bin/python3
"""Exports a PyTorch score model to what idtune loads: a TorchScript file and its model card.

From a Python file that defines the network, the class name and a plain state-dict checkpoint:

    /usr/bin/python3 scripts/export_model.py --module my_unet.py --class UNet \
        --state-dict checkpoint.pt [--state-dict-key ema] [--init-kwargs '{"ch": 64}'] \
        --shape 1 28 28 --data-range -1 1 --schedule ou --t-max 3 --prediction epsilon \
        --out models/my_unet.pt

The network must have forward(x [B, C, H, W], t [B]) -> [B, C, H, W]. It is scripted
(torch.jit.script) or, with --trace, traced; before anything is written, the exported module's
output is compared with the eager module's on random inputs at random times, and the export is
refused if they differ. The card (models/my_unet.json) records the shape, data range, schedule,
prediction type (score | epsilon | v) and time input (continuous t, or the discrete training index
for --schedule ddpm-discrete); see docs/model-card.md.
"""
import argparse
import importlib.util
import json
import os
import sys

import torch

# Scripted and eager graphs run the same kernels; tracing or fused ops may reorder sums.
RELATIVE_TOLERANCE = 1e-4


def load_class(path, name):
    if not os.path.isfile(path):
        sys.exit(f"export_model.py: module file '{path}' does not exist")
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec.loader.exec_module(module)
    if not hasattr(module, name):
        found = [n for n in dir(module) if isinstance(getattr(module, n), type)]
        sys.exit(f"export_model.py: '{path}' defines no class '{name}' (classes: {', '.join(found)})")
    return getattr(module, name)


def load_state_dict(path, key):
    if not os.path.isfile(path):
        sys.exit(f"export_model.py: checkpoint '{path}' does not exist")
    state = torch.load(path, map_location="cpu")
    if key:
        if key not in state:
            sys.exit(f"export_model.py: checkpoint has no key '{key}' (keys: {', '.join(state)})")
        state = state[key]
    return state


def schedule_card(args):
    if args.schedule == "ou":
        return {"kind": "ou", "t_max": args.t_max}
    if args.schedule == "vp-linear":
        return {"kind": "vp-linear", "t_max": args.t_max, "beta_min": args.beta_min, "beta_max": args.beta_max}
    if args.schedule == "cosine":
        return {"kind": "cosine", "t_max": args.t_max}
    return {"kind": "ddpm-discrete", "beta_start": args.beta_start, "beta_end": args.beta_end,
            "num_train_steps": args.num_train_steps}


def random_times(args, n):
    if args.schedule == "ddpm-discrete":
        t = torch.randint(0, args.num_train_steps, (n,))
        return t if args.time_dtype == "long" else t.float()
    return torch.rand(n) * args.t_max * 0.98 + 0.01 * args.t_max


def export(model, args):
    x = torch.randn(4, *args.shape) * (args.data_range[1] - args.data_range[0]) / 2
    t = random_times(args, 4)
    with torch.no_grad():
        exported = torch.jit.trace(model, (x, t)) if args.trace else torch.jit.script(model)
        x2, t2 = torch.randn_like(x), random_times(args, 4)  # fresh inputs: a trace must generalise
        for xi, ti in ((x, t), (x2, t2)):
            eager, scripted = model(xi, ti), exported(xi, ti)
            if tuple(eager.shape) != tuple(xi.shape):
                sys.exit(f"export_model.py: forward returned shape {tuple(eager.shape)}, expected {tuple(xi.shape)}")
            error = (eager - scripted).abs().max().item() / max(eager.abs().max().item(), 1e-12)
            if error > RELATIVE_TOLERANCE:
                sys.exit(f"export_model.py: the exported module differs from the eager one (relative "
                         f"error {error:.2e} > {RELATIVE_TOLERANCE}); nothing written")
    return exported


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--module", required=True, help="Python file defining the network")
    p.add_argument("--class", dest="class_name", required=True)
    p.add_argument("--init-kwargs", default="{}", help="JSON keyword arguments of the constructor")
    p.add_argument("--state-dict", required=True, help="torch.save'd state dict (or dict holding one)")
    p.add_argument("--state-dict-key", default="", help="key of the state dict inside the checkpoint")
    p.add_argument("--out", required=True, help="output .pt (the card is written beside it as .json)")
    p.add_argument("--shape", type=int, nargs=3, required=True, metavar=("C", "H", "W"))
    p.add_argument("--data-range", type=float, nargs=2, default=[-1.0, 1.0])
    p.add_argument("--schedule", choices=["ou", "vp-linear", "cosine", "ddpm-discrete"], required=True)
    p.add_argument("--t-max", type=float, default=1.0)
    p.add_argument("--beta-min", type=float, default=0.1)
    p.add_argument("--beta-max", type=float, default=20.0)
    p.add_argument("--beta-start", type=float, default=1e-4)
    p.add_argument("--beta-end", type=float, default=0.02)
    p.add_argument("--num-train-steps", type=int, default=1000)
    p.add_argument("--prediction", choices=["score", "epsilon", "v"], required=True)
    p.add_argument("--time-dtype", choices=["float", "long"], default="float")
    p.add_argument("--trace", action="store_true", help="torch.jit.trace instead of torch.jit.script")
    args = p.parse_args()
    if args.data_range[0] >= args.data_range[1]:
        sys.exit("export_model.py: --data-range must be LOW HIGH with LOW < HIGH")

    model = load_class(args.module, args.class_name)(**json.loads(args.init_kwargs))
    try:
        missing, unexpected = model.load_state_dict(load_state_dict(args.state_dict, args.state_dict_key), strict=False)
    except RuntimeError as e:  # shapes that differ
        sys.exit(f"export_model.py: state dict does not fit {args.class_name}: {e}")
    if missing or unexpected:
        sys.exit(f"export_model.py: state dict does not fit {args.class_name}: missing {missing}, unexpected {unexpected}")
    model.eval()
    exported = export(model, args)

    discrete = args.schedule == "ddpm-discrete"
    card = {"shape": args.shape, "data_range": args.data_range, "schedule": schedule_card(args),
            "prediction": args.prediction, "time_input": "discrete" if discrete else "continuous",
            "time_dtype": args.time_dtype if discrete else "float",
            "provenance": {"exported_by": "scripts/export_model.py", "module": os.path.basename(args.module),
                           "class": args.class_name, "state_dict": os.path.basename(args.state_dict),
                           "traced": args.trace}}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    exported.save(args.out + ".tmp")
    os.replace(args.out + ".tmp", args.out)
    card_path = os.path.splitext(args.out)[0] + ".json"
    with open(card_path + ".tmp", "w") as f:
        json.dump(card, f, indent=2)
    os.replace(card_path + ".tmp", card_path)
    print(f"wrote {args.out} and {card_path} ({sum(q.numel() for q in model.parameters())} parameters)")


if __name__ == "__main__":
    main()
