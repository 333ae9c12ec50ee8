#!/usr/bin/python3
"""Reward files for the checks: TorchScript modules forward(images [B, C, H, W]) -> [B], what
idtune and scripts/check_export.py accept as --reward FILE.pt. Images arrive in the model card's
data range (decoded images for a latent model).

    /usr/bin/python3 scripts/families/rewards.py --kind brightness --data-range -1 1 --out runs/fam/bright.pt
    /usr/bin/python3 scripts/families/rewards.py --kind conv --channels 3 --out runs/fam/conv_reward.pt

  brightness  mean pixel value mapped to [0, 1] (like the built-in reward "brightness")
  conv        a seeded random convolution + global pooling + linear: a stand-in for a learned
              reward model (a classifier's logit, an aesthetic score)
"""
import argparse
import os

import torch
import torch.nn as nn
import torch.nn.functional as F


class Brightness(nn.Module):
    def __init__(self, low: float = -1.0, high: float = 1.0):
        super().__init__()
        self.low = low
        self.high = high

    def forward(self, x):
        return ((x - self.low) / (self.high - self.low)).flatten(1).mean(1)


class ConvReward(nn.Module):
    def __init__(self, channels: int = 1, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(channels, width, 3, padding=1)
        self.head = nn.Linear(width, 1)

    def forward(self, x):
        return self.head(F.silu(self.conv(x)).mean(dim=(2, 3))).squeeze(1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=["brightness", "conv"], default="brightness")
    p.add_argument("--data-range", type=float, nargs=2, default=[-1.0, 1.0])
    p.add_argument("--channels", type=int, default=1, help="image channels (conv)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    module = Brightness(*args.data_range) if args.kind == "brightness" else ConvReward(args.channels)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.jit.script(module.eval()).save(args.out)
    print(f"wrote {args.out} ({args.kind} reward, TorchScript)")


if __name__ == "__main__":
    main()
