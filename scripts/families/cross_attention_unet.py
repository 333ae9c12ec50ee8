#!/usr/bin/python3
"""A text-conditioned U-Net in the conventions of Stable Diffusion's UNet2DConditionModel, without
diffusers: forward(x, t, encoder_hidden_states) where encoder_hidden_states [B, 4, 8] are a text
encoder's states of a prompt (CLIP's are [B, 77, 768]); ResBlocks with a projected time
embedding, and at every resolution a transformer block whose cross-attention takes its queries
from the image and its keys and values from the text states (to_q, to_k, to_v, to_out). A tiny
prompt encoder (token and position embeddings, LayerNorm) stands in for the text encoder; the
null condition of classifier-free guidance is its states of the empty prompt, what training drops
prompts to. Type-annotated: torch.jit.script takes it as it is. 3×16×16, ε-prediction on Stable
Diffusion's scaled_linear β 0.00085 → 0.012 over 1000 steps, integer time.

    /usr/bin/python3 scripts/families/cross_attention_unet.py --steps 0 --out runs/fam/text_state.pt \
        --null-out runs/fam/empty_prompt.pt --prompts-out runs/fam/prompts.pt
    /usr/bin/python3 scripts/export_model.py \
        --module scripts/families/cross_attention_unet.py --class UNet2DConditionModel \
        --state-dict runs/fam/text_state.pt --shape 3 16 16 \
        --schedule ddpm-discrete --beta-schedule scaled_linear --beta-start 0.00085 --beta-end 0.012 \
        --num-train-steps 1000 --prediction epsilon --time-dtype long \
        --condition tensor --condition-shape 4 8 --null-condition runs/fam/empty_prompt.pt \
        --out runs/fam/text.pt

--prompts-out writes the states of 8 random prompts [8, 4, 8]: a conditions file for `idtune
tune` ("conditions": {"file": "runs/fam/prompts.pt"}).
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
TOKENS, CONTEXT_DIM, VOCABULARY = 4, 8, 32
PAD, BOS, EOS = 0, 1, 2


class PromptEncoder(nn.Module):
    """Token ids [B, TOKENS] -> states [B, TOKENS, CONTEXT_DIM]: the stand-in for a frozen text encoder."""

    def __init__(self):
        super().__init__()
        self.token_embedding = nn.Embedding(VOCABULARY, CONTEXT_DIM)
        self.position_embedding = nn.Parameter(torch.randn(TOKENS, CONTEXT_DIM) * 0.1)
        self.final_layer_norm = nn.LayerNorm(CONTEXT_DIM)

    def forward(self, ids):
        return self.final_layer_norm(self.token_embedding(ids) + self.position_embedding)

    @staticmethod
    def prompts(n, generator=None):
        """n random prompts of one or two words: [BOS, w…, EOS, PAD…]."""
        ids = torch.full((n, TOKENS), PAD)
        ids[:, 0] = BOS
        words = torch.randint(EOS + 1, VOCABULARY, (n, 2), generator=generator)
        two = torch.rand(n, generator=generator) < 0.5
        ids[:, 1] = words[:, 0]
        ids[:, 2] = torch.where(two, words[:, 1], torch.full_like(words[:, 1], EOS))
        ids[:, 3] = torch.where(two, torch.full_like(words[:, 1], EOS), torch.full_like(words[:, 1], PAD))
        return ids

    @staticmethod
    def empty_prompt(n=1):
        ids = torch.full((n, TOKENS), PAD)
        ids[:, 0], ids[:, 1] = BOS, EOS
        return ids


def timestep_features(timesteps, dim: int):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    angles = timesteps.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, temb_channels: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(8, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x))) + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class CrossAttention(nn.Module):
    """Queries from the image tokens [B, N, C], keys and values from the context [B, M, D]."""

    def __init__(self, query_dim: int, context_dim: int, heads: int = 2, head_dim: int = 8):
        super().__init__()
        self.heads = heads
        self.scale = head_dim ** -0.5
        self.to_q = nn.Linear(query_dim, heads * head_dim, bias=False)
        self.to_k = nn.Linear(context_dim, heads * head_dim, bias=False)
        self.to_v = nn.Linear(context_dim, heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, query_dim)

    def split(self, x):
        b, n, d = x.shape
        return x.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x, context):
        q, k, v = self.split(self.to_q(x)), self.split(self.to_k(context)), self.split(self.to_v(context))
        weights = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)
        out = (weights @ v).transpose(1, 2)
        return self.to_out(out.reshape(out.shape[0], out.shape[1], -1))


class SpatialTransformer(nn.Module):
    """GroupNorm, 1×1 in, cross-attention and a GELU feed-forward (pre-LayerNorm, residual), 1×1 out."""

    def __init__(self, channels: int, context_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(8, channels)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.norm1 = nn.LayerNorm(channels)
        self.attn = CrossAttention(channels, context_dim)
        self.norm2 = nn.LayerNorm(channels)
        self.ff = nn.Sequential(nn.Linear(channels, 2 * channels), nn.GELU(), nn.Linear(2 * channels, channels))
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x, context):
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        tokens = tokens + self.attn(self.norm1(tokens), context)
        tokens = tokens + self.ff(self.norm2(tokens))
        return x + self.proj_out(tokens.transpose(1, 2).reshape(b, c, h, w))


class UNet2DConditionModel(nn.Module):
    """forward(x [B, C, H, W], t [B], encoder_hidden_states [B, TOKENS, CONTEXT_DIM]) -> ε̂ [B, C, H, W]."""

    def __init__(self, in_channels: int = 3, channels: int = 16, context_dim: int = CONTEXT_DIM):
        super().__init__()
        self.channels = channels
        temb = 4 * channels
        self.time_embedding = nn.Sequential(nn.Linear(channels, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down_res = ResBlock(channels, channels, temb)
        self.down_attn = SpatialTransformer(channels, context_dim)
        self.downsample = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.mid_res = ResBlock(channels, 2 * channels, temb)
        self.mid_attn = SpatialTransformer(2 * channels, context_dim)
        self.up_conv = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.up_res = ResBlock(2 * channels, channels, temb)
        self.up_attn = SpatialTransformer(channels, context_dim)
        self.conv_norm_out = nn.GroupNorm(8, channels)
        self.conv_out = nn.Conv2d(channels, in_channels, 3, padding=1)

    def forward(self, x, t, encoder_hidden_states):
        temb = self.time_embedding(timestep_features(t, self.channels))
        skip = self.down_attn(self.down_res(self.conv_in(x), temb), encoder_hidden_states)
        h = self.mid_attn(self.mid_res(self.downsample(skip), temb), encoder_hidden_states)
        h = self.up_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up_attn(self.up_res(torch.cat([h, skip], dim=1), temb), encoder_hidden_states)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


def alphas_cumprod():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, NUM_TRAIN_STEPS, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def main():
    p = _common.command_line(__doc__)
    p.add_argument("--null-out", required=True, help="where to write the empty prompt's states [4, 8]")
    p.add_argument("--prompts-out", help="where to write 8 random prompts' states [8, 4, 8] (a conditions file)")
    args = p.parse_args()
    _common.start(args)
    encoder = PromptEncoder().requires_grad_(False)
    model = UNet2DConditionModel()
    with torch.no_grad():
        empty = encoder(PromptEncoder.empty_prompt())[0]

    def predict(x, t):
        with torch.no_grad():
            states = encoder(PromptEncoder.prompts(x.shape[0]))
        dropped = torch.rand(x.shape[0]) < 0.1  # prompt dropout to the empty prompt
        return model(x, t, torch.where(dropped[:, None, None], empty, states))
    _common.train(model, predict, alphas_cumprod(), "epsilon", (3, 16, 16), args.steps, args.batch, args.seed)
    _common.save(model.state_dict(), args.out, model)
    torch.save(empty.clone(), args.null_out)
    if args.prompts_out:
        with torch.no_grad():
            torch.save(encoder(PromptEncoder.prompts(8, torch.Generator().manual_seed(args.seed))), args.prompts_out)


if __name__ == "__main__":
    main()
