#!/usr/bin/python3
"""A latent diffusion model in the conventions of Stable Diffusion / latent-diffusion: an
autoencoder (`AutoencoderKL`-like: `encoder`, `decoder`, images in [-1, 1] through a tanh) maps
1×28×28 images to 4×7×7 latents; the ε-model (`LatentDenoiser`) works on latents multiplied by a
scale factor (SD 1.x: 0.18215, chosen so that the scaled latents have unit variance), on the
"scaled_linear" schedule (β from √0.00085 to √0.012 squared, 1000 steps), integer time.
Rewards see decoded images: images = decoder(latent / scale_factor).

--steps 0 writes, into --out (a folder): autoencoder_state.pt, latent_state.pt and the decoder
alone as TorchScript, vae_decoder.pt (export_decoder below), and prints the scale factor,
1 / std of the encoded synthetic images (3.3139 for --steps 0 --seed 0, used below).

    /usr/bin/python3 scripts/families/latent.py --steps 0 --out runs/fam/latent
    /usr/bin/python3 scripts/export_model.py \
        --module scripts/families/latent.py --class LatentDenoiser \
        --state-dict runs/fam/latent/latent_state.pt --shape 4 7 7 \
        --schedule ddpm-discrete --beta-schedule scaled_linear --beta-start 0.00085 --beta-end 0.012 \
        --num-train-steps 1000 --prediction epsilon --time-dtype long \
        --decoder runs/fam/latent/vae_decoder.pt --scale-factor 3.3139 --image-shape 1 28 28 \
        --out runs/fam/latent.pt
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

NUM_TRAIN_STEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012


class Encoder(nn.Module):
    """[B, 1, 28, 28] -> [B, 4, 7, 7]."""

    def __init__(self, ch: int = 16, z_channels: int = 4):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, ch, 3, padding=1), nn.SiLU(),
            nn.Conv2d(ch, ch, 3, stride=2, padding=1), nn.GroupNorm(8, ch), nn.SiLU(),
            nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1), nn.GroupNorm(8, 2 * ch), nn.SiLU(),
            nn.Conv2d(2 * ch, z_channels, 3, padding=1))

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    """[B, 4, 7, 7] -> [B, 1, 28, 28] in [-1, 1]."""

    def __init__(self, ch: int = 16, z_channels: int = 4):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(z_channels, 2 * ch, 3, padding=1), nn.GroupNorm(8, 2 * ch), nn.SiLU(),
            nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(2 * ch, ch, 3, padding=1),
            nn.GroupNorm(8, ch), nn.SiLU(),
            nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU(),
            nn.Conv2d(ch, 1, 3, padding=1), nn.Tanh())

    def forward(self, z):
        return self.net(z)


class AutoEncoder(nn.Module):
    def __init__(self, ch: int = 16, z_channels: int = 4):
        super().__init__()
        self.encoder = Encoder(ch, z_channels)
        self.decoder = Decoder(ch, z_channels)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        return self.decode(self.encode(x))


def timestep_embedding(t, dim: int):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class LatentBlock(nn.Module):
    def __init__(self, ch: int, temb: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, ch)
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.emb = nn.Linear(temb, ch)
        self.norm2 = nn.GroupNorm(8, ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, e):
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(e)[:, :, None, None]
        return x + self.conv2(F.silu(self.norm2(h)))


class LatentDenoiser(nn.Module):
    """forward(z [B, 4, 7, 7], t [B] int64 in 0..999) -> ε̂ [B, 4, 7, 7]."""

    def __init__(self, z_channels: int = 4, ch: int = 32, blocks: int = 3):
        super().__init__()
        self.ch = ch
        self.time = nn.Sequential(nn.Linear(ch, 2 * ch), nn.SiLU(), nn.Linear(2 * ch, 2 * ch))
        self.conv_in = nn.Conv2d(z_channels, ch, 3, padding=1)
        self.blocks = nn.ModuleList([LatentBlock(ch, 2 * ch) for _ in range(blocks)])
        self.norm_out = nn.GroupNorm(8, ch)
        self.conv_out = nn.Conv2d(ch, z_channels, 3, padding=1)

    def forward(self, x, t):
        e = self.time(timestep_embedding(t, self.ch))
        h = self.conv_in(x)
        for block in self.blocks:
            h = block(h, e)
        return self.conv_out(F.silu(self.norm_out(h)))


def alphas_cumprod():
    return torch.cumprod(1 - torch.linspace(BETA_START ** 0.5, BETA_END ** 0.5, NUM_TRAIN_STEPS,
                                            dtype=torch.float64) ** 2, 0)


def export_decoder(autoencoder, path):
    """The decoder alone, as TorchScript forward(z [B, 4, 7, 7]) -> images [B, 1, 28, 28]."""
    decoder = torch.jit.script(autoencoder.decoder.eval())
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    decoder.save(path)
    print(f"wrote {path} (the decoder, TorchScript)")


def train_autoencoder(autoencoder, steps, batch, seed):
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(autoencoder.parameters(), lr=1e-3)
    for step in range(1, steps + 1):
        x = _common.synthetic_images(batch, (1, 28, 28), generator)
        loss = F.mse_loss(autoencoder(x), x)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 50 == 0 or step == steps:
            print(f"autoencoder step {step}/{steps}  loss {loss.item():.4f}", flush=True)


def train_latent(model, encoder, scale, steps, batch, seed):
    """ε-regression on scaled latents of the (frozen) autoencoder's encoder."""
    encoder = encoder.eval().requires_grad_(False)
    images, noise = torch.Generator().manual_seed(seed + 2), torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    abar = alphas_cumprod()
    for step in range(1, steps + 1):
        z0 = scale * encoder(_common.synthetic_images(batch, (1, 28, 28), images))
        i = torch.randint(0, NUM_TRAIN_STEPS, (batch,), generator=noise)
        eps = torch.randn(z0.shape, generator=noise)
        a = abar[i].float().view(-1, 1, 1, 1)
        loss = F.mse_loss(model(a.sqrt() * z0 + (1 - a).sqrt() * eps, i), eps)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 50 == 0 or step == steps:
            print(f"latent step {step}/{steps}  loss {loss.item():.4f}", flush=True)


def measured_scale_factor(autoencoder, seed):
    with torch.no_grad():
        images = _common.synthetic_images(256, (1, 28, 28), torch.Generator().manual_seed(seed + 1))
        return 1.0 / autoencoder.encode(images).std().item()


def main():
    args = _common.command_line(__doc__).parse_args()
    _common.start(args)
    autoencoder = AutoEncoder()
    train_autoencoder(autoencoder, args.steps, args.batch, args.seed)
    scale = measured_scale_factor(autoencoder, args.seed)
    model = LatentDenoiser()
    train_latent(model, autoencoder.encoder, scale, args.steps, args.batch, args.seed)
    _common.save(autoencoder.state_dict(), os.path.join(args.out, "autoencoder_state.pt"), autoencoder)
    _common.save(model.state_dict(), os.path.join(args.out, "latent_state.pt"), model)
    export_decoder(autoencoder, os.path.join(args.out, "vae_decoder.pt"))
    print(f"scale factor {scale:.5g} (1 / std of the latents: --scale-factor {scale:.5g})")


if __name__ == "__main__":
    main()
