#!/usr/bin/python3
"""An ε-prediction DDPM U-Net in the conventions of the original DDPM code (Ho et al.) and its
PyTorch port pytorch-diffusion: integer time t ∈ {0, …, 999} through a sinusoidal
`get_timestep_embedding`, two dense layers, residual blocks with a projected time embedding,
swish, GroupNorm, and a self-attention block at 8×8 (here nn.MultiheadAttention), on the
linear β schedule 1e-4 → 0.02 over 1000 steps. 3×16×16, ~100 k parameters.

Like much research code, one helper argument has no type annotation (`embedding_dim` of
get_timestep_embedding), so torch.jit.script refuses the model and export_model.py traces it.
Tracing it under torch.no_grad() in eval mode would record nn.MultiheadAttention's
inference-only fused kernel (aten::_native_multi_head_attention, which has no derivative);
export_model.py traces with autograd on, so it records the differentiable ops.

    /usr/bin/python3 scripts/families/ddpm_attention_unet.py --steps 0 --out runs/fam/ddpm_state.pt
    /usr/bin/python3 scripts/export_model.py \
        --module scripts/families/ddpm_attention_unet.py --class Model \
        --state-dict runs/fam/ddpm_state.pt --shape 3 16 16 \
        --schedule ddpm-discrete --beta-schedule linear --beta-start 1e-4 --beta-end 0.02 \
        --num-train-steps 1000 --prediction epsilon --time-dtype long --out runs/fam/ddpm.pt
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
BETA_START, BETA_END = 1e-4, 0.02


def get_timestep_embedding(timesteps, embedding_dim):
    """Sinusoidal features of integer timesteps [B] -> [B, embedding_dim]."""
    half_dim = embedding_dim // 2
    scale = math.log(10000) / (half_dim - 1)
    freqs = torch.exp(torch.arange(half_dim, dtype=torch.float32, device=timesteps.device) * -scale)
    emb = timesteps.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)


def nonlinearity(x):
    return x * torch.sigmoid(x)


def normalize(channels: int):
    return nn.GroupNorm(num_groups=8, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(nonlinearity(self.norm1(x)))
        h = h + self.temb_proj(nonlinearity(temb))[:, :, None, None]
        h = self.conv2(self.dropout(nonlinearity(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Self-attention over the H·W positions, residual."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.norm = normalize(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        seq = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        out, _ = self.attn(seq, seq, seq, need_weights=False)
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


class ResAttn(nn.Module):
    """A residual block, followed by attention at the resolutions that have it."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, attention: bool, dropout: float):
        super().__init__()
        self.block = ResnetBlock(in_channels, out_channels, temb_channels, dropout)
        self.attn = AttnBlock(out_channels) if attention else nn.Identity()

    def forward(self, x, temb):
        return self.attn(self.block(x, temb))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # DDPM's asymmetric padding


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """The blocks of one resolution, then a resampling (none at the end of the path)."""

    def __init__(self, blocks, resample):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.resample = resample if resample is not None else nn.Identity()
        self.resamples = resample is not None


class Model(nn.Module):
    """forward(x [B, C, 16, 16], t [B] int64 in 0..999) -> ε̂ [B, C, 16, 16]."""

    def __init__(self, ch: int = 16, in_channels: int = 3, out_ch: int = 3, ch_mult=(1, 2),
                 num_res_blocks: int = 1, attn_resolutions=(8,), dropout: float = 0.0, resolution: int = 16):
        super().__init__()
        self.ch = ch
        temb_ch = 4 * ch
        self.temb_dense0 = nn.Linear(ch, temb_ch)
        self.temb_dense1 = nn.Linear(temb_ch, temb_ch)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)

        skips, down, res, block_in = [ch], [], resolution, ch
        for i, mult in enumerate(ch_mult):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResAttn(block_in, ch * mult, temb_ch, res in attn_resolutions, dropout))
                block_in = ch * mult
                skips.append(block_in)
            last = i == len(ch_mult) - 1
            down.append(Level(blocks, None if last else Downsample(block_in)))
            if not last:
                skips.append(block_in)
                res //= 2
        self.down = nn.ModuleList(down)

        self.mid_block_1 = ResnetBlock(block_in, block_in, temb_ch, dropout)
        self.mid_attn_1 = AttnBlock(block_in)
        self.mid_block_2 = ResnetBlock(block_in, block_in, temb_ch, dropout)

        up = []
        for i, mult in reversed(list(enumerate(ch_mult))):
            blocks = []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResAttn(block_in + skips.pop(), ch * mult, temb_ch, res in attn_resolutions, dropout))
                block_in = ch * mult
            up.append(Level(blocks, Upsample(block_in) if i != 0 else None))
            if i != 0:
                res *= 2
        self.up = nn.ModuleList(up)

        self.norm_out = normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, x, t):
        temb = get_timestep_embedding(t, self.ch)
        temb = self.temb_dense1(nonlinearity(self.temb_dense0(temb)))

        hs = [self.conv_in(x)]
        for level in self.down:
            for layer in level.blocks:
                hs.append(layer(hs[-1], temb))
            if level.resamples:
                hs.append(level.resample(hs[-1]))

        h = hs[-1]
        h = self.mid_block_2(self.mid_attn_1(self.mid_block_1(h, temb)), temb)

        for level in self.up:
            for layer in level.blocks:
                h = layer(torch.cat([h, hs.pop()], dim=1), temb)
            if level.resamples:
                h = level.resample(h)
        return self.conv_out(nonlinearity(self.norm_out(h)))


def alphas_cumprod():
    return torch.cumprod(1 - torch.linspace(BETA_START, BETA_END, NUM_TRAIN_STEPS, dtype=torch.float64), 0)


def main():
    args = _common.command_line(__doc__).parse_args()
    _common.start(args)
    model = Model()
    _common.train(model, model, alphas_cumprod(), "epsilon", (3, 16, 16), args.steps, args.batch, args.seed)
    _common.save(model.state_dict(), args.out, model)


if __name__ == "__main__":
    main()
