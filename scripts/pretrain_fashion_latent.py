#!/usr/bin/python3
"""Pretrains the shipped latent model: a small KL-autoencoder (1x28x28 <-> 4x7x7, as Stable
Diffusion's VAE, 4x spatial downsampling) and an epsilon-prediction model on its scaled latents.

(a) Autoencoder. Encoder -> (mean, log-variance) of a diagonal Gaussian over 4x7x7 latents;
    decoder -> tanh images in [-1, 1]. Loss: L1 + L2 reconstruction of a posterior sample plus a
    small KL to N(0, I) (--kl, per latent element), so that the latents stay O(1) and the decoder
    is smooth around them. Reports the reconstruction MSE on the 10k test images (from the
    posterior mean) and writes the test reconstructions as an idx file, so that
    `idtune fd --a <work>/test_recon-idx3-ubyte.gz --b .../t10k-images-idx3-ubyte.gz` gives the
    FD floor that the autoencoder alone sets.
    Scale factor = 1 / std of the training latents (posterior samples), as SD's 0.18215.
(b) Latent denoiser. epsilon-prediction on scale * z, integer time 0..999 (int64), on SD's
    "scaled_linear" schedule (beta from sqrt(0.00085) to sqrt(0.012) squared, 1000 steps);
    Adam with warm-up and cosine decay, gradient clipping, EMA of the weights (exported).
(c) Export. The decoder alone as TorchScript (forward(z) -> images) and the EMA denoiser through
    scripts/export_model.py (--decoder/--scale-factor/--image-shape): <out>.pt, <out>.json and
    <out stem>_decoder.pt beside it; the card's provenance gets the training figures.

    /usr/bin/python3 scripts/pretrain_fashion_latent.py [--ae-steps 1200] [--steps 3000] \
        [--seed 0] [--threads 1] [--out models/fashion_latent.pt] [--work runs/fashion_latent]

Single-threaded runs with the same arguments are bit-for-bit reproducible (seeded generators
for every draw; no data-loader workers).
"""
import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fashion_mnist  # noqa: E402

Z_CHANNELS = 4
NUM_TRAIN_STEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012


# ---- the autoencoder ----

def group_norm(ch: int):
    return nn.GroupNorm(8, ch)


class ConvBlock(nn.Module):
    """Residual block of two 3x3 convolutions (GroupNorm, SiLU)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = group_norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class Encoder(nn.Module):
    """[B, 1, 28, 28] -> [B, 2 * 4, 7, 7] (mean and log-variance)."""

    def __init__(self, ch: int = 16):
        super().__init__()
        self.conv_in = nn.Conv2d(1, ch, 3, padding=1)
        self.block28 = ConvBlock(ch, ch)
        self.down1 = nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1)        # 14
        self.block14 = ConvBlock(2 * ch, 2 * ch)
        self.down2 = nn.Conv2d(2 * ch, 4 * ch, 3, stride=2, padding=1)    # 7
        self.block7 = ConvBlock(4 * ch, 4 * ch)
        self.norm_out = group_norm(4 * ch)
        self.conv_out = nn.Conv2d(4 * ch, 2 * Z_CHANNELS, 3, padding=1)

    def forward(self, x):
        h = self.block28(self.conv_in(x))
        h = self.block14(self.down1(h))
        h = self.block7(self.down2(h))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """[B, 4, 7, 7] -> [B, 1, 28, 28] in [-1, 1] (nearest upsampling + convolution)."""

    def __init__(self, ch: int = 16):
        super().__init__()
        self.conv_in = nn.Conv2d(Z_CHANNELS, 4 * ch, 3, padding=1)
        self.block7 = ConvBlock(4 * ch, 4 * ch)
        self.up1 = nn.Conv2d(4 * ch, 2 * ch, 3, padding=1)                # 14
        self.block14 = ConvBlock(2 * ch, 2 * ch)
        self.up2 = nn.Conv2d(2 * ch, ch, 3, padding=1)                    # 28
        self.block28 = ConvBlock(ch, ch)
        self.norm_out = group_norm(ch)
        self.conv_out = nn.Conv2d(ch, 1, 3, padding=1)

    def forward(self, z):
        h = self.block7(self.conv_in(z))
        h = self.block14(self.up1(F.interpolate(h, scale_factor=2.0, mode="nearest")))
        h = self.block28(self.up2(F.interpolate(h, scale_factor=2.0, mode="nearest")))
        return torch.tanh(self.conv_out(F.silu(self.norm_out(h))))


class AutoEncoder(nn.Module):
    def __init__(self, ch: int = 16):
        super().__init__()
        self.encoder = Encoder(ch)
        self.decoder = Decoder(ch)

    def posterior(self, x):
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-20.0, 10.0)


# ---- the latent denoiser ----

def timestep_embedding(t, dim: int):
    """SD's sinusoidal embedding of the integer step (cos first, max period 10000)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class TimeBlock(nn.Module):
    def __init__(self, ch: int, temb: int):
        super().__init__()
        self.norm1 = group_norm(ch)
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.emb = nn.Linear(temb, 2 * ch)   # scale and shift of the second norm
        self.norm2 = group_norm(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, e):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(e)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return x + self.conv2(F.silu(h))


class LatentDenoiser(nn.Module):
    """forward(z [B, 4, 7, 7], t [B] int64 in 0..999) -> eps-hat [B, 4, 7, 7].

    Residual blocks at 7x7 (receptive field > 7 after two blocks) with a global-context path:
    a 7x7 -> 1x1 pooled feature added back to every position each block."""

    def __init__(self, ch: int = 64, blocks: int = 4):
        super().__init__()
        self.ch = ch
        temb = 4 * ch // 2
        self.time = nn.Sequential(nn.Linear(ch, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(Z_CHANNELS, ch, 3, padding=1)
        self.blocks = nn.ModuleList([TimeBlock(ch, temb) for _ in range(blocks)])
        self.globals = nn.ModuleList([nn.Linear(ch, ch) for _ in range(blocks)])
        self.norm_out = group_norm(ch)
        self.conv_out = nn.Conv2d(ch, Z_CHANNELS, 3, padding=1)

    def forward(self, x, t):
        e = self.time(timestep_embedding(t, self.ch))
        h = self.conv_in(x)
        for block, glob in zip(self.blocks, self.globals):
            h = block(h, e)
            h = h + glob(F.silu(h.mean(dim=(2, 3))))[:, :, None, None]
        return self.conv_out(F.silu(self.norm_out(h)))


def alphas_cumprod():
    betas = torch.linspace(BETA_START ** 0.5, BETA_END ** 0.5, NUM_TRAIN_STEPS, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


# ---- training ----

def lr_at(step, steps, peak, warmup=100):
    return peak * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))


def train_autoencoder(ae, x, args, log):
    g = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.Adam(ae.parameters(), lr=args.ae_lr)
    start, running = time.time(), None
    for step in range(args.ae_steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.ae_steps, args.ae_lr)
        batch = x[torch.randint(0, len(x), (args.batch,), generator=g)]
        mean, logvar = ae.posterior(batch)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=g)
        recon = ae.decoder(z)
        rec = F.l1_loss(recon, batch) + F.mse_loss(recon, batch)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = rec + args.kl * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        opt.step()
        now = (rec.item(), kl.item())
        running = now if running is None else tuple(0.95 * r + 0.05 * n for r, n in zip(running, now))
        if (step + 1) % 100 == 0 or step + 1 == args.ae_steps:
            log(f"autoencoder step {step + 1}/{args.ae_steps}  rec(L1+L2) {running[0]:.4f}  KL/elem {running[1]:.3f}  "
                f"{time.time() - start:.0f} s")
    return time.time() - start


@torch.no_grad()
def encode_all(ae, x, batch=1000):
    means, stds = [], []
    for i in range(0, len(x), batch):
        mean, logvar = ae.posterior(x[i:i + batch])
        means.append(mean)
        stds.append(torch.exp(0.5 * logvar))
    return torch.cat(means), torch.cat(stds)


def write_idx_images(images, path):
    """[N, 1, 28, 28] in [-1, 1] -> gzipped idx3 (uint8), what `idtune fd` reads."""
    u8 = ((images.squeeze(1).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    n, h, w = u8.shape
    header = bytes([0, 0, 8, 3]) + n.to_bytes(4, "big") + h.to_bytes(4, "big") + w.to_bytes(4, "big")
    with gzip.GzipFile(path, "wb", mtime=0) as f:  # mtime 0: the same bytes every run
        f.write(header + u8.tobytes())


def train_denoiser(model, ema, mean, std, scale, args, log):
    g = torch.Generator().manual_seed(args.seed + 1)
    abar = alphas_cumprod().float()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    start, running = time.time(), None
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr)
        idx = torch.randint(0, len(mean), (args.batch,), generator=g)
        z0 = scale * (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g))  # SD: latent_dist.sample()
        t = torch.randint(0, NUM_TRAIN_STEPS, (args.batch,), generator=g)
        eps = torch.randn(z0.shape, generator=g)
        a = abar[t].view(-1, 1, 1, 1)
        loss = F.mse_loss(model(a.sqrt() * z0 + (1 - a).sqrt() * eps, t), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))  # EMA warm-up
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm, alpha=1 - decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if (step + 1) % 100 == 0 or step + 1 == args.steps:
            log(f"denoiser step {step + 1}/{args.steps}  eps-MSE {running:.4f}  {time.time() - start:.0f} s")
    return time.time() - start, running


# ---- export ----

def export(args, work, scale, ae_seconds, dn_seconds, final_loss, test_mse, latent_stats, n_params, log):
    decoder_path = os.path.join(work, "decoder.pt")
    cmd = [sys.executable, os.path.join(HERE, "export_model.py"),
           "--module", os.path.abspath(__file__), "--class", "LatentDenoiser",
           "--init-kwargs", json.dumps({"ch": args.channels, "blocks": args.blocks}),
           "--state-dict", os.path.join(work, "denoiser_ema_state.pt"), "--shape", str(Z_CHANNELS), "7", "7",
           "--schedule", "ddpm-discrete", "--beta-schedule", "scaled_linear", "--beta-start", str(BETA_START),
           "--beta-end", str(BETA_END), "--num-train-steps", str(NUM_TRAIN_STEPS),
           "--prediction", "epsilon", "--time-dtype", "long",
           "--decoder", decoder_path, "--scale-factor", repr(scale), "--image-shape", "1", "28", "28",
           "--out", args.out]
    log("$ " + " ".join(cmd))
    env = dict(os.environ, IDTUNE_NUM_THREADS=str(args.threads))
    subprocess.run(cmd, check=True, env=env)
    card_path = os.path.splitext(args.out)[0] + ".json"
    with open(card_path) as f:
        card = json.load(f)
    card["provenance"].update({
        "trained_by": "scripts/pretrain_fashion_latent.py", "dataset": "Fashion-MNIST train (60k)",
        "seed": args.seed, "batch": args.batch, "threads": args.threads,
        "autoencoder": {"steps": args.ae_steps, "lr": args.ae_lr, "kl_weight": args.kl, "channels": args.ae_channels,
                        "loss": "L1 + L2 + kl_weight * KL", "test_mse": round(test_mse, 5),
                        "train_seconds": round(ae_seconds), **latent_stats},
        "denoiser": {"steps": args.steps, "lr": args.lr, "ema_decay": args.ema, "channels": args.channels,
                     "blocks": args.blocks, "parameters": n_params, "final_loss": round(final_loss, 5),
                     "train_seconds": round(dn_seconds)}})
    with open(card_path + ".tmp", "w") as f:
        json.dump(card, f, indent=2)
    os.replace(card_path + ".tmp", card_path)
    log(f"card: {card_path}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000, help="denoiser training steps")
    p.add_argument("--ae-steps", type=int, default=1200, help="autoencoder training steps")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="denoiser peak learning rate")
    p.add_argument("--ae-lr", type=float, default=2e-3, help="autoencoder peak learning rate")
    p.add_argument("--kl", type=float, default=1e-3, help="weight of the KL per latent element")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--channels", type=int, default=64, help="denoiser width")
    p.add_argument("--blocks", type=int, default=4, help="denoiser residual blocks")
    p.add_argument("--ae-channels", type=int, default=16, help="autoencoder width at 28x28")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="models/fashion_latent.pt")
    p.add_argument("--work", default="runs/fashion_latent", help="scratch folder: states, log, reconstructions")
    p.add_argument("--no-export", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.work, exist_ok=True)
    log_file = open(os.path.join(args.work, "train.log"), "w")

    def log(line):
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    log(f"args: {vars(args)}  torch {torch.__version__}")
    x, _ = fashion_mnist.load("train")
    x_test, _ = fashion_mnist.load("test")

    ae = AutoEncoder(args.ae_channels)
    log(f"autoencoder: encoder {sum(p.numel() for p in ae.encoder.parameters())}, decoder "
        f"{sum(p.numel() for p in ae.decoder.parameters())} parameters")
    ae_seconds = train_autoencoder(ae, x, args, log)
    ae.eval()
    with torch.no_grad():
        test_mean, _ = encode_all(ae, x_test)
        recon = torch.cat([ae.decoder(test_mean[i:i + 1000]) for i in range(0, len(test_mean), 1000)])
    test_mse = F.mse_loss(recon, x_test).item()
    write_idx_images(recon, os.path.join(args.work, "test_recon-idx3-ubyte.gz"))
    mean, std = encode_all(ae, x)
    g = torch.Generator().manual_seed(args.seed + 2)
    sample = mean + std * torch.randn(mean.shape, generator=g)
    scale = 1.0 / sample.std().item()
    latent_stats = {"latent_mean": round(sample.mean().item(), 4), "latent_std": round(sample.std().item(), 4),
                    "latent_channel_means": [round(v, 4) for v in sample.mean(dim=(0, 2, 3)).tolist()],
                    "posterior_std_mean": round(std.mean().item(), 4), "scale_factor": scale}
    log(f"autoencoder: test reconstruction MSE {test_mse:.5f} (images in [-1, 1]; PSNR "
        f"{10 * math.log10(4 / test_mse):.1f} dB), {ae_seconds:.0f} s")
    log(f"latents: {latent_stats}")
    torch.save(ae.state_dict(), os.path.join(args.work, "autoencoder_state.pt"))
    decoder = torch.jit.script(ae.decoder.eval())
    decoder.save(os.path.join(args.work, "decoder.pt"))

    torch.manual_seed(args.seed + 3)
    model = LatentDenoiser(args.channels, args.blocks)
    ema = LatentDenoiser(args.channels, args.blocks)
    ema.load_state_dict(model.state_dict())
    n_params = sum(p.numel() for p in model.parameters())
    log(f"denoiser: {n_params} parameters")
    dn_seconds, final_loss = train_denoiser(model, ema, mean, std, scale, args, log)
    torch.save(ema.state_dict(), os.path.join(args.work, "denoiser_ema_state.pt"))
    torch.save(model.state_dict(), os.path.join(args.work, "denoiser_state.pt"))
    if not args.no_export:
        export(args, args.work, scale, ae_seconds, dn_seconds, final_loss, test_mse, latent_stats, n_params, log)
    log(f"done: autoencoder {ae_seconds:.0f} s, denoiser {dn_seconds:.0f} s")


if __name__ == "__main__":
    main()
