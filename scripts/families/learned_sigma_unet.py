#!/usr/bin/python3
"""A learned-variance U-Net in the conventions of OpenAI's guided-diffusion / improved-diffusion:
`UNetModel(in_channels, model_channels, out_channels, num_res_blocks, attention_resolutions,
channel_mult, num_heads, use_scale_shift_norm, learn_sigma)` with `timestep_embedding`,
`TimestepEmbedSequential` (layers that take the embedding get it, the others do not), ResBlocks
with scale-shift norm and QKV attention. With learn_sigma the output has 2·C channels: ε, then
the variance interpolation values (idtune uses the first C; its samplers bring their own
variance). Integer time (the step index), the "cosine" schedule of improved-diffusion, which is
diffusers' squaredcos_cap_v2. 3×16×16.

guided-diffusion zero-initialises the output convolution; this test network does not, so that an
untrained export is compared on outputs that are not all zero.

    /usr/bin/python3 scripts/families/learned_sigma_unet.py --steps 0 --out runs/fam/sigma_state.pt
    /usr/bin/python3 scripts/export_model.py \
        --module scripts/families/learned_sigma_unet.py --class UNetModel \
        --state-dict runs/fam/sigma_state.pt --shape 3 16 16 \
        --schedule ddpm-discrete --beta-schedule squaredcos_cap_v2 --num-train-steps 1000 \
        --prediction epsilon --output-channels 6 --time-dtype long --out runs/fam/sigma.pt

Class-conditional (guided-diffusion's ImageNet models): `UNetModel(num_classes=…)` adds
`label_emb = nn.Embedding(num_classes, time_embed_dim)` of the labels `y` to the time embedding,
and forward(x, timesteps, y) requires y exactly when num_classes is set. For classifier-free
guidance the model is built with one label more than there are classes, the last one the null
label that training drops labels to: 10 classes -> num_classes 11, null label 10 (--num-classes
10 here builds and trains that).

    /usr/bin/python3 scripts/families/learned_sigma_unet.py --steps 0 --num-classes 10 \
        --out runs/fam/class_state.pt
    /usr/bin/python3 scripts/export_model.py \
        --module scripts/families/learned_sigma_unet.py --class UNetModel \
        --init-kwargs '{"num_classes": 11}' --state-dict runs/fam/class_state.pt --shape 3 16 16 \
        --schedule ddpm-discrete --beta-schedule squaredcos_cap_v2 --num-train-steps 1000 \
        --prediction epsilon --output-channels 6 --time-dtype long \
        --condition class --num-classes 10 --out runs/fam/class.pt
"""
import math
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

NUM_TRAIN_STEPS = 1000


def timestep_embedding(timesteps, dim: int, max_period: int = 10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def normalization(channels: int):
    return nn.GroupNorm(8, channels)


class TimestepBlock(nn.Module):
    """A layer whose forward takes the timestep embedding as its second argument."""


class TimestepEmbedSequential(nn.Sequential):
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class ResBlock(TimestepBlock):
    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int,
                 use_scale_shift_norm: bool = True):
        super().__init__()
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(normalization(channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        emb_out = 2 * out_channels if use_scale_shift_norm else out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(normalization(out_channels), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        emb_out = self.emb_layers(emb)[..., None, None]
        if self.use_scale_shift_norm:
            out_norm, out_rest = self.out_layers[0], self.out_layers[1:]
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = out_rest(out_norm(h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """QKV attention through 1×1 convolutions over the flattened positions."""

    def __init__(self, channels: int, num_heads: int = 2):
        super().__init__()
        self.num_heads = num_heads
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x).reshape(b, c, h * w))
        q, k, v = qkv.reshape(b * self.num_heads, 3 * c // self.num_heads, h * w).chunk(3, dim=1)
        scale = 1 / math.sqrt(math.sqrt(c // self.num_heads))
        weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
        a = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, h * w)
        return x + self.proj_out(a).reshape(b, c, h, w)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNetModel(nn.Module):
    """forward(x [B, C, H, W], timesteps [B] int64, y=None) -> [B, 2C, H, W] with learn_sigma."""

    def __init__(self, image_size: int = 16, in_channels: int = 3, model_channels: int = 16, out_channels: int = 3,
                 num_res_blocks: int = 1, attention_resolutions=(2,), dropout: float = 0.0, channel_mult=(1, 2),
                 num_heads: int = 2, use_scale_shift_norm: bool = True, learn_sigma: bool = True, num_classes=None):
        super().__init__()
        out_channels = out_channels * 2 if learn_sigma else out_channels
        self.model_channels = model_channels
        self.num_classes = num_classes
        time_embed_dim = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, time_embed_dim), nn.SiLU(),
                                        nn.Linear(time_embed_dim, time_embed_dim))
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, time_embed_dim)

        def res(ch_in, ch_out):
            return ResBlock(ch_in, time_embed_dim, dropout, ch_out, use_scale_shift_norm)

        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        chans, ch, ds = [model_channels], model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [res(ch, mult * model_channels)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers.append(AttentionBlock(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                chans.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(res(ch, ch), AttentionBlock(ch, num_heads), res(ch, ch))
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [res(ch + chans.pop(), model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions:
                    layers.append(AttentionBlock(ch, num_heads))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))

    def forward(self, x, timesteps, y=None):
        assert (y is None) == (self.num_classes is None), "y is required exactly when the model has num_classes"
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        if self.num_classes is not None:
            assert y.shape == (x.shape[0],), "y: one label per sample"
            emb = emb + self.label_emb(y)
        hs = []
        h = x
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


def alphas_cumprod():
    """improved-diffusion's "cosine": β_i = min(1 − ᾱ((i+1)/N)/ᾱ(i/N), 0.999)."""
    f = lambda u: torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    t = torch.arange(NUM_TRAIN_STEPS, dtype=torch.float64) / NUM_TRAIN_STEPS
    betas = (1 - f(t + 1 / NUM_TRAIN_STEPS) / f(t)).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0)


def main():
    p = _common.command_line(__doc__)
    p.add_argument("--num-classes", type=int, help="class-conditional: classes, plus one null label")
    args = p.parse_args()
    _common.start(args)
    if args.num_classes is None:
        model = UNetModel()
        predict = model
    else:
        model = UNetModel(num_classes=args.num_classes + 1)
        predict = lambda x, t: model(x, t, _common.labels_with_dropout(x.shape[0], args.num_classes))  # noqa: E731
    _common.train(model, predict, alphas_cumprod(), "epsilon", (3, 16, 16), args.steps, args.batch, args.seed)
    _common.save(model.state_dict(), args.out, model)


if __name__ == "__main__":
    main()
