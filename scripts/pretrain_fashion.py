#!/usr/bin/python3
"""Pretrains the shipped default score model: a small U-Net on Fashion-MNIST (28x28, [-1, 1]).

Schedule `ou` (the paper's): X_t = e^{-t} X_0 + sqrt(1 - e^{-2t}) eps on t in [0, t_max], with
t_max = 3 so that X_{t_max} is N(0, I) to within alpha = e^{-3} = 0.05. The network predicts eps
(`prediction: epsilon` in its card; idtune turns it into the score s = -eps/sigma). U-Net with
GroupNorm and SiLU, sinusoidal time embedding, average-pool down and nearest-upsample + conv up
(no ConvTranspose2d), skip connections; EMA of the weights is what gets exported.

    /usr/bin/python3 scripts/pretrain_fashion.py [--steps 8000] [--batch 128] [--seed 0] [--threads N]

Writes models/fashion_unet.pt (TorchScript, EMA weights) and models/fashion_unet.json (its card),
every --export-every steps and at the end, each atomically; a training checkpoint beside it lets
an interrupted run continue (--resume).

Class-conditional (the shipped models/fashion_cond.pt): --classes 10 --label-dropout 0.1. The
network is then forward(x, t, y) with y in 0..9 or the null label 10, which replaces the true
label with probability --label-dropout during training, so that classifier-free guidance works;
its card declares {"condition": {"kind": "class", "num_classes": 10, "null_class": 10}}.

Training elsewhere (e.g. on a GPU machine with another PyTorch): --weights-out W.npz writes the
EMA weights as plain arrays (no pickle, readable by any PyTorch), and --export-from W.npz turns
them into the TorchScript file and card here, without training. FASHION_MNIST_DIR names the
folder of the idx files when it is not Debian's.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import fashion_mnist  # noqa: E402

T_MAX = 3.0
T_MIN = 1e-3


def timestep_embedding(t, dim: int, scale: float):
    """Sinusoidal features of t * scale (t_max maps to 1000)."""
    half = dim // 2
    freqs = torch.exp(-9.210340371976184 * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (t.float() * scale)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(8, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, e):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(e)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """28 -> 14 -> 7 and back; `forward(x [B,1,28,28], t [B]) -> eps [B,1,28,28]`."""

    def __init__(self, ch: int = 32, temb: int = 128):
        super().__init__()
        self.channels = ch
        self.temb_dim = temb
        self.time_scale = 1000.0 / T_MAX
        self.time_mlp = nn.Sequential(nn.Linear(temb, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(1, ch, 3, padding=1)
        self.down1 = ResBlock(ch, ch, temb)
        self.down2 = ResBlock(ch, 2 * ch, temb)
        self.down3 = ResBlock(2 * ch, 2 * ch, temb)
        self.mid = ResBlock(2 * ch, 2 * ch, temb)
        self.up3 = ResBlock(4 * ch, 2 * ch, temb)
        self.up2 = ResBlock(4 * ch, 2 * ch, temb)
        self.up1 = ResBlock(3 * ch, ch, temb)
        self.upconv3 = nn.Conv2d(2 * ch, 2 * ch, 3, padding=1)
        self.upconv2 = nn.Conv2d(2 * ch, 2 * ch, 3, padding=1)
        self.norm_out = nn.GroupNorm(8, ch)
        self.conv_out = nn.Conv2d(ch, 1, 3, padding=1)

    def forward(self, x, t):
        return self.denoise(x, self.time_mlp(timestep_embedding(t, self.temb_dim, self.time_scale)))

    def denoise(self, x, e):
        h1 = self.down1(self.conv_in(x), e)                      # ch   @ 28
        h2 = self.down2(F.avg_pool2d(h1, 2), e)                  # 2ch  @ 14
        h3 = self.down3(F.avg_pool2d(h2, 2), e)                  # 2ch  @ 7
        u = self.up3(torch.cat([self.mid(h3, e), h3], 1), e)     # 2ch  @ 7
        u = self.upconv3(F.interpolate(u, scale_factor=2.0, mode="nearest"))
        u = self.up2(torch.cat([u, h2], 1), e)                   # 2ch  @ 14
        u = self.upconv2(F.interpolate(u, scale_factor=2.0, mode="nearest"))
        u = self.up1(torch.cat([u, h1], 1), e)                   # ch   @ 28
        return self.conv_out(F.silu(self.norm_out(u)))


class ClassUNet(UNet):
    """`forward(x, t, y [B] int64) -> eps`: the label's embedding is added to the time embedding;
    label `num_classes` is the null label (the label dropped), used by classifier-free guidance."""

    def __init__(self, ch: int = 32, temb: int = 128, num_classes: int = 10):
        super().__init__(ch, temb)
        self.num_classes = num_classes
        self.label_embedding = nn.Embedding(num_classes + 1, temb)

    def forward(self, x, t, y):
        e = timestep_embedding(t, self.temb_dim, self.time_scale)
        return self.denoise(x, self.time_mlp(e) + self.label_embedding(y))


def build(args):
    return ClassUNet(args.channels, num_classes=args.classes) if args.classes else UNet(args.channels)


def noise_batch(x0, generator):
    """t: half uniform on [T_MIN, T_MAX], half quadratic (more small times, where detail is)."""
    b = x0.shape[0]
    u = torch.rand(b, generator=generator)
    t = torch.where(torch.arange(b) % 2 == 0, u, u * u) * (T_MAX - T_MIN) + T_MIN
    eps = torch.randn(x0.shape, generator=generator)
    alpha = torch.exp(-t).view(-1, 1, 1, 1)
    return alpha * x0 + torch.sqrt(1 - alpha * alpha) * eps, t, eps


def card(args, provenance):
    c = {"shape": [1, 28, 28], "data_range": [-1.0, 1.0],
         "schedule": {"kind": "ou", "t_max": T_MAX}, "prediction": "epsilon",
         "time_input": "continuous", "time_dtype": "float"}
    if args.classes:
        c["condition"] = {"kind": "class", "num_classes": args.classes, "null_class": args.classes}
    c["provenance"] = provenance
    return c


def provenance(args, steps, seconds, loss):
    return {"trained_by": "scripts/pretrain_fashion.py", "dataset": "Fashion-MNIST train (60k)",
            "steps": steps, "batch": args.batch, "lr": args.lr, "ema_decay": args.ema,
            "seed": args.seed, "channels": args.channels, "classes": args.classes,
            "label_dropout": args.label_dropout if args.classes else 0.0,
            "train_seconds": round(seconds), "final_loss": round(loss, 5),
            "device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads()}


def export(ema, args, info):
    scripted = torch.jit.script(ema)
    tmp = args.out + ".tmp"
    scripted.save(tmp)
    os.replace(tmp, args.out)
    card_path = os.path.splitext(args.out)[0] + ".json"
    with open(card_path + ".tmp", "w") as f:
        json.dump(card(args, info), f, indent=2)
    os.replace(card_path + ".tmp", card_path)


def save_weights(ema, path, info):
    """Plain arrays + the provenance as JSON: loadable by any PyTorch (and numpy) version."""
    arrays = {k: v.detach().cpu().numpy() for k, v in ema.state_dict().items()}
    with open(path + ".tmp", "wb") as f:
        np.savez(f, __provenance__=np.array(json.dumps(info)), **arrays)
    os.replace(path + ".tmp", path)


def export_from_weights(args):
    data = np.load(args.export_from)
    info = json.loads(str(data["__provenance__"]))
    ema = build(args)
    ema.load_state_dict({k: torch.from_numpy(data[k]) for k in data.files if k != "__provenance__"})
    export(ema.eval(), args, dict(info, exported_with=torch.__version__))
    print(f"exported {args.export_from} -> {args.out}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", type=int, default=0, help="0: unconditional; N: forward(x, t, y), null label N")
    p.add_argument("--label-dropout", type=float, default=0.1)
    p.add_argument("--weights-out", help="also write the EMA weights as .npz (see above)")
    p.add_argument("--export-from", help="only export the .npz weights W to --out")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--export-every", type=int, default=1000)
    p.add_argument("--out", default="models/fashion_unet.pt")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-export", action="store_true", help="write only --weights-out (TorchScript elsewhere)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.export_from:
        return export_from_weights(args)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    x, labels = fashion_mnist.load("train")
    model = build(args).to(args.device)
    ema = build(args).to(args.device)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    ckpt_path = os.path.splitext(args.out)[0] + ".train.ckpt"
    step, elapsed = 0, 0.0
    if args.resume and os.path.exists(ckpt_path):
        state = torch.load(ckpt_path)
        model.load_state_dict(state["model"]), ema.load_state_dict(state["ema"]), opt.load_state_dict(state["opt"])
        generator.set_state(state["generator"])
        step, elapsed = state["step"], state["elapsed"]
    print(f"U-Net with {sum(p.numel() for p in model.parameters())} parameters, {args.threads} threads, {args.device}")
    start, running = time.time() - elapsed, None
    while step < args.steps:
        idx = torch.randint(0, len(x), (args.batch,), generator=generator)
        xt, t, eps = noise_batch(x[idx], generator)
        inputs = [xt.to(args.device), t.to(args.device)]
        if args.classes:
            dropped = torch.rand(args.batch, generator=generator) < args.label_dropout
            inputs.append(torch.where(dropped, torch.full_like(idx, args.classes), labels[idx]).to(args.device))
        # Linear warm-up then cosine decay of the learning rate.
        lr = args.lr * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        loss = F.mse_loss(model(*inputs), eps.to(args.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(args.ema).add_(pm, alpha=1 - args.ema)
        step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0:
            s = time.time() - start
            print(f"step {step}/{args.steps}  loss {running:.4f}  {s / step:.3f} s/step  eta {s / step * (args.steps - step) / 60:.1f} min", flush=True)
        if step % args.export_every == 0 or step == args.steps:
            ema.eval()
            info = provenance(args, step, time.time() - start, running)
            if args.weights_out:
                save_weights(ema, args.weights_out, info)
            if not args.no_export:
                export(ema.cpu(), args, info)
            ema.to(args.device)
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "generator": generator.get_state(), "step": step,
                        "elapsed": time.time() - start}, ckpt_path + ".tmp")
            os.replace(ckpt_path + ".tmp", ckpt_path)
    print(f"done: {args.out} after {step} steps, {(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
