#!/usr/bin/python3
"""The worked example of docs/bring-your-own-model.md: a model idtune has never seen.

A different architecture from the shipped U-Net, trained the way many DDPM codebases train:
  * ε-prediction on the discrete DDPM schedule (β linear from 1e-4 to 0.02 over 1000 steps),
  * integer time input t ∈ {0, ..., 999} (an nn.Embedding, not sinusoidal features),
  * no down-sampling at all: a stack of dilated residual convolutions at 28×28, FiLM by time.

Training writes a plain PyTorch checkpoint (a state dict), the starting point of a user who
has a model trained in PyTorch:

    /usr/bin/python3 scripts/example_denoiser.py --steps 600 --out runs/byom/denoiser_state.pt

--steps 0 writes the untrained network (what the test suite exports and tunes, in seconds).
"""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

NUM_TRAIN_STEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02


class DilatedBlock(nn.Module):
    def __init__(self, ch: int, dilation: int, temb: int):
        super().__init__()
        self.norm = nn.GroupNorm(8, ch)
        self.conv = nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation)
        self.film = nn.Linear(temb, 2 * ch)
        self.out = nn.Conv2d(ch, ch, 1)

    def forward(self, x, e):
        scale, shift = self.film(e)[:, :, None, None].chunk(2, dim=1)
        h = self.conv(F.silu(self.norm(x)))
        return x + self.out(F.silu(h * (1 + scale) + shift))


class DilatedDenoiser(nn.Module):
    """forward(x [B, 1, 28, 28], t [B] int64 in 0..999) -> ε̂ [B, 1, 28, 28]."""

    def __init__(self, ch: int = 32, temb: int = 64, dilations=(1, 2, 4, 8, 4, 2, 1)):
        super().__init__()
        self.time = nn.Sequential(nn.Embedding(NUM_TRAIN_STEPS, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.inp = nn.Conv2d(1, ch, 3, padding=1)
        self.blocks = nn.ModuleList([DilatedBlock(ch, d, temb) for d in dilations])
        self.norm = nn.GroupNorm(8, ch)
        self.outp = nn.Conv2d(ch, 1, 3, padding=1)

    def forward(self, x, t):
        e = self.time(t.long())
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, e)
        return self.outp(F.silu(self.norm(h)))


def alpha_bar():
    return torch.cumprod(1 - torch.linspace(BETA_START, BETA_END, NUM_TRAIN_STEPS), 0)


def train(model, steps, batch, seed):
    sys.path.insert(0, os.path.dirname(__file__))
    import fashion_mnist

    images, _ = fashion_mnist.load("train")
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    abar = alpha_bar()
    start = time.time()
    for step in range(1, steps + 1):
        x0 = images[torch.randint(0, images.shape[0], (batch,), generator=generator)]
        t = torch.randint(0, NUM_TRAIN_STEPS, (batch,), generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        a = abar[t][:, None, None, None]
        loss = F.mse_loss(model(a.sqrt() * x0 + (1 - a).sqrt() * eps, t), eps)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 50 == 0 or step == steps:
            print(f"step {step}/{steps}  loss {loss.item():.4f}  {time.time() - start:.0f} s", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=600, help="training steps (0: untrained)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", required=True, help="state dict to write (torch.save)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = DilatedDenoiser()
    if args.steps > 0:
        train(model, args.steps, args.batch, args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(model.state_dict(), args.out)
    print(f"wrote {args.out} ({sum(q.numel() for q in model.parameters())} parameters)")


if __name__ == "__main__":
    main()
