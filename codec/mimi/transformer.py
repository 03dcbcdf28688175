"""Mimi's two causal transformers (after the SEANet encoder, before the SEANet decoder), at 25 frames/s.

Each of the 8 layers: x + scale1 * attention(LayerNorm(x)), then x + scale2 * MLP(LayerNorm(x)) (layer
scale: a learnt per-channel scale), MLP = Linear 512 -> 2048, exact GELU, Linear back, no biases;
attention: 8 heads of 64 with rotary position embeddings (RoPE, theta 10,000, positions 0, 1, ... from
each item's first frame), causal, over a sliding window of the last 250 frames (10 s) including itself.

Why right padding is invisible: frame t attends to frames (t - 250, t] only, and every other operation
acts on each frame alone, so an item's valid frames never read the padding frames after them; every
item starts at frame 0 of the batch, so RoPE gives its frames the positions they have alone. What
remains is rounding: transformers calls SDPA with `is_causal=True` while the sequence is shorter than
the window and with an explicit boolean window mask from 250 frames on; the same math, different
kernels. This module makes the same choice from the length of the sequence it is given, so an item
encoded alone matches transformers bit for bit; in a batch padded past 250 frames a short item goes
through the masked kernel (the CUDA plan accepts that rounding; the CPU plan encodes items alone).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import MimiConfig


class LayerScale(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), 0.01))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, config: MimiConfig):
        super().__init__()
        width = config.num_attention_heads * config.head_dim
        self.q_proj = nn.Linear(config.hidden_size, width, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, width, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, width, bias=False)
        self.o_proj = nn.Linear(width, config.hidden_size, bias=False)
        self.heads, self.head_dim, self.window = config.num_attention_heads, config.head_dim, config.sliding_window

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None):
        batch, steps, _ = x.shape
        q, k, v = (proj(x).view(batch, steps, self.heads, self.head_dim).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.head_dim**-0.5,
                                             is_causal=mask is None and steps > 1)
        return self.o_proj(out.transpose(1, 2).reshape(batch, steps, -1))


class MLP(nn.Module):
    def __init__(self, config: MimiConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerLayer(nn.Module):
    def __init__(self, config: MimiConfig):
        super().__init__()
        self.self_attn = Attention(config)
        self.mlp = MLP(config)
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps)
        self.self_attn_layer_scale = LayerScale(config.hidden_size)
        self.mlp_layer_scale = LayerScale(config.hidden_size)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(x), cos, sin, mask))
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


class Transformer(nn.Module):
    """forward(x [B, C, T]) -> [B, C, T] (channels first, as the convolutions around it)."""

    def __init__(self, config: MimiConfig):
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_hidden_layers))
        dim = config.head_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.window = config.sliding_window

    def rope(self, steps: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = torch.arange(steps, device=device)[None, :, None].float() * self.inv_freq.to(device)
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos().to(dtype)[:, None], angles.sin().to(dtype)[:, None]  # [1, 1, T, head_dim]

    def window_mask(self, steps: int, device: torch.device) -> torch.Tensor | None:
        """None (SDPA's own causal mask) below the window, as transformers; else bool [1, 1, T, T]: key k is
        seen from query q iff q - window < k <= q."""
        if steps < self.window:
            return None
        q = torch.arange(steps, device=device)[:, None]
        k = torch.arange(steps, device=device)[None, :]
        return ((k <= q) & (k > q - self.window))[None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        steps = x.shape[1]
        cos, sin = self.rope(steps, x.dtype, x.device)
        mask = self.window_mask(steps, x.device)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return x.transpose(1, 2)
