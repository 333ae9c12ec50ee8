#!/usr/bin/python3
"""A U-Net in the conventions of Hugging Face diffusers' UNet2DModel, without importing diffusers:
forward(sample, timestep, return_dict=True) returns an output object whose `.sample` is the
prediction (or a 1-tuple with return_dict=False); the timestep may be a tensor [B], a 0-d
tensor or a Python number and is broadcast to the batch; `Timesteps` (flip_sin_to_cos,
downscale_freq_shift) + `TimestepEmbedding` (linear_1, act, linear_2); ResnetBlock2D with
`time_emb_proj`; down, mid and up blocks. 1×16×16, ε-prediction with DDPMScheduler's defaults
(linear β 1e-4 → 0.02 over 1000 steps) unless trained otherwise.

The output object makes the network unscriptable; export_model.py wraps it to return `.sample`
and traces it (or call it with return_dict=False: --extra-kwargs '{"return_dict": false}').

    /usr/bin/python3 scripts/families/diffusers_style_unet.py --steps 0 --out runs/fam/diffusers_state.pt
    /usr/bin/python3 scripts/export_model.py \
        --module scripts/families/diffusers_style_unet.py --class UNet2DModel \
        --state-dict runs/fam/diffusers_state.pt --shape 1 16 16 \
        --schedule ddpm-discrete --beta-schedule linear --beta-start 1e-4 --beta-end 0.02 \
        --num-train-steps 1000 --prediction epsilon --time-dtype long --out runs/fam/diffusers.pt

Its timestep is only ever turned into sinusoidal features, so a continuous-time export works too
(t ∈ [0, 0.99] fed as 1000·t): --schedule cosine --t-max 0.99 --time-scale 1000.

Class-conditional, as diffusers does it: `UNet2DModel(num_class_embeds=…)` adds
`class_embedding = nn.Embedding(num_class_embeds, time_embed_dim)` of `class_labels` to the time
embedding; forward(sample, timestep, class_labels=None, return_dict=True) raises without labels
then. Trained for classifier-free guidance, it embeds one label more than there are classes, the
null label (--num-classes 10 here: num_class_embeds 11, null label 10).

    /usr/bin/python3 scripts/families/diffusers_style_unet.py --steps 0 --num-classes 10 \
        --out runs/fam/diffusers_class_state.pt
    /usr/bin/python3 scripts/export_model.py \
        --module scripts/families/diffusers_style_unet.py --class UNet2DModel \
        --init-kwargs '{"num_class_embeds": 11}' --state-dict runs/fam/diffusers_class_state.pt \
        --shape 1 16 16 --schedule ddpm-discrete --beta-schedule linear --beta-start 1e-4 \
        --beta-end 0.02 --num-train-steps 1000 --prediction epsilon --time-dtype long \
        --condition class --num-classes 10 --null-class 10 --condition-arg class_labels \
        --out runs/fam/diffusers_class.pt
"""
import math
import os
import sys
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

NUM_TRAIN_STEPS = 1000


@dataclass
class UNet2DOutput:
    sample: torch.Tensor


class Timesteps(nn.Module):
    def __init__(self, num_channels: int, flip_sin_to_cos: bool = True, downscale_freq_shift: float = 0.0):
        super().__init__()
        self.num_channels = num_channels
        self.flip_sin_to_cos = flip_sin_to_cos
        self.downscale_freq_shift = downscale_freq_shift

    def forward(self, timesteps):
        half = self.num_channels // 2
        exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
        emb = timesteps[:, None].float() * torch.exp(exponent / (half - self.downscale_freq_shift))[None, :]
        emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
        return torch.cat([emb[:, half:], emb[:, :half]], dim=-1) if self.flip_sin_to_cos else emb


class TimestepEmbedding(nn.Module):
    def __init__(self, in_channels: int, time_embed_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(time_embed_dim, time_embed_dim)

    def forward(self, sample):
        return self.linear_2(self.act(self.linear_1(sample)))


class ResnetBlock2D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int = 8):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=1e-5)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=1e-5)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nonlinearity = nn.SiLU()
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, input_tensor, temb):
        h = self.conv1(self.nonlinearity(self.norm1(input_tensor)))
        h = h + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        shortcut = self.conv_shortcut(input_tensor) if self.conv_shortcut is not None else input_tensor
        return shortcut + h


class DownBlock2D(nn.Module):
    def __init__(self, in_channels, out_channels, temb_channels, add_downsample):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(in_channels, out_channels, temb_channels)])
        self.downsamplers = nn.ModuleList([nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)]) \
            if add_downsample else None

    def forward(self, hidden_states, temb):
        output_states = ()
        for resnet in self.resnets:
            hidden_states = resnet(hidden_states, temb)
            output_states += (hidden_states,)
        if self.downsamplers is not None:
            for down in self.downsamplers:
                hidden_states = down(hidden_states)
            output_states += (hidden_states,)
        return hidden_states, output_states


class UpBlock2D(nn.Module):
    def __init__(self, in_channels, prev_output_channel, out_channels, temb_channels, add_upsample, num_layers=2):
        super().__init__()
        resnets = []
        for i in range(num_layers):
            skip = in_channels if i == num_layers - 1 else out_channels
            resnets.append(ResnetBlock2D((prev_output_channel if i == 0 else out_channels) + skip, out_channels,
                                         temb_channels))
        self.resnets = nn.ModuleList(resnets)
        self.upsamplers = nn.ModuleList([nn.Conv2d(out_channels, out_channels, 3, padding=1)]) \
            if add_upsample else None

    def forward(self, hidden_states, res_hidden_states_tuple, temb):
        for resnet in self.resnets:
            res_hidden_states_tuple, skip = res_hidden_states_tuple[:-1], res_hidden_states_tuple[-1]
            hidden_states = resnet(torch.cat([hidden_states, skip], dim=1), temb)
        if self.upsamplers is not None:
            for up in self.upsamplers:
                hidden_states = up(F.interpolate(hidden_states, scale_factor=2.0, mode="nearest"))
        return hidden_states


class UNetMidBlock2D(nn.Module):
    def __init__(self, channels, temb_channels):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, temb_channels),
                                      ResnetBlock2D(channels, channels, temb_channels)])

    def forward(self, hidden_states, temb):
        for resnet in self.resnets:
            hidden_states = resnet(hidden_states, temb)
        return hidden_states


class UNet2DModel(nn.Module):
    """forward(sample [B, C, H, W], timestep, class_labels=None, return_dict=True) -> UNet2DOutput(sample=ε̂)."""

    def __init__(self, sample_size: int = 16, in_channels: int = 1, out_channels: int = 1,
                 block_out_channels=(16, 32), layers_per_block: int = 1, num_class_embeds=None):
        super().__init__()
        self.sample_size = sample_size
        time_embed_dim = block_out_channels[0] * 4
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], 3, padding=1)
        self.time_proj = Timesteps(block_out_channels[0])
        self.time_embedding = TimestepEmbedding(block_out_channels[0], time_embed_dim)
        self.class_embedding = nn.Embedding(num_class_embeds, time_embed_dim) if num_class_embeds else None
        self.down_blocks = nn.ModuleList()
        output_channel = block_out_channels[0]
        for i, channels in enumerate(block_out_channels):
            input_channel, output_channel = output_channel, channels
            self.down_blocks.append(DownBlock2D(input_channel, output_channel, time_embed_dim,
                                                add_downsample=i < len(block_out_channels) - 1))
        self.mid_block = UNetMidBlock2D(block_out_channels[-1], time_embed_dim)
        self.up_blocks = nn.ModuleList()
        reversed_channels = list(reversed(block_out_channels))
        output_channel = reversed_channels[0]
        for i, channels in enumerate(reversed_channels):
            prev_output_channel, output_channel = output_channel, channels
            input_channel = reversed_channels[min(i + 1, len(block_out_channels) - 1)]
            self.up_blocks.append(UpBlock2D(input_channel, prev_output_channel, output_channel, time_embed_dim,
                                            add_upsample=i < len(block_out_channels) - 1,
                                            num_layers=layers_per_block + 1))
        self.conv_norm_out = nn.GroupNorm(8, block_out_channels[0], eps=1e-5)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, 3, padding=1)

    def forward(self, sample, timestep, class_labels=None, return_dict: bool = True):
        timesteps = timestep
        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], dtype=torch.long, device=sample.device)
        elif len(timesteps.shape) == 0:
            timesteps = timesteps[None].to(sample.device)
        timesteps = timesteps * torch.ones(sample.shape[0], dtype=timesteps.dtype, device=timesteps.device)
        emb = self.time_embedding(self.time_proj(timesteps).to(dtype=sample.dtype))
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("this model is class-conditional: pass class_labels")
            emb = emb + self.class_embedding(class_labels).to(dtype=sample.dtype)

        sample = self.conv_in(sample)
        down_block_res_samples = (sample,)
        for block in self.down_blocks:
            sample, res_samples = block(sample, emb)
            down_block_res_samples += res_samples
        sample = self.mid_block(sample, emb)
        for block in self.up_blocks:
            res_samples = down_block_res_samples[-len(block.resnets):]
            down_block_res_samples = down_block_res_samples[: -len(block.resnets)]
            sample = block(sample, res_samples, emb)
        sample = self.conv_out(self.conv_act(self.conv_norm_out(sample)))
        if not return_dict:
            return (sample,)
        return UNet2DOutput(sample=sample)


def alphas_cumprod():
    return torch.cumprod(1 - torch.linspace(1e-4, 0.02, NUM_TRAIN_STEPS, dtype=torch.float64), 0)


def main():
    p = _common.command_line(__doc__)
    p.add_argument("--num-classes", type=int, help="class-conditional: classes, plus one null label")
    args = p.parse_args()
    _common.start(args)
    conditional = args.num_classes is not None
    model = UNet2DModel(num_class_embeds=args.num_classes + 1 if conditional else None)

    def predict(x, t):
        labels = _common.labels_with_dropout(x.shape[0], args.num_classes) if conditional else None
        return model(x, t, class_labels=labels).sample
    _common.train(model, predict, alphas_cumprod(), "epsilon", (1, 16, 16), args.steps, args.batch, args.seed)
    _common.save(model.state_dict(), args.out, model)


if __name__ == "__main__":
    main()
