"""What the test networks of scripts/families/ share: a command line, seeded initialisation and
a tiny denoising loop on synthetic images (so that --steps N > 0 trains something).

Each family file is the starting point of a user of one public codebase: a network written in
that codebase's conventions, saved as a plain state dict (or the codebase's own checkpoint
layout). --steps 0, what the checks use, writes the seeded random initialisation in a second.
"""
import argparse
import os
import time

import torch
import torch.nn.functional as F


def command_line(doc, default_steps=0):
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=default_steps, help="training steps (0: random init)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="checkpoint to write (torch.save; latent.py: a folder)")
    return p


def start(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)


def save(obj, path, model):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(obj, path)
    print(f"wrote {path} ({sum(p.numel() for p in model.parameters())} parameters)")


def synthetic_images(n, shape, generator):
    """Smooth random blobs in [-1, 1]: low-resolution noise upsampled (no data set needed)."""
    c, h, w = shape
    coarse = torch.randn(n, c, max(h // 4, 1), max(w // 4, 1), generator=generator)
    return torch.tanh(2 * F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False))


def labels_with_dropout(n, num_classes, p_null=0.1):
    """Random labels 0 … num_classes − 1, each replaced by the null label num_classes with probability p_null:
    classifier-free guidance training (synthetic images have no class: the labels only exercise the path)."""
    labels = torch.randint(0, num_classes, (n,))
    return torch.where(torch.rand(n) < p_null, torch.full_like(labels, num_classes), labels)


def train(model, predict, alphas_cumprod, target, shape, steps, batch, seed, lr=1e-3):
    """Denoising regression: predict(x_t, i) against ε, v = αε − σx₀ or x₀ (`target`)."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    start_time = time.time()
    for step in range(1, steps + 1):
        x0 = synthetic_images(batch, shape, generator)
        i = torch.randint(0, alphas_cumprod.shape[0], (batch,), generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        a = alphas_cumprod[i].float().view(-1, 1, 1, 1)
        alpha, sigma = a.sqrt(), (1 - a).sqrt()
        goal = {"epsilon": eps, "v": alpha * eps - sigma * x0, "sample": x0}[target]
        out = predict(alpha * x0 + sigma * eps, i)
        loss = F.mse_loss(out[:, : shape[0]], goal)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 50 == 0 or step == steps:
            print(f"step {step}/{steps}  loss {loss.item():.4f}  {time.time() - start_time:.0f} s", flush=True)
