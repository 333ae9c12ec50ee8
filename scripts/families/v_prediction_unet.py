#!/usr/bin/python3
"""A v-prediction U-Net in the conventions of lucidrains' denoising-diffusion-pytorch: a `Unet`
(forward(x, time, x_self_cond=None), SinusoidalPosEmb of the integer step, ResnetBlocks with a
scale-shift time MLP, RMSNorm, linear attention) inside a `GaussianDiffusion` wrapper that owns
the schedule as buffers (`betas`, `alphas_cumprod`, …) and the training objective: 'pred_v'
(default), 'pred_x0' (→ prediction "sample") or 'pred_noise' (→ "epsilon"), on the 'sigmoid'
(default) or 'cosine' schedule of that codebase. Those schedules are not diffusers' formulas of
the same names, so the exporter copies the wrapper's `alphas_cumprod` buffer into the card.

The checkpoint is the wrapper's state dict under the key "model", as that codebase's Trainer
saves it. A user exports the inner `model` and reads the schedule off the wrapper:

    /usr/bin/python3 scripts/families/v_prediction_unet.py --steps 0 --out runs/fam/v_state.pt
    /usr/bin/python3 scripts/export_model.py \
        --module scripts/families/v_prediction_unet.py --class build_diffusion \
        --state-dict runs/fam/v_state.pt --state-dict-key model --submodule model \
        --shape 1 16 16 --schedule ddpm-discrete --alphas-cumprod-attr alphas_cumprod \
        --prediction v --time-dtype long --out runs/fam/v.pt

x₀-prediction: --objective pred_x0 here, then --init-kwargs '{"objective": "pred_x0"}'
--prediction sample there.
"""
import math
import os
import sys
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

OBJECTIVES = {"pred_noise": "epsilon", "pred_v": "v", "pred_x0": "sample"}


class SinusoidalPosEmb(nn.Module):
    def __init__(self, dim: int, theta: int = 10000):
        super().__init__()
        self.dim = dim
        self.theta = theta

    def forward(self, x):
        half_dim = self.dim // 2
        scale = math.log(self.theta) / (half_dim - 1)
        freqs = torch.exp(torch.arange(half_dim, device=x.device) * -scale)
        emb = x[:, None].float() * freqs[None, :]
        return torch.cat((emb.sin(), emb.cos()), dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim ** 0.5
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))

    def forward(self, x):
        return F.normalize(x, dim=1) * self.g * self.scale


class Block(nn.Module):
    def __init__(self, dim: int, dim_out: int, groups: int = 8):
        super().__init__()
        self.proj = nn.Conv2d(dim, dim_out, 3, padding=1)
        self.norm = nn.GroupNorm(groups, dim_out)
        self.act = nn.SiLU()

    def forward(self, x, scale_shift: Optional[torch.Tensor] = None):
        x = self.norm(self.proj(x))
        if scale_shift is not None:
            scale, shift = scale_shift.chunk(2, dim=1)
            x = x * (scale + 1) + shift
        return self.act(x)


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, dim_out: int, time_emb_dim: int, groups: int = 8):
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_emb_dim, dim_out * 2))
        self.block1 = Block(dim, dim_out, groups)
        self.block2 = Block(dim_out, dim_out, groups)
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x, time_emb):
        scale_shift = self.mlp(time_emb)[:, :, None, None]
        h = self.block2(self.block1(x, scale_shift))
        return h + self.res_conv(x)


class LinearAttention(nn.Module):
    """Softmax over features for q, over positions for k: cost linear in H·W."""

    def __init__(self, dim: int, heads: int = 2, dim_head: int = 16):
        super().__init__()
        self.scale = dim_head ** -0.5
        self.heads = heads
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Conv2d(dim, heads * dim_head * 3, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(heads * dim_head, dim, 1), RMSNorm(dim))

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.to_qkv(self.norm(x)).reshape(b, 3, self.heads, -1, h * w).unbind(1)
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q)
        return self.to_out(out.reshape(b, -1, h, w)) + x


class Stage(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_dim: int, resample: nn.Module):
        super().__init__()
        self.block1 = ResnetBlock(dim_in, dim_in, time_dim)
        self.block2 = ResnetBlock(dim_in, dim_in, time_dim)
        self.attn = LinearAttention(dim_in)
        self.resample = resample


class UpStage(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, time_dim: int, upsample: bool):
        super().__init__()
        self.block1 = ResnetBlock(dim_out + dim_in, dim_out, time_dim)
        self.block2 = ResnetBlock(dim_out + dim_in, dim_out, time_dim)
        self.attn = LinearAttention(dim_out)
        self.upsample = (nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"),
                                       nn.Conv2d(dim_out, dim_in, 3, padding=1)) if upsample
                         else nn.Conv2d(dim_out, dim_in, 3, padding=1))


class Unet(nn.Module):
    """forward(x [B, C, H, W], time [B] int64, x_self_cond=None) -> v̂ (or x̂₀, ε̂) [B, C, H, W]."""

    def __init__(self, dim: int = 16, dim_mults=(1, 2), channels: int = 1, self_condition: bool = False):
        super().__init__()
        self.channels = channels
        self.self_condition = self_condition
        self.init_conv = nn.Conv2d(channels * (2 if self_condition else 1), dim, 7, padding=3)
        dims = [dim] + [dim * m for m in dim_mults]
        time_dim = dim * 4
        self.time_mlp = nn.Sequential(SinusoidalPosEmb(dim), nn.Linear(dim, time_dim), nn.GELU(),
                                      nn.Linear(time_dim, time_dim))
        pairs = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList([
            Stage(d_in, d_out, time_dim, nn.Conv2d(d_in, d_out, 4, 2, 1) if i < len(pairs) - 1
                  else nn.Conv2d(d_in, d_out, 3, padding=1))
            for i, (d_in, d_out) in enumerate(pairs)])
        mid = dims[-1]
        self.mid_block1 = ResnetBlock(mid, mid, time_dim)
        self.mid_attn = LinearAttention(mid)
        self.mid_block2 = ResnetBlock(mid, mid, time_dim)
        self.ups = nn.ModuleList([
            UpStage(d_in, d_out, time_dim, i < len(pairs) - 1)
            for i, (d_in, d_out) in enumerate(reversed(pairs))])
        self.final_res_block = ResnetBlock(dim * 2, dim, time_dim)
        self.final_conv = nn.Conv2d(dim, channels, 1)

    def forward(self, x, time, x_self_cond: Optional[torch.Tensor] = None):
        if self.self_condition:
            x = torch.cat((x_self_cond if x_self_cond is not None else torch.zeros_like(x), x), dim=1)
        x = self.init_conv(x)
        r = x.clone()
        t = self.time_mlp(time)
        h = []
        for stage in self.downs:
            x = stage.block1(x, t)
            h.append(x)
            x = stage.attn(stage.block2(x, t))
            h.append(x)
            x = stage.resample(x)
        x = self.mid_block2(self.mid_attn(self.mid_block1(x, t)), t)
        for stage in self.ups:
            x = stage.block1(torch.cat((x, h.pop()), dim=1), t)
            x = stage.attn(stage.block2(torch.cat((x, h.pop()), dim=1), t))
            x = stage.upsample(x)
        return self.final_conv(self.final_res_block(torch.cat((x, r), dim=1), t))


def sigmoid_beta_schedule(timesteps, start=-3.0, end=3.0, tau=1.0):
    """ᾱ from a sigmoid ramp (that codebase's 'sigmoid', not diffusers')."""
    t = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64) / timesteps
    v_start, v_end = torch.tensor(start / tau).sigmoid(), torch.tensor(end / tau).sigmoid()
    abar = (-((t * (end - start) + start) / tau).sigmoid() + v_end) / (v_end - v_start)
    abar = abar / abar[0]
    return (1 - abar[1:] / abar[:-1]).clamp(0, 0.999)


def cosine_beta_schedule(timesteps, s=0.008):
    t = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64) / timesteps
    abar = torch.cos((t + s) / (1 + s) * math.pi * 0.5) ** 2
    abar = abar / abar[0]
    return (1 - abar[1:] / abar[:-1]).clamp(0, 0.999)


class GaussianDiffusion(nn.Module):
    """The wrapper: the network as `self.model`, the schedule as float32 buffers."""

    def __init__(self, model, image_size: int, timesteps: int = 1000, objective: str = "pred_v",
                 beta_schedule: str = "sigmoid"):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        self.model = model
        self.channels = model.channels
        self.image_size = image_size
        self.objective = objective
        betas = {"sigmoid": sigmoid_beta_schedule, "cosine": cosine_beta_schedule}[beta_schedule](timesteps)
        alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        self.num_timesteps = timesteps
        for name, value in (("betas", betas), ("alphas_cumprod", alphas_cumprod),
                            ("sqrt_alphas_cumprod", alphas_cumprod.sqrt()),
                            ("sqrt_one_minus_alphas_cumprod", (1 - alphas_cumprod).sqrt())):
            self.register_buffer(name, value.float())

    def forward(self, img):
        """The training loss of one batch (not what idtune calls: it calls self.model)."""
        b = img.shape[0]
        t = torch.randint(0, self.num_timesteps, (b,), device=img.device)
        return F.mse_loss(*self.prediction_and_target(img, t, torch.randn_like(img)))

    def prediction_and_target(self, x0, t, noise):
        a = self.sqrt_alphas_cumprod[t].view(-1, 1, 1, 1)
        s = self.sqrt_one_minus_alphas_cumprod[t].view(-1, 1, 1, 1)
        target = {"pred_noise": noise, "pred_x0": x0, "pred_v": a * noise - s * x0}[self.objective]
        return self.model(a * x0 + s * noise, t), target


def build_diffusion(dim: int = 16, channels: int = 1, image_size: int = 16, timesteps: int = 1000,
                    objective: str = "pred_v", beta_schedule: str = "sigmoid"):
    """What a training script of that codebase builds: GaussianDiffusion(Unet(...), ...)."""
    return GaussianDiffusion(Unet(dim=dim, channels=channels), image_size=image_size, timesteps=timesteps,
                             objective=objective, beta_schedule=beta_schedule)


def main():
    p = _common.command_line(__doc__)
    p.add_argument("--objective", choices=list(OBJECTIVES), default="pred_v")
    p.add_argument("--beta-schedule", choices=["sigmoid", "cosine"], default="sigmoid")
    args = p.parse_args()
    _common.start(args)
    diffusion = build_diffusion(objective=args.objective, beta_schedule=args.beta_schedule)
    _common.train(diffusion, diffusion.model, diffusion.alphas_cumprod, OBJECTIVES[args.objective],
                  (1, 16, 16), args.steps, args.batch, args.seed)
    # The layout of that codebase's Trainer.save: the wrapper's state dict under "model".
    _common.save({"step": args.steps, "model": diffusion.state_dict()}, args.out, diffusion)


if __name__ == "__main__":
    main()
